import ChorusJSON

/// Counters the simulator reports at `GET /stats`: requests by status, faults injected,
/// and concurrency (overall and per model), so tests can prove a limiter held its cap.
struct SimulatorStats {
    struct ModelCounters {
        var requests = 0
        var inFlight = 0
        var peakInFlight = 0
    }

    var requests = 0
    var byStatus: [Int: Int] = [:]
    var faults: [SimulatedFault: Int] = [:]
    /// Requests given the heavy tail's extra delay (`--slow-rate`).
    var slow = 0
    var inFlight = 0
    var peakInFlight = 0
    var models: [String: ModelCounters] = [:]

    mutating func began(model: String) {
        requests += 1
        inFlight += 1
        peakInFlight = max(peakInFlight, inFlight)
        models[model, default: .init()].requests += 1
        models[model]!.inFlight += 1
        models[model]!.peakInFlight = max(models[model]!.peakInFlight, models[model]!.inFlight)
    }

    mutating func ended(model: String) {
        inFlight -= 1
        models[model]?.inFlight -= 1
    }

    /// Restarts counting; requests still in flight stay counted as in flight.
    mutating func reset() {
        requests = 0
        byStatus = [:]
        faults = [:]
        slow = 0
        peakInFlight = inFlight
        for name in models.keys {
            models[name]!.requests = 0
            models[name]!.peakInFlight = models[name]!.inFlight
        }
    }

    func json(connections: Int, peakConnections: Int) -> JSONValue {
        .object([
            "requests": .number(Double(requests)),
            "by_status": .object(Dictionary(uniqueKeysWithValues: byStatus.map { (String($0.key), .number(Double($0.value))) })),
            "faults": .object(
                Dictionary(
                    uniqueKeysWithValues: SimulatedFault.allCases.filter { $0 != .none }
                        .map { ($0.rawValue, .number(Double(faults[$0] ?? 0))) })),
            "slow": .number(Double(slow)),
            "in_flight": .number(Double(inFlight)),
            "peak_in_flight": .number(Double(peakInFlight)),
            "connections": .number(Double(connections)),
            "peak_connections": .number(Double(peakConnections)),
            "models": .object(
                models.mapValues { counters in
                    .object([
                        "requests": .number(Double(counters.requests)),
                        "in_flight": .number(Double(counters.inFlight)),
                        "peak_in_flight": .number(Double(counters.peakInFlight)),
                    ])
                }),
        ])
    }
}
