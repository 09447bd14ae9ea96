import ChorusJSON
import ChorusTrace

/// Training examples drawn from recorded runs (`chorus runs export --format finetune`): the
/// accepted answer of each model step — the step's last call whose answer passed every
/// check, the one the step used — as a `FineTuneExample`, and what was left out and why.
///
/// Left out: a step with no accepted answer; with `only: .escalated`, one that did not
/// escalate; a call served from another run's recording (`replay:`, a replay or a fork's
/// upstream), and every step of a judge's run: neither is new data; a step whose node's
/// requests carried a data label not included (a run recorded before labels were kept
/// with it counts as labelled `unknown`: never guessed clean); a body that cannot be read
/// as its provider's shape; and a request already exported (the same prompt and tools).
public enum FineTuneExport {
    /// The key of the `run_started` detail holding `{node: [label]}`: the data labels each
    /// node's requests carried, every node listed (`[]`: none).
    public static let labelsKey = "data_labels"
    /// The label of every step of a run recorded before labels were kept.
    public static let unknownLabel = "unknown"

    /// Which accepted answers to take.
    public enum Only: String, Sendable, CaseIterable {
        /// Every step's.
        case accepted
        /// Only those of steps that escalated: the larger model's answer to a prompt a smaller
        /// one failed (the teacher signal).
        case escalated
    }

    /// What to export: which answers, of which agent, with which data labels, redacted how.
    public struct Options: Sendable {
        /// Every accepted answer, or only those of steps that escalated.
        public var only: Only
        /// Only steps of this agent.
        public var agent: String?
        /// Labels whose steps may be exported.
        public var includeLabels: Set<String>
        /// Applied to every string of every example: no secret the environment holds leaves.
        public var redactors: [SecretRedactor]

        /// Options; by default every accepted answer of every agent, of steps whose requests
        /// carried no data label, nothing redacted.
        public init(only: Only = .accepted, agent: String? = nil, includeLabels: Set<String> = [], redactors: [SecretRedactor] = []) {
            self.only = only
            self.agent = agent
            self.includeLabels = includeLabels
            self.redactors = redactors
        }
    }

    /// What an export found.
    public struct Outcome: Sendable {
        /// The examples, in run then step order.
        public var examples: [FineTuneExample] = []
        /// Accepted answers (or steps, for `not accepted`) left out, by reason.
        public var excluded: [String: Int] = [:]
        /// Whether any step of the runs was of the agent asked for.
        public var agentSeen = false
    }

    /// The examples of `runs`, in their order.
    public static func examples(of runs: [RunRecord], store: any TraceBackend, options: Options) throws -> Outcome {
        var outcome = Outcome()
        var seen: Set<String> = []
        for run in runs {
            try collect(run, store: store, options: options, seen: &seen, into: &outcome)
        }
        return outcome
    }

    private static func collect(
        _ run: RunRecord, store: any TraceBackend, options: Options, seen: inout Set<String>, into outcome: inout Outcome
    ) throws {
        let events = try store.events(ofRun: run.id)
        let escalated = Set(events.filter { $0.isKind(.escalated) }.compactMap(\.stepPath))
        let labels = nodeLabels(events)
        var callsByStep: [String: [ModelCallRecord]] = [:]
        for call in try store.modelCalls(ofRun: run.id) { callsByStep[call.stepPath, default: []].append(call) }
        let judge = run.workflowPath.hasPrefix("judge:")
        func exclude(_ reason: String) { outcome.excluded[reason, default: 0] += 1 }
        for step in try store.steps(ofRun: run.id) where !step.isNodeResult {
            guard let calls = callsByStep[step.path], !calls.isEmpty else { continue }
            if let agent = options.agent {
                guard step.agent == agent else { continue }
                outcome.agentSeen = true
            }
            guard step.status == .succeeded, let call = calls.sorted(by: { $0.attempt < $1.attempt }).last(where: { $0.callOutcome == .answered })
            else {
                exclude("not accepted")
                continue
            }
            if options.only == .escalated && !escalated.contains(step.path) {
                exclude("not escalated")
                continue
            }
            if judge {
                exclude("judge run")
                continue
            }
            if call.url.hasPrefix("replay:") {
                exclude("replayed")
                continue
            }
            let carried = labels?[step.node] ?? [unknownLabel]
            let refused = Set(carried).subtracting(options.includeLabels).sorted()
            if !refused.isEmpty {
                exclude("labelled " + refused.joined(separator: "+"))
                continue
            }
            guard let example = try example(of: call, store: store) else {
                exclude("unreadable body")
                continue
            }
            let redacted = redact(example, options.redactors)
            guard seen.insert(redacted.requestKey).inserted else {
                exclude("duplicate")
                continue
            }
            outcome.examples.append(redacted)
        }
    }

    /// The labels each node carried, from the run's `run_started` event (every node is listed,
    /// so one missing is unknown, not clean); nil when the run recorded none (older than
    /// labels kept with the run).
    static func nodeLabels(_ events: [EventRecord]) -> [String: [String]]? {
        guard case .runStarted(let detail)? = events.first(where: { $0.isKind(.runStarted) })?.event,
            let object = detail[labelsKey]?.objectValue
        else { return nil }
        // A node whose entry is damaged counts as carrying an unknown label, never none.
        return object.mapValues { $0.arrayValue.map { $0.map { $0.stringValue ?? unknownLabel } } ?? [unknownLabel] }
    }

    private static func example(of call: ModelCallRecord, store: any TraceBackend) throws -> FineTuneExample? {
        guard let responseHash = call.responseHash, let request = try store.blob(call.requestHash), let response = try store.blob(responseHash)
        else { return nil }
        return try? FineTuneExample(request: request, response: response, provider: call.url.hasSuffix("/messages") ? .anthropic : .openai)
    }

    private static func redact(_ example: FineTuneExample, _ redactors: [SecretRedactor]) -> FineTuneExample {
        guard !redactors.isEmpty else { return example }
        func clean(_ value: JSONValue) -> JSONValue {
            switch value {
            case .string(let text): .string(redactors.reduce(text) { $1.redact($0) })
            case .array(let items): .array(items.map(clean))
            case .object(let members): .object(members.mapValues(clean))
            default: value
            }
        }
        var result = example
        result.messages = example.messages.map(clean)
        result.tools = example.tools.map(clean)
        return result
    }
}
