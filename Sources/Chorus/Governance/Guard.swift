import ChorusJSON
import Synchronization

/// A check an agent's text passes before it goes on: input guards before the request is
/// sent (never beside it), output guards before the answer is accepted.
public struct Guard: Sendable {
    /// What a guard checks.
    public enum Kind: Sendable {
        /// Deny or redact what matches.
        case regex(String)
        /// Personal data and secrets (PIIDetector): block or redact.
        case pii
        /// At most this many characters.
        case maxChars(Int)
        /// The output, parsed as JSON, must satisfy this schema.
        case schema(JSONValue)
        /// Another agent judges the text (`{{text}}`, `{{stage}}` in its prompt) and answers
        /// `{"allow": bool, "reason": "…"}`: an LLM judge, pointable at a small model.
        case agent(String)
    }

    /// What a guard does with a text that fails it.
    public enum Action: String, Sendable {
        /// Stop it: the step fails (an input) or the answer is refused (an output).
        case deny
        /// Replace what matched and let the rest go on.
        case redact
    }

    /// What it checks.
    public var kind: Kind
    /// What it does when the check fails.
    public var action: Action
    /// A regex guard's pattern, compiled once when the agent file is loaded (not per answer).
    private let compiled: BoundedRegex?

    init(kind: Kind, action: Action = .deny) {
        self.kind = kind
        self.action = action
        compiled = Self.compile(kind)
    }

    private static func compile(_ kind: Kind) -> BoundedRegex? {
        guard case .regex(let pattern) = kind else { return nil }
        return try? BoundedRegex(pattern)
    }

    /// The guard's type as the files and the trace name it.
    public var name: String {
        switch kind {
        case .regex: "regex"
        case .pii: "pii"
        case .maxChars: "max_chars"
        case .schema: "schema"
        case .agent: "agent"
        }
    }

    /// One guard from an agent file's `guards.input`/`guards.output` entry.
    init?(json: JSONValue) {
        action = json["action"]?.stringValue == "redact" ? .redact : .deny
        switch json["type"]?.stringValue {
        case "regex":
            guard let pattern = json["pattern"]?.stringValue else { return nil }
            kind = .regex(pattern)
        case "pii": kind = .pii
        case "max_chars": kind = .maxChars(json["max"]?.intValue ?? 100_000)
        case "schema": kind = .schema(json["schema"] ?? [:])
        case "agent":
            guard let agent = json["agent"]?.stringValue else { return nil }
            kind = .agent(agent)
        default: return nil
        }
        compiled = Self.compile(kind)
    }

    /// What a guard decided about a text.
    public enum Verdict: Sendable, Equatable {
        /// The text goes on as it is.
        case allow
        /// The text, changed: what matched is replaced.
        case redacted(String, what: String)
        /// The text stops, for this reason.
        case deny(String)
    }

    /// Checks `text`. Pure, but CPU work (run it off the loop: `Guards.applyOffLoop`); a
    /// regex that does not compile denies (validation rejects it first), and so does one
    /// that runs out of its time budget or is stopped by `stop`.
    public func check(_ text: String, stop: @Sendable () -> Bool = { false }) -> Verdict {
        switch kind {
        case .regex(let pattern):
            guard let regex = compiled else { return .deny("the guard's pattern does not compile") }
            do {
                if action == .deny {
                    let count = try regex.matches(in: text, stop: stop).count
                    return count == 0 ? .allow : .deny("matches /\(pattern.prefix(80))/ (\(count)×)")
                }
                let (changed, count) = try regex.replacing(in: text, with: "[redacted]", stop: stop)
                return count == 0 ? .allow : .redacted(changed, what: "\(count) match\(count == 1 ? "" : "es") of /\(pattern.prefix(80))/")
            } catch {
                return .deny("\(error) on /\(pattern.prefix(80))/")
            }
        case .pii:
            let (redacted, kinds) = PIIDetector.redact(text)
            guard !kinds.isEmpty else { return .allow }
            let what = Dictionary(grouping: kinds, by: { $0 }).map { "\($0.key) ×\($0.value.count)" }.sorted().joined(separator: ", ")
            return action == .deny ? .deny("personal data or a secret: \(what)") : .redacted(redacted, what: what)
        case .maxChars(let limit):
            return text.count > limit ? .deny("\(text.count) characters, more than \(limit)") : .allow
        case .schema(let schema):
            guard let value = try? ModelAnswerParser.json(from: text) else { return .deny("not JSON") }
            let violations = JSONSchemaValidator(schema: schema).validate(value)
            return violations.isEmpty ? .allow : .deny("fails the guard's schema: " + violations.prefix(2).map(\.description).joined(separator: "; "))
        case .agent:
            return .allow  // judged by the caller, which can call a model (AgentCaller.judge)
        }
    }
}

