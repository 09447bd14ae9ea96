import ChorusTrace

extension EvalCase {
    /// The grades of `expect_route`, one per route node named, from the labels the run's
    /// routes chose (its `route_chosen` events, node → label; a route that chose no label
    /// has nil). A route that did not choose — it failed, was skipped, or the run stopped
    /// first — fails its grade saying so. Nil `chosen`: the run is gone from the trace.
    func routeGrades(chosen: [String: String?]?) -> [Grade] {
        routes.sorted { $0.key < $1.key }.map { node, expected in
            let summary = "route \(node) chooses \(expected)"
            guard let chosen else { return Grade(expectation: summary, passed: false, reason: "the run is no longer in the trace (pruned?)", route: node) }
            guard let choice = chosen[node] else {
                return Grade(expectation: summary, passed: false, reason: "\(node) chose nothing: it failed, was skipped or the run stopped first", route: node)
            }
            guard let label = choice else {
                return Grade(expectation: summary, passed: false, reason: "\(node)'s answer held no label", route: node)
            }
            return label == expected
                ? Grade(expectation: summary, passed: true, route: node)
                : Grade(expectation: summary, passed: false, reason: "\(node) chose \(label)", route: node)
        }
    }
}

extension Array where Element == EventRecord {
    /// Route node → the label it chose, from a run's `route_chosen` events.
    var chosenRoutes: [String: String?] {
        var chosen: [String: String?] = [:]
        for event in self where event.isKind(.routeChosen) {
            guard let node = event.stepPath, case .routeChosen(let label, _)? = event.event else { continue }
            chosen[node] = .some(label)
        }
        return chosen
    }
}
