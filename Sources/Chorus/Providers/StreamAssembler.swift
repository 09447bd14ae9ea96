import ChorusIO
import ChorusJSON

/// Turns a streamed answer (server-sent events, OpenAI or Anthropic) back into the body a
/// non-streamed call would have returned, so the trace, replay, diff and search see one
/// shape whichever way an answer travelled. Pure: fed events, no I/O.
struct StreamAssembler {
    /// What one event meant.
    enum Step: Equatable {
        /// Nothing the caller needs to act on (a ping, a role delta).
        case progress
        /// The event carried answer text or tool input: the first one marks time to first token.
        case content
        /// The stream is complete.
        case done
        /// The provider reported an error inside the stream (`overloaded_error`, say).
        case error(String)
        /// The event is not what the API promises.
        case malformed(String)
    }

    private let provider: ProviderKind
    private var id: JSONValue = .null
    private var model: JSONValue = .null
    private var created: JSONValue = .null
    private var text = ""
    private var finishReason: String?
    private var usage: [String: JSONValue] = [:]
    /// Tool calls (OpenAI) or content blocks (Anthropic) by index.
    private var blocks: [Int: Block] = [:]
    private(set) var isDone = false

    private struct Block {
        var type = "text"
        var id: JSONValue = .null
        var name: JSONValue = .null
        var text = ""
    }

    init(provider: ProviderKind) { self.provider = provider }

    mutating func consume(_ event: ServerSentEvent) -> Step {
        if provider == .openai, event.data == "[DONE]" {
            isDone = true
            return .done
        }
        guard let json = try? JSONValue(parsing: Array(event.data.utf8)), case .object = json else {
            return .malformed("stream event is not a JSON object: \(event.data.prefix(120))")
        }
        return provider == .openai ? consumeOpenAI(json) : consumeAnthropic(json, type: event.event)
    }

    private mutating func consumeOpenAI(_ json: JSONValue) -> Step {
        if let error = json["error"] { return .error(error["message"]?.stringValue ?? error.text) }
        if id == .null { id = json["id"] ?? .null; model = json["model"] ?? .null; created = json["created"] ?? .null }
        if let counted = json["usage"]?.objectValue { usage = counted }
        guard let choice = json["choices"]?.arrayValue?.first else { return .progress }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        var step = Step.progress
        if let piece = choice["delta"]?["content"]?.stringValue, !piece.isEmpty {
            text += piece
            step = .content
        }
        for call in choice["delta"]?["tool_calls"]?.arrayValue ?? [] {
            let index = call["index"]?.intValue ?? 0
            var block = blocks[index] ?? Block(type: "function")
            if let value = call["id"], value != .null { block.id = value }
            if let value = call["function"]?["name"], value != .null { block.name = value }
            if let piece = call["function"]?["arguments"]?.stringValue, !piece.isEmpty {
                block.text += piece
                step = .content
            }
            blocks[index] = block
        }
        return step
    }

    private mutating func consumeAnthropic(_ json: JSONValue, type eventType: String) -> Step {
        switch json["type"]?.stringValue ?? eventType {
        case "message_start":
            let message = json["message"] ?? [:]
            id = message["id"] ?? .null
            model = message["model"] ?? .null
            usage = message["usage"]?.objectValue ?? [:]
            return .progress
        case "content_block_start":
            let start = json["content_block"] ?? [:]
            var block = Block(type: start["type"]?.stringValue ?? "text", id: start["id"] ?? .null, name: start["name"] ?? .null)
            block.text = start["text"]?.stringValue ?? ""
            blocks[json["index"]?.intValue ?? blocks.count] = block
            return .progress
        case "content_block_delta":
            let index = json["index"]?.intValue ?? 0
            let delta = json["delta"] ?? [:]
            guard let piece = delta["text"]?.stringValue ?? delta["partial_json"]?.stringValue else { return .progress }
            blocks[index, default: Block()].text += piece
            return piece.isEmpty ? .progress : .content
        case "message_delta":
            if let reason = json["delta"]?["stop_reason"]?.stringValue { finishReason = reason }
            for (key, value) in json["usage"]?.objectValue ?? [:] where value != .null { usage[key] = value }
            return .progress
        case "message_stop":
            isDone = true
            return .done
        case "error":
            let error = json["error"] ?? [:]
            return .error(error["message"]?.stringValue ?? error.text)
        default:  // ping, content_block_stop, and event types added later
            return .progress
        }
    }

    /// The equivalent non-streamed response body; nil when the stream never completed.
    func assembled() -> [UInt8]? {
        // A server that ends its stream after the finishing chunk without `[DONE]` still
        // gave a whole answer.
        guard isDone || finishReason != nil else { return nil }
        let ordered = blocks.keys.sorted().map { blocks[$0]! }
        switch provider {
        case .openai:
            var message: [String: JSONValue] = ["role": "assistant", "content": ordered.isEmpty || !text.isEmpty ? .string(text) : .null]
            if !ordered.isEmpty {
                message["tool_calls"] = .array(
                    ordered.map { call in
                        ["id": call.id, "type": "function", "function": ["name": call.name, "arguments": .string(call.text)]]
                    })
            }
            var body: [String: JSONValue] = [
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [["index": 0, "message": .object(message), "finish_reason": finishReason.map(JSONValue.string) ?? .null]],
            ]
            if !usage.isEmpty { body["usage"] = .object(usage) }
            return JSONValue.object(body).serialized()
        case .anthropic:
            let content: [JSONValue] = ordered.map { block in
                if block.type == "tool_use" {
                    let input = block.text.isEmpty ? [:] : (try? JSONValue(parsing: Array(block.text.utf8))) ?? .string(block.text)
                    return ["type": "tool_use", "id": block.id, "name": block.name, "input": input]
                }
                return ["type": .string(block.type), "text": .string(block.text)]
            }
            return JSONValue.object([
                "id": id, "type": "message", "role": "assistant", "model": model, "content": .array(content),
                "stop_reason": finishReason.map(JSONValue.string) ?? .null, "stop_sequence": .null, "usage": .object(usage),
            ]).serialized()
        }
    }
}
