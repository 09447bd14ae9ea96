import ChorusJSON

/// An event of a run's log with its payload typed. Each case writes the kind and detail
/// JSON the log always held (so no migration, and the audit chain's digests of old runs
/// still verify), and reading a stored event back gives the case again: no code takes an
/// event's text apart itself.
public enum TraceEvent: Sendable, Equatable {
    /// The run's configuration as it started: budgets, pricing, swaps, its parent, an eval's
    /// context (an object; `runsShow` and the spans read parts of it).
    case runStarted(JSONValue)
    /// The run ended with `status` (a run that did not succeed says why, and its failure
    /// code: `steps_failed`, `interrupted`, …; runs recorded before the code was kept have none).
    case runEnded(RunStatus, error: String?, code: String? = nil)
    /// A node started.
    case nodeStarted
    /// A node finished with a result.
    case nodeSucceeded
    /// A route node's agent picked `label` (nil: its answer had none), and `nodes` run.
    case routeChosen(label: String?, nodes: [String])
    /// The node did not run, and why (its `when` was false; everything it needs was skipped).
    case nodeSkipped(reason: String)
    /// A lead planned a round of `subtasks`.
    case roundPlanned(subtasks: Int)
    /// A lead planned more subtasks than were left of `max_subtasks`: the first `kept` run.
    case planTruncated(planned: Int, kept: Int)
    /// A step's answer was accepted.
    case stepSucceeded
    /// A step failed for good (its retries and escalations spent), saying why.
    case stepFailed(error: String?)
    /// A resumed or forked run reused the step from run `from`.
    case stepReused(from: String)
    /// A shared run's step was run by `worker`, after `leases` leases.
    case stepShared(worker: String, leases: Int)
    /// A step moved from model `from` to the larger `to`, for `reason`.
    case escalated(from: String, to: String, reason: String)
    /// An escalation waits for a person's approval.
    case escalationHeld(from: String, to: String, reason: String)
    /// A provider refused in a way no retry fixes: the run stops making calls.
    case circuitOpened(model: String, status: Int?, error: String)
    /// An answer stopped at `maxTokens` (request `attempt` of the step, on `model`).
    case answerTruncated(model: String, attempt: Int, maxTokens: Int)
    /// A call's reported usage was not charged as reported.
    case usageCapped(UsageCap)
    /// The data boundary kept a label from a model.
    case boundaryRefused(model: String, label: String, from: String)
    /// A guard redacted or denied (`stage` input or output).
    case guardVerdict(stage: String, guardName: String, GuardOutcome)
    /// A node waits for a person's decision, for `reason`.
    case approvalRequested(node: String, reason: String)
    /// A person's decision; `unverifiedSource` when it was recorded over a chain that did
    /// not verify (`--force-unverified`), saying what broke.
    case approvalDecided(node: String, approved: Bool, by: String, note: String?, unverifiedSource: String? = nil)
    /// The tools an agent was offered (MCP definitions included, so a replay offers the same).
    case toolsOffered(agent: String, tools: [JSONValue])
    /// A resumed step's tool call was served from run `from`.
    case toolCallReused(tool: String, from: String)

    /// What a guard did.
    public enum GuardOutcome: Sendable, Equatable {
        /// The guard replaced `what` before the text went on.
        case redacted(what: String)
        /// The guard stopped the text, for `reason`.
        case denied(reason: String)
    }

    /// What a call's provider reported and what it was charged.
    public struct UsageCap: Sendable, Equatable {
        /// The model whose usage it was.
        public var model: String
        /// Input tokens the provider reported.
        public var reportedIn: Int
        /// Output tokens the provider reported.
        public var reportedOut: Int
        /// Input tokens charged.
        public var chargedIn: Int
        /// Output tokens charged.
        public var chargedOut: Int
        /// Why they differ, one line.
        public var reason: String

        /// A capped usage, as the scheduler records it.
        public init(model: String, reportedIn: Int, reportedOut: Int, chargedIn: Int, chargedOut: Int, reason: String) {
            (self.model, self.reportedIn, self.reportedOut) = (model, reportedIn, reportedOut)
            (self.chargedIn, self.chargedOut, self.reason) = (chargedIn, chargedOut, reason)
        }
    }

