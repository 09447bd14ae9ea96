import ChorusJSON

extension StepRecord {
    /// The finding steps an `as_completed` lead call's prompt held, in order (its
    /// provenance `{"saw": [...]}`); nil for any other step, a rounds lead's plan included.
    public var leadSaw: [String]? {
        guard kind == StepKind.plan.rawValue, let provenanceJSON, let value = try? JSONValue(parsing: Array(provenanceJSON.utf8)) else { return nil }
        return value["saw"]?.arrayValue?.compactMap(\.stringValue)
    }

    /// Why a skipped node did not run (its provenance `{"skipped": "..."}`); nil otherwise.
    public var skippedBecause: String? {
        guard status == .skipped, let provenanceJSON, let value = try? JSONValue(parsing: Array(provenanceJSON.utf8)) else { return nil }
        return value["skipped"]?.stringValue
    }
}

/// A plan longer than what was left of `max_subtasks`: how many it named and how many ran.
public struct PlanTruncation: Sendable, Equatable {
    /// Subtasks the plan named.
    public var planned: Int
    /// Subtasks that ran: the first `kept` of the plan.
    public var kept: Int
    /// Subtasks left out.
    public var dropped: Int { planned - kept }

    /// `plan_truncated` events of a run, by the plan step they name.
    public static func byStep(_ events: [EventRecord]) -> [String: PlanTruncation] {
        var found: [String: PlanTruncation] = [:]
        for event in events where event.isKind(.planTruncated) {
            if let step = event.stepPath, case .planTruncated(let planned, let kept)? = event.event {
                found[step] = PlanTruncation(planned: planned, kept: kept)
            }
        }
        return found
    }
}
