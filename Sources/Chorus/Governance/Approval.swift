import ChorusJSON
import ChorusTrace

/// When a node's steps wait for a person.
public enum ApprovalRule: Sendable, Equatable {
    /// Before any call.
    case always
    /// Before a step hands over to its next model.
    case onEscalation
    /// Before a call whose worst case costs more than this many micro-dollars.
    case overMicroUSD(Int64)

    init?(json: JSONValue?) {
        switch json {
        case .string("always"): self = .always
        case .string("on_escalation"): self = .onEscalation
        case let value?:
            guard let usd = value["over_usd"]?.numberValue, let micro = Budget.microUSD(usd) else { return nil }
            self = .overMicroUSD(micro)
        case nil: return nil
        }
    }
}

/// A person's decision on a node that requires approval, as the trace records it: an
/// `approval_decided` event in the paused run's audit chain (who, when, the note).
public struct ApprovalDecision: Sendable, Equatable {
    /// The node decided on (`model:NAME` or `tool:NAME` for a model's or a tool's approval).
    public var node: String
    /// Go on (true) or stop the run (false).
    public var approved: Bool
    /// Who decided, as the trace records it.
    public var by: String
    /// Why, in their words.
    public var note: String?

    /// A decision, to record with `chorus approve`/`deny` or to give a run in advance
    /// (`RunOptions.approvals`).
    public init(node: String, approved: Bool, by: String, note: String?) {
        self.node = node
        self.approved = approved
        self.by = by
        self.note = note
    }

    /// The event it is recorded as; `unverified` says what did not verify when it was
    /// recorded anyway.
    public func event(unverified: String? = nil) -> TraceEvent {
        .approvalDecided(node: node, approved: approved, by: by, note: note, unverifiedSource: unverified)
    }

    /// The decisions recorded in `events` (the latest per node wins).
    public static func decisions(in events: [EventRecord]) -> [String: ApprovalDecision] {
        var result: [String: ApprovalDecision] = [:]
        for event in events where event.isKind(.approvalDecided) {
            guard case .approvalDecided(let node, let approved, let by, let note, _)? = event.event else { continue }
            result[node] = ApprovalDecision(node: node, approved: approved, by: by, note: note)
        }
        return result
    }

    /// Nodes a run asked approval for that have no decision yet.
    public static func pending(in events: [EventRecord]) -> [String] {
        let decided = decisions(in: events)
        var nodes: [String] = []
        for event in events where event.isKind(.approvalRequested) {
            guard case .approvalRequested(let node, _)? = event.event, decided[node] == nil, !nodes.contains(node) else { continue }
            nodes.append(node)
        }
        return nodes
    }
}
