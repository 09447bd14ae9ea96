import ChorusJSON
import Foundation

/// A chat request in either wire shape (OpenAI chat completions or Anthropic Messages),
/// reduced to what the simulator needs to answer it.
struct ModelRequest {
    enum OutputFormat: Equatable {
        case text
        case jsonObject
        case jsonSchema(JSONValue)
    }

    var model: String
    var system: String
    var messages: [(role: String, text: String)]
    var stream: Bool
    var maxTokens: Int?
    var format: OutputFormat
    var includeUsageInStream: Bool

    /// The last user message: what the answer is about.
    var subject: String {
        messages.last(where: { $0.role == "user" })?.text ?? messages.last?.text ?? ""
    }

    /// A rough token count of the prompt: about four bytes a token, four tokens a message.
    var promptTokens: Int {
        messages.reduce(tokenEstimate(system)) { $0 + tokenEstimate($1.text) + 4 }
    }

    /// Identity of the request for deterministic answers: model, system and messages.
    func contentHash(seed: UInt64) -> UInt64 {
        var hash = fnv1a64(model.utf8, seed: seed)
        hash = fnv1a64(system.utf8, seed: hash)
        for message in messages {
            hash = fnv1a64(message.role.utf8, seed: hash)
            hash = fnv1a64(message.text.utf8, seed: hash)
        }
        return hash
    }
}

func tokenEstimate(_ text: String) -> Int { (text.utf8.count + 3) / 4 }

/// Wire shapes of the two APIs' requests, decoded leniently: unknown fields are ignored
/// (real clients send many), missing required ones are reported.
enum WireRequest {
    struct Part: Decodable {
        var type: String?
        var text: String?
    }

    enum Content: Decodable {
        case text(String)
        case parts([Part])

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) { self = .text(text) } else {
                self = .parts(try container.decode([Part].self))
            }
        }

        var text: String {
            switch self {
            case .text(let text): return text
            case .parts(let parts): return parts.compactMap(\.text).joined(separator: "\n")
            }
        }
    }

    struct Message: Decodable {
        var role: String
        var content: Content?
    }

    struct ResponseFormat: Decodable {
        struct Schema: Decodable { var schema: JSONValue? }
        var type: String
        var json_schema: Schema?
    }

    struct StreamOptions: Decodable { var include_usage: Bool? }

    struct OpenAIChat: Decodable {
        var model: String
        var messages: [Message]
        var stream: Bool?
        var stream_options: StreamOptions?
        var max_tokens: Int?
        var max_completion_tokens: Int?
        var response_format: ResponseFormat?
    }

    struct AnthropicMessages: Decodable {
        var model: String
        var max_tokens: Int
        var messages: [Message]
        var system: Content?
        var stream: Bool?
    }

    static func decodeOpenAI(_ body: [UInt8], decoder: JSONDecoder) throws -> ModelRequest {
        let wire = try decoder.decode(OpenAIChat.self, from: Data(body))
        guard !wire.messages.isEmpty else { throw RequestProblem("'messages' must not be empty") }
        var format = ModelRequest.OutputFormat.text
        switch wire.response_format?.type {
        case nil, "text": break
        case "json_object": format = .jsonObject
        case "json_schema": format = .jsonSchema(wire.response_format?.json_schema?.schema ?? [:])
        case let other?: throw RequestProblem("response_format.type must be text, json_object or json_schema, got '\(other)'")
        }
        let system = wire.messages.filter { $0.role == "system" || $0.role == "developer" }
            .compactMap { $0.content?.text }.joined(separator: "\n")
        return ModelRequest(
            model: wire.model, system: system,
            messages: wire.messages.filter { $0.role != "system" && $0.role != "developer" }
                .map { ($0.role, $0.content?.text ?? "") },
            stream: wire.stream ?? false, maxTokens: wire.max_completion_tokens ?? wire.max_tokens,
            format: format, includeUsageInStream: wire.stream_options?.include_usage ?? false)
    }

    static func decodeAnthropic(_ body: [UInt8], decoder: JSONDecoder) throws -> ModelRequest {
        let wire = try decoder.decode(AnthropicMessages.self, from: Data(body))
        guard !wire.messages.isEmpty else { throw RequestProblem("'messages' must not be empty") }
        return ModelRequest(
            model: wire.model, system: wire.system?.text ?? "",
            messages: wire.messages.map { ($0.role, $0.content?.text ?? "") },
            stream: wire.stream ?? false, maxTokens: wire.max_tokens, format: .text, includeUsageInStream: true)
    }
}

/// A request the simulator refuses with 400, and why.
struct RequestProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }

    /// A one-line reason for a body that did not decode.
    static func describe(_ error: Error) -> String {
        if let problem = error as? RequestProblem { return problem.message }
        guard let error = error as? DecodingError else { return "invalid request body" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "body" : "$" + keys
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field '\(key.stringValue)' at \(path(context))"
        case .typeMismatch(let type, let context):
            return "\(path(context)): expected \(type)"
        case .valueNotFound(let type, let context):
            return "\(path(context)): expected \(type), found null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "body is not valid JSON" : "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "invalid request body"
        }
    }
}
