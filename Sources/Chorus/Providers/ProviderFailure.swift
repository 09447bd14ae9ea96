import ChorusJSON

/// A model request that brought no usable answer, classified by what Chorus should do next.
public struct ProviderFailure: Sendable, Equatable {
    /// What the failure means for the run.
    public enum Kind: Sendable, Equatable {
        /// Connection failures, timeouts, 408, 429, 5xx: retry with backoff, then escalate.
        case transient
        /// 401, 403, 404, or a 400 naming an unknown model: every call to this model will
        /// fail the same way, so the run stops (a circuit opens) instead of escalating each step.
        case configuration
        /// Any other refusal (a 400 for a prompt too long for a small model, say): this model
        /// cannot answer this step; the next model may.
        case rejected
    }

    /// What the failure means for the step: retry, escalate or stop.
    public var kind: Kind
    /// One line: `HTTP 401: <the provider's message>` or the transport's reason.
    public var detail: String
    /// The HTTP status, when a response arrived.
    public var status: Int? = nil
    /// The error response's body, secrets removed.
    public var body: [UInt8]? = nil
    /// How long the provider asked to wait before the next attempt.
    public var retryAfter: Duration? = nil

    /// A failure of `kind`, said in `detail`.
    public init(kind: Kind, detail: String, status: Int? = nil, body: [UInt8]? = nil, retryAfter: Duration? = nil) {
        self.kind = kind
        self.detail = detail
        self.status = status
        self.body = body
        self.retryAfter = retryAfter
    }

    /// The failure for an error status and its body (`detail` quotes the provider's message).
    public static func status(_ status: Int, body: [UInt8]?, retryAfter: Duration?) -> ProviderFailure {
        let message = body.flatMap(ProviderMessage.extract)
        return ProviderFailure(
            kind: kind(status: status, message: message),
            detail: "HTTP \(status)" + (message.map { ": " + $0 } ?? ""),
            status: status, body: body, retryAfter: retryAfter)
    }

    static func kind(status: Int, message: String?) -> Kind {
        switch status {
        case 408, 429, 500...: return .transient
        case 401, 403, 404: return .configuration
        case 400 where message.map(namesUnknownModel) ?? false: return .configuration
        default: return .rejected
        }
    }

    /// LiteLLM: "Invalid model name passed in model=x"; OpenAI: "The model `x` does not
    /// exist"; vLLM: "The model `x` does not exist."; Ollama: "model 'x' not found".
    private static func namesUnknownModel(_ message: String) -> Bool {
        let text = message.lowercased()
        guard text.contains("model") else { return false }
        return ["does not exist", "not found", "invalid model", "unknown model", "no such model", "not supported"]
            .contains { text.contains($0) }
    }
}

/// The human-readable message in a provider's error body.
enum ProviderMessage {
    /// `error.message` (OpenAI, Anthropic, LiteLLM), `error` as a string, `message` or
    /// `detail` (FastAPI servers such as llama-cpp-python's), else the body's start when it
    /// is text. One line, at most 300 characters.
    static func extract(_ body: [UInt8]) -> String? {
        guard !body.isEmpty else { return nil }
        var message: String?
        if let json = try? JSONValue(parsing: body) {
            message =
                json["error"]?["message"]?.stringValue ?? json["error"]?.stringValue ?? json["message"]?.stringValue
                ?? json["detail"]?.stringValue ?? json["detail"]?.text
        } else if let text = String(validating: body.prefix(600), as: UTF8.self) {
            message = text
        }
        guard let message else { return nil }
        let line = TerminalText.escaped(message.split(whereSeparator: \.isNewline).joined(separator: " "))
        guard !line.isEmpty else { return nil }
        return line.count > 300 ? String(line.prefix(300)) + "…" : line
    }
}

/// Removes an API key from what came back, before it reaches a trace, a log or an error
/// message: providers echo keys in error messages ("Incorrect API key provided: sk-…").
public struct SecretRedactor: Sendable {
    static let mask = "[redacted]"
    private let secret: [UInt8]

    /// A redactor for `secret`; nil (nothing to redact) for keys too short to matter.
    public init?(_ secret: String?) {
        guard let secret, secret.utf8.count >= 4 else { return nil }
        self.secret = Array(secret.utf8)
    }

    /// `bytes` with every occurrence of the secret replaced by `[redacted]`.
    public func redact(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count >= secret.count, let first = secret.first else { return bytes }
        var result: [UInt8] = []
        var i = 0
        var copied = 0
        let last = bytes.count - secret.count
        while i <= last {
            if bytes[i] == first && bytes[i..<(i + secret.count)].elementsEqual(secret) {
                if result.isEmpty { result.reserveCapacity(bytes.count) }
                result.append(contentsOf: bytes[copied..<i])
                result.append(contentsOf: Self.mask.utf8)
                i += secret.count
                copied = i
            } else {
                i += 1
            }
        }
        guard copied > 0 else { return bytes }
        result.append(contentsOf: bytes[copied...])
        return result
    }

    /// `text` with every occurrence of the secret replaced by `[redacted]`.
    public func redact(_ text: String) -> String { String(decoding: redact(Array(text.utf8)), as: UTF8.self) }

    /// `text` with a start of the secret (at least 4 bytes) masked where it ends the text: a
    /// secret cut in two by an output limit must not leak its first part.
    public func redactCutEnd(_ text: String) -> String {
        let bytes = Array(text.utf8)
        for length in stride(from: min(secret.count - 1, bytes.count), through: 4, by: -1)
        where bytes[(bytes.count - length)...].elementsEqual(secret.prefix(length)) {
            return String(decoding: bytes.dropLast(length), as: UTF8.self) + Self.mask
        }
        return text
    }

    /// Redactors for the values of environment variables that hold secrets by their name
    /// (`*KEY*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, OTLP headers) and are long enough to be one.
    public static func fromEnvironment(_ environment: [String: String]) -> [SecretRedactor] {
        environment.filter { name, value in
            let upper = name.uppercased()
            return value.utf8.count >= 8
                && ["KEY", "TOKEN", "SECRET", "PASSWORD", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
                    .contains { upper.contains($0) }
        }.values.sorted { $0.utf8.count > $1.utf8.count }.compactMap(SecretRedactor.init)
    }
}