    /// The kind this event is stored under.
    public var kind: EventKind {
        switch self {
        case .runStarted: .runStarted
        case .runEnded(let status, _, _): .ended(status)
        case .nodeStarted: .nodeStarted
        case .nodeSucceeded: .nodeSucceeded
        case .nodeSkipped: .nodeSkipped
        case .routeChosen: .routeChosen
        case .roundPlanned: .roundPlanned
        case .planTruncated: .planTruncated
        case .stepSucceeded: .stepSucceeded
        case .stepFailed: .stepFailed
        case .stepReused: .stepReused
        case .stepShared: .stepShared
        case .escalated: .escalated
        case .escalationHeld: .escalationHeld
        case .circuitOpened: .circuitOpened
        case .answerTruncated: .answerTruncated
        case .usageCapped: .usageCapped
        case .boundaryRefused: .boundaryRefused
        case .guardVerdict: .guardVerdict
        case .approvalRequested: .approvalRequested
        case .approvalDecided: .approvalDecided
        case .toolsOffered: .toolsOffered
        case .toolCallReused: .toolCallReused
        }
    }

    /// The detail as stored (nil when the event has none).
    public var detail: JSONValue? {
        func number(_ n: Int) -> JSONValue { .number(Double(n)) }
        switch self {
        case .runStarted(let detail): return detail
        case .runEnded(_, let error, let code):
            guard error != nil || code != nil else { return nil }
            var detail: [String: JSONValue] = [:]
            if let error { detail["error"] = .string(error) }
            if let code { detail["code"] = .string(code) }
            return .object(detail)
        case .stepFailed(let error): return error.map { ["error": .string($0)] }
        case .nodeStarted, .nodeSucceeded, .stepSucceeded: return nil
        case .nodeSkipped(let reason): return ["reason": .string(reason)]
        case .routeChosen(let label, let nodes): return ["label": label.map { .string($0) } ?? .null, "nodes": .array(nodes.map { .string($0) })]
        case .roundPlanned(let subtasks): return ["subtasks": number(subtasks)]
        case .planTruncated(let planned, let kept): return ["planned": number(planned), "kept": number(kept)]
        case .stepReused(let from): return ["from": .string(from)]
        case .stepShared(let worker, let leases): return ["worker": .string(worker), "leases": number(leases)]
        case .escalated(let from, let to, let reason), .escalationHeld(let from, let to, let reason):
            return ["from": .string(from), "to": .string(to), "reason": .string(reason)]
        case .circuitOpened(let model, let status, let error):
            return ["model": .string(model), "status": status.map(number) ?? .null, "error": .string(error)]
        case .answerTruncated(let model, let attempt, let maxTokens):
            return ["model": .string(model), "attempt": number(attempt), "max_tokens": number(maxTokens)]
        case .usageCapped(let cap):
            return [
                "model": .string(cap.model), "reported_in": number(cap.reportedIn), "reported_out": number(cap.reportedOut),
                "charged_in": number(cap.chargedIn), "charged_out": number(cap.chargedOut), "reason": .string(cap.reason),
            ]
        case .boundaryRefused(let model, let label, let from):
            return ["model": .string(model), "label": .string(label), "from": .string(from)]
        case .guardVerdict(let stage, let name, let outcome):
            var detail: [String: JSONValue] = ["stage": .string(stage), "guard": .string(name)]
            switch outcome {
            case .redacted(let what): detail["verdict"] = "redacted"; detail["what"] = .string(what)
            case .denied(let reason): detail["verdict"] = "denied"; detail["reason"] = .string(reason)
            }
            return .object(detail)
        case .approvalRequested(let node, let reason): return ["node": .string(node), "reason": .string(reason)]
        case .approvalDecided(let node, let approved, let by, let note, let unverified):
            var detail: [String: JSONValue] = ["node": .string(node), "decision": .string(approved ? "approved" : "denied"), "by": .string(by)]
            if let note { detail["note"] = .string(note) }
            if let unverified { detail["unverified_source"] = .string(unverified) }
            return .object(detail)
        case .toolsOffered(let agent, let tools): return ["agent": .string(agent), "tools": .array(tools)]
        case .toolCallReused(let tool, let from): return ["tool": .string(tool), "from": .string(from)]
        }
    }

