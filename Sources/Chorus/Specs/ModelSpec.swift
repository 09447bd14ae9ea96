import ChorusIO
import ChorusJSON

/// The API shape a model speaks.
public enum ProviderKind: String, Sendable {
    /// OpenAI chat completions: OpenAI, vLLM, llama.cpp server, Ollama, LM Studio.
    case openai
    /// Anthropic Messages.
    case anthropic
}

/// One model in chorus.json: where it is, how to authenticate, what it costs, its limits.
public struct ModelSpec: Sendable, Equatable {
    /// The name agents use.
    public var name: String
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
    public var maxConcurrency: Int?
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    /// The `anthropic-version` header value.
    public var anthropicVersion: String

    /// The cost in dollars of a call with these token counts.
    public func cost(tokensIn: Int, tokensOut: Int) -> Double {
        (Double(tokensIn) * inputPerMTok + Double(tokensOut) * outputPerMTok) / 1_000_000
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
        inputPerMTok = json["price"]?["input_per_mtok"]?.numberValue ?? 0
        outputPerMTok = json["price"]?["output_per_mtok"]?.numberValue ?? 0
        maxConcurrency = json["max_concurrency"]?.intValue
        requestsPerMinute = json["requests_per_minute"]?.intValue
        tokensPerMinute = json["tokens_per_minute"]?.intValue
        anthropicVersion = json["anthropic_version"]?.stringValue ?? "2023-06-01"
        endpoint = provider == .openai ? base + "/chat/completions" : base + "/messages"
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
