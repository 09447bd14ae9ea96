import ChorusJSON

/// A check an agent's text passes before it goes on: input guards before the request is
/// sent (never beside it), output guards before the answer is accepted.
public struct Guard: Sendable {
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

    public enum Action: String, Sendable { case deny, redact }

    public var kind: Kind
    public var action: Action
    /// A regex guard's pattern, compiled once when the agent file is loaded (not per answer).
    private let compiled: CompiledPattern?

    init(kind: Kind, action: Action = .deny) {
        self.kind = kind
        self.action = action
        compiled = CompiledPattern(kind)
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
        compiled = CompiledPattern(kind)
    }

    /// What a guard decided about a text.
    public enum Verdict: Sendable, Equatable {
        case allow
        /// The text, changed: what matched is replaced.
        case redacted(String, what: String)
        case deny(String)
    }

    /// Checks `text`. Pure; a regex that does not compile denies (validation rejects it first).
    public func check(_ text: String) -> Verdict {
        switch kind {
        case .regex(let pattern):
            guard let regex = compiled?.regex else { return .deny("the guard's pattern does not compile") }
            let matches = text.matches(of: regex)
            guard !matches.isEmpty else { return .allow }
            if action == .deny { return .deny("matches /\(pattern.prefix(80))/ (\(matches.count)×)") }
            return .redacted(text.replacing(regex, with: "[redacted]"), what: "\(matches.count) match\(matches.count == 1 ? "" : "es") of /\(pattern.prefix(80))/")
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
    public var input: [Guard] = []
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
    static func apply(_ guards: [Guard], to text: String, record: (Guard, Guard.Verdict) -> Void) -> Result<String, GuardDenial> {
        var current = text
        for guardrail in guards {
            let verdict = guardrail.check(current)
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
}

/// A guard said no, in words.
public struct GuardDenial: Error, Sendable, CustomStringConvertible {
    public var guardName: String
    public var reason: String
    public var description: String { "\(guardName) guard: \(reason)" }
}

/// A compiled regex guard pattern. Regex is not Sendable; this one is only ever read.
private final class CompiledPattern: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>

    init?(_ kind: Guard.Kind) {
        guard case .regex(let pattern) = kind, let regex = try? Regex(pattern) else { return nil }
        self.regex = regex
    }
}