    /// Reads a stored event back; nil for a kind this version does not know or a detail
    /// that lacks what its kind holds (a damaged or foreign record).
    public init?(kind text: String, detail: JSONValue?) {
        guard let kind = EventKind(rawValue: text) else { return nil }
        let d = detail ?? .null
        func string(_ key: String) -> String? { d[key]?.stringValue }
        func int(_ key: String) -> Int? { d[key]?.intValue }
        switch kind {
        case .runStarted: self = .runStarted(d)
        case .runSucceeded: self = .runEnded(.succeeded, error: string("error"), code: string("code"))
        case .runFailed: self = .runEnded(.failed, error: string("error"), code: string("code"))
        case .runInterrupted: self = .runEnded(.interrupted, error: string("error"), code: string("code"))
        case .runAwaitingApproval: self = .runEnded(.awaitingApproval, error: string("error"), code: string("code"))
        case .nodeStarted: self = .nodeStarted
        case .nodeSucceeded: self = .nodeSucceeded
        case .nodeSkipped: self = .nodeSkipped(reason: string("reason") ?? "")
        case .routeChosen: self = .routeChosen(label: string("label"), nodes: d["nodes"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        case .roundPlanned:
            guard let subtasks = int("subtasks") else { return nil }
            self = .roundPlanned(subtasks: subtasks)
        case .planTruncated:
            guard let planned = int("planned"), let kept = int("kept") else { return nil }
            self = .planTruncated(planned: planned, kept: kept)
        case .stepSucceeded: self = .stepSucceeded
        case .stepFailed: self = .stepFailed(error: string("error"))
        case .stepReused: self = .stepReused(from: string("from") ?? "")
        case .stepShared:
            guard let worker = string("worker") else { return nil }
            self = .stepShared(worker: worker, leases: int("leases") ?? 0)
        case .escalated, .escalationHeld:
            guard let from = string("from"), let to = string("to") else { return nil }
            self =
                kind == .escalated
                ? .escalated(from: from, to: to, reason: string("reason") ?? "")
                : .escalationHeld(from: from, to: to, reason: string("reason") ?? "")
        case .circuitOpened:
            guard let model = string("model") else { return nil }
            self = .circuitOpened(model: model, status: int("status"), error: string("error") ?? "")
        case .answerTruncated:
            guard let model = string("model") else { return nil }
            self = .answerTruncated(model: model, attempt: int("attempt") ?? 0, maxTokens: int("max_tokens") ?? 0)
        case .usageCapped:
            guard let model = string("model") else { return nil }
            self = .usageCapped(
                UsageCap(
                    model: model, reportedIn: int("reported_in") ?? 0, reportedOut: int("reported_out") ?? 0,
                    chargedIn: int("charged_in") ?? 0, chargedOut: int("charged_out") ?? 0, reason: string("reason") ?? ""))
        case .boundaryRefused:
            guard let model = string("model"), let label = string("label") else { return nil }
            self = .boundaryRefused(model: model, label: label, from: string("from") ?? "")
        case .guardVerdict:
            guard let stage = string("stage"), let name = string("guard") else { return nil }
            switch string("verdict") {
            case "redacted": self = .guardVerdict(stage: stage, guardName: name, .redacted(what: string("what") ?? ""))
            case "denied": self = .guardVerdict(stage: stage, guardName: name, .denied(reason: string("reason") ?? ""))
            default: return nil
            }
        case .approvalRequested:
            guard let node = string("node") else { return nil }
            self = .approvalRequested(node: node, reason: string("reason") ?? "")
        case .approvalDecided:
            guard let node = string("node") else { return nil }
            self = .approvalDecided(
                node: node, approved: string("decision") == "approved", by: string("by") ?? "?", note: string("note"),
                unverifiedSource: string("unverified_source"))
        case .toolsOffered:
            guard let agent = string("agent") else { return nil }
            self = .toolsOffered(agent: agent, tools: d["tools"]?.arrayValue ?? [])
        case .toolCallReused:
            guard let tool = string("tool") else { return nil }
            self = .toolCallReused(tool: tool, from: string("from") ?? "")
        }
    }
}

extension EventRecord {
    /// The event with its payload typed; nil for a kind this version does not know or a
    /// damaged detail.
    public var event: TraceEvent? {
        TraceEvent(kind: kind, detail: detailJSON.flatMap { try? JSONValue(parsing: Array($0.utf8)) })
    }
}

extension TraceChange {
    /// `event` at `at`, as the log stores it.
    public static func event(runID: String, _ event: TraceEvent, stepPath: String?, at: Double) -> TraceChange {
        .event(runID: runID, kind: event.kind.rawValue, stepPath: stepPath, detailJSON: event.detail?.text, at: at)
    }
}