/// An agent's guards.
public struct Guards: Sendable {
    /// Checks on the request's text, before it is sent.
    public var input: [Guard] = []
    /// Checks on the answer, before it is accepted.
    public var output: [Guard] = []

    init(json: JSONValue?) {
        input = json?["input"]?.arrayValue?.compactMap(Guard.init(json:)) ?? []
        output = json?["output"]?.arrayValue?.compactMap(Guard.init(json:)) ?? []
    }

    /// The judge agents among `guards`.
    static func judges(_ guards: [Guard]) -> [String] {
        guards.compactMap { if case .agent(let name) = $0.kind { name } else { nil } }
    }

    /// What a judge's answer means: allowed, or denied with its reason.
    static func judgement(_ output: JSONValue?) -> Guard.Verdict {
        guard let output, case .bool(let allow) = output["allow"] ?? .null else {
            return .deny("the judge did not answer {\"allow\": true|false}")
        }
        return allow ? .allow : .deny(output["reason"]?.stringValue ?? "the judge said no")
    }

    /// Runs `guards` over `text` in order: the text as the last redaction left it, or the
    /// first denial; `record` hears every verdict that is not a plain allow.
    static func apply(
        _ guards: [Guard], to text: String, stop: @Sendable () -> Bool = { false },
        record: (Guard, Guard.Verdict) -> Void
    ) -> Result<String, GuardDenial> {
        var current = text
        for guardrail in guards {
            let verdict = guardrail.check(current, stop: stop)
            switch verdict {
            case .allow: continue
            case .redacted(let changed, _): current = changed
            case .deny(let reason):
                record(guardrail, verdict)
                return .failure(GuardDenial(guardName: guardrail.name, reason: reason))
            }
            record(guardrail, verdict)
        }
        return .success(current)
    }

    /// `apply` on a thread of its own: regexes and PII scans are CPU work, and a hostile
    /// pattern may take its whole time budget, so the loop (timers, signals, other steps)
    /// never waits for them. Cancelling the caller returns at once and stops a running match
    /// at its next progress check.
    static func applyOffLoop(
        _ guards: [Guard], to text: String,
        record: @escaping @Sendable (Guard, Guard.Verdict) -> Void
    ) async -> Result<String, GuardDenial> {
        let stop = StopFlag()
        do {
            return try await withTaskCancellationHandler {
                // A verdict reached after the caller gave up (a stopped match) is not recorded.
                try await OffLoop.compute { apply(guards, to: text, stop: { stop.isSet }, record: { if !stop.isSet { record($0, $1) } }) }
            } onCancel: {
                stop.set()
            }
        } catch {
            return .failure(GuardDenial(guardName: "guards", reason: "cancelled"))
        }
    }
}

/// A flag one thread sets and another polls (a cancelled caller tells a running match to stop).
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// A guard said no, in words.
public struct GuardDenial: Error, Sendable, CustomStringConvertible {
    /// The guard that said no (`pii`, `regex`, the judging agent's name).
    public var guardName: String
    /// Why, one line.
    public var reason: String
    public var description: String { "\(guardName) guard: \(reason)" }
}
