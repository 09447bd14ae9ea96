import ChorusIO
import Glibc
import HTTPTypes

/// Turns a `ChatRequest` into the HTTP request one configured model expects.
///
/// The API key is read from the environment when the request is built and goes only into
/// a header: request headers are never traced or logged, only bodies.
public struct ModelEndpoint: Sendable {
    /// The model's configuration.
    public let spec: ModelSpec

    /// An endpoint for `spec`.
    public init(spec: ModelSpec) { self.spec = spec }

    /// The request body for `request` in this provider's shape.
    package func body(for request: ChatRequest) -> [UInt8] {
        switch spec.provider {
        case .openai: return OpenAIChatRequestBody.encode(request)
        case .anthropic: return AnthropicRequestBody.encode(request)
        }
    }

    /// The API key from the environment, when the model names a variable and it is set.
    public func apiKey() -> String? {
        guard let variable = spec.apiKeyEnv, let value = getenv(variable) else { return nil }
        let key = String(cString: value)
        return key.isEmpty ? nil : key
    }

    /// The HTTP request carrying `body`, with authentication from the environment.
    public func httpRequest(body: [UInt8], timeout: Duration) throws(MissingAPIKey) -> HTTPClientRequest {
        var fields: HTTPFields = [.contentType: "application/json", .accept: "application/json"]
        if let variable = spec.apiKeyEnv {
            // getenv, not ProcessInfo.environment: that builds a dictionary of the whole
            // environment, once per model call.
            guard let key = apiKey() else { throw MissingAPIKey(model: spec.name, variable: variable) }
            switch spec.provider {
            case .openai: fields[.authorization] = "Bearer \(key)"
            case .anthropic: fields[HTTPField.Name("x-api-key")!] = key
            }
        }
        if spec.provider == .anthropic { fields[HTTPField.Name("anthropic-version")!] = spec.anthropicVersion }
        if spec.stream { fields[.accept] = "text/event-stream" }
        return HTTPClientRequest(
            method: .post, url: spec.endpoint, headerFields: fields, body: body,
            timeout: timeout, connectTimeout: .seconds(10), idleTimeout: spec.stream ? spec.idleTimeout : nil,
            maxResponseBytes: spec.maxResponseBytes)
    }
}

/// The environment variable that should hold a model's API key is unset. The message
/// names the variable, never a value.
public struct MissingAPIKey: Error, Sendable, CustomStringConvertible {
    /// The model's name in chorus.json.
    public var model: String
    /// The environment variable its `api_key_env` names.
    public var variable: String
    public var description: String { "model '\(model)' needs an API key in the environment variable \(variable), which is not set" }
}
