import ChorusIO
import ChorusJSON

/// The API shape a model speaks.
public enum ProviderKind: String, Sendable {
    /// OpenAI chat completions: OpenAI, vLLM, llama.cpp server, Ollama, LM Studio.
    case openai
    /// Anthropic Messages.
    case anthropic
}

/// How a model is asked for an answer that satisfies an output schema. Servers differ:
/// llama-cpp-python's server answers `json_schema` with HTTP 500, Anthropic has its own
/// mechanism, a gateway may translate only tool calls.
public enum StructuredOutputMode: String, Sendable, CaseIterable {
    /// The API's native schema-constrained output: OpenAI `response_format: json_schema`
    /// (OpenAI, vLLM, llama.cpp's llama-server); Anthropic `output_config.format`.
    case jsonSchema = "json_schema"
    /// The schema as an instruction in the system prompt plus `response_format: json_object`
    /// (JSON mode): llama-cpp-python's server and older OpenAI-compatible servers.
    case jsonObject = "json_object"
    /// A forced call of one tool whose input schema is the output schema.
    case tool
    /// The schema as an instruction in the system prompt, nothing else.
    case prompt
}

/// One model in chorus.json: where it is, how to authenticate, what it costs, its limits.
public struct ModelSpec: Sendable, Equatable {
    /// The name agents use.
    public var name: String
    /// The request and answer shape it speaks (OpenAI chat completions or Anthropic messages).
    public var provider: ProviderKind
    /// Endpoint root without a trailing slash.
    public var baseURL: String
    /// The provider's model id.
    public var model: String
    /// Environment variable with the API key; nil for local servers that need none.
    public var apiKeyEnv: String?
    /// US dollars per million input tokens.
    public var inputPerMTok: Double
    /// US dollars per million output tokens.
    public var outputPerMTok: Double
    /// Requests in flight at most, across the run; nil for no limit of its own.
    public var maxConcurrency: Int?
    /// Requests started per sliding minute at most.
    public var requestsPerMinute: Int?
    /// Tokens (estimated when sent, settled when answered) per sliding minute at most.
    public var tokensPerMinute: Int?
    /// The `anthropic-version` header value.
    public var anthropicVersion: String
    /// How an output schema is sent (`structured_output`).
    public var structuredOutput: StructuredOutputMode
    /// `max_tokens` for agents that set none (`max_tokens`, else `defaultMaxTokens`).
    public var maxTokens: Int
    /// Whether calls stream the answer as server-sent events (`stream`, default true).
    public var stream: Bool
    /// A streamed call that receives no byte for this long fails (`idle_timeout_s`).
    public var idleTimeout: Duration
    /// The largest response body accepted (`max_response_bytes`), counted as bytes arrive.
    public var maxResponseBytes: Int

    /// `max_tokens` when neither the agent nor the model sets one. Every request carries a
    /// limit: a server's own default may be unlimited, and a small model that never closes
    /// its JSON then runs until the call's timeout.
    public static let defaultMaxTokens = 1024
    /// The `anthropic-version` Chorus sends unless a model sets `anthropic_version`: the one
    /// the pinned official SDK sends (scripts/conformance checks that they agree).
    public static let defaultAnthropicVersion = "2026-10-21"
    /// The streaming idle timeout unless a model sets `idle_timeout_s`.
    public static let defaultIdleTimeout = Duration.seconds(30)
    /// The response size limit unless a model sets `max_response_bytes`: 16 MiB, hundreds
    /// of times a real answer (a 100,000-token answer is about 400 KB). A provider streaming
    /// an endless body made one call buffer a gigabyte in 3 s before (issue 17).
    public static let defaultMaxResponseBytes = 16 << 20

    /// Whether a person must approve before this model is called in a run.
    public let requiresApproval: Bool

    /// The data labels this model may receive; nil for every label.
    public let accepts: [String]?

    /// What one run may spend on this model.
    public let budget: Budget

    /// What a call with these token counts costs: the one place a call is priced (its record,
    /// the step's and run's sums, and — in whole micro-dollars, rounded up — its budgets).
    public func cost(tokensIn: Int, tokensOut: Int) -> USD {
        USD.cost(tokensIn: tokensIn, tokensOut: tokensOut, inputPerMTok: inputPerMTok, outputPerMTok: outputPerMTok)
    }

    /// The URL requests go to.
    public let endpoint: String

    /// The endpoint without query string or credentials, as the trace records it.
    public let redactedEndpoint: String

    init(name: String, json: JSONValue) {
        self.name = name
        provider = ProviderKind(rawValue: json["provider"]?.stringValue ?? "") ?? .openai
        var base = json["base_url"]?.stringValue ?? ""
        while base.hasSuffix("/") { base.removeLast() }
        baseURL = base
        model = json["model"]?.stringValue ?? name
        apiKeyEnv = json["api_key_env"]?.stringValue
        requiresApproval = json["approval"]?.stringValue == "always"
        accepts = json["accepts"]?.arrayValue?.compactMap(\.stringValue)
        budget = Budget(json: json["budget"])
        inputPerMTok = json["price"]?["input_per_mtok"]?.numberValue ?? 0
        outputPerMTok = json["price"]?["output_per_mtok"]?.numberValue ?? 0
        maxConcurrency = json["max_concurrency"]?.intValue
        requestsPerMinute = json["requests_per_minute"]?.intValue
        tokensPerMinute = json["tokens_per_minute"]?.intValue
        anthropicVersion = json["anthropic_version"]?.stringValue ?? Self.defaultAnthropicVersion
        structuredOutput = json["structured_output"]?.stringValue.flatMap(StructuredOutputMode.init(rawValue:)) ?? .jsonSchema
        maxTokens = json["max_tokens"]?.intValue ?? Self.defaultMaxTokens
        stream = json["stream"]?.boolValue ?? true
        let idle = json["idle_timeout_s"]?.numberValue ?? 0
        idleTimeout = idle >= 1 && idle <= 86_400 ? .milliseconds(Int64(idle * 1000)) : Self.defaultIdleTimeout
        // The schema bounds it to 1 KiB…1 GiB; clamped here too.
        let limit = json["max_response_bytes"]?.numberValue ?? Double(Self.defaultMaxResponseBytes)
        maxResponseBytes = limit.isFinite ? Int(min(max(limit, 1024), Double(1 << 30))) : Self.defaultMaxResponseBytes
        switch provider {
        case .openai: endpoint = base + "/chat/completions"
        // Either convention works: Chorus's own (`…/v1`) and the official SDK's (the host
        // alone; the client appends `/v1/messages`).
        case .anthropic: endpoint = base + (base.hasSuffix("/v1") ? "/messages" : "/v1/messages")
        }
        redactedEndpoint = HTTPClientRequest.redact(endpoint)
    }
}

/// chorus.json: the models Chorus may call.
public struct ChorusConfig: Sendable {
    /// The file it came from.
    public var path: String
    /// Models by name.
    public var models: [String: ModelSpec]

    /// A configuration with these models (for tests and tools).
    public init(path: String, models: [String: ModelSpec]) {
        self.path = path
        self.models = models
    }
}
