import Foundation

/// The answer to one model request, independent of the API shape it goes out in.
struct SimulatedAnswer {
    var id: String
    var model: String
    var content: String
    var promptTokens: Int
    var completionTokens: Int
    var created: Int
}

/// Encodes answers and errors in OpenAI's chat-completions shape (JSON and SSE).
enum OpenAIWire {
    private struct Completion: Encodable {
        struct Choice: Encodable {
            struct Message: Encodable { var role = "assistant"; var content: String }
            var index = 0
            var message: Message
            var finish_reason = "stop"
        }
        var id: String
        var object = "chat.completion"
        var created: Int
        var model: String
        var choices: [Choice]
        var usage: Usage
        var system_fingerprint = "chorus-sim"
    }

    private struct Usage: Encodable {
        var prompt_tokens: Int
        var completion_tokens: Int
        var total_tokens: Int
    }

    private struct Chunk: Encodable {
        struct Choice: Encodable {
            struct Delta: Encodable { var role: String?; var content: String? }
            var index = 0
            var delta: Delta
            var finish_reason: String?
        }
        var id: String
        var object = "chat.completion.chunk"
        var created: Int
        var model: String
        var choices: [Choice]
        var usage: Usage?
    }

    static func body(_ answer: SimulatedAnswer, encoder: JSONEncoder) -> [UInt8] {
        let completion = Completion(
            id: answer.id, created: answer.created, model: answer.model,
            choices: [.init(message: .init(content: answer.content))],
            usage: usage(answer))
        return Array((try? encoder.encode(completion)) ?? Data())
    }

    /// SSE events: a role delta, content deltas, a finishing chunk with usage, `[DONE]`.
    static func events(_ answer: SimulatedAnswer, encoder: JSONEncoder) -> [[UInt8]] {
        func event(_ chunk: Chunk) -> [UInt8] {
            Array("data: ".utf8) + Array((try? encoder.encode(chunk)) ?? Data()) + Array("\n\n".utf8)
        }
        func chunk(_ delta: Chunk.Choice.Delta, finish: String? = nil, usage: Usage? = nil) -> Chunk {
            Chunk(id: answer.id, created: answer.created, model: answer.model,
                  choices: [.init(delta: delta, finish_reason: finish)], usage: usage)
        }
        var events = [event(chunk(.init(role: "assistant", content: "")))]
        for piece in pieces(of: answer.content) { events.append(event(chunk(.init(content: piece)))) }
        events.append(event(chunk(.init(), finish: "stop", usage: usage(answer))))
        events.append(Array("data: [DONE]\n\n".utf8))
        return events
    }

    static func error(message: String, type: String, code: String?, encoder: JSONEncoder) -> [UInt8] {
        struct Body: Encodable {
            struct Detail: Encodable { var message: String; var type: String; var code: String? }
            var error: Detail
        }
        return Array((try? encoder.encode(Body(error: .init(message: message, type: type, code: code)))) ?? Data())
    }

    private static func usage(_ answer: SimulatedAnswer) -> Usage {
        Usage(prompt_tokens: answer.promptTokens, completion_tokens: answer.completionTokens,
              total_tokens: answer.promptTokens + answer.completionTokens)
    }
}

/// Encodes answers and errors in Anthropic's Messages shape (JSON and SSE).
enum AnthropicWire {
    private struct Usage: Encodable { var input_tokens: Int; var output_tokens: Int }
    private struct TextBlock: Encodable { var type = "text"; var text: String }

    private struct Message: Encodable {
        var id: String
        var type = "message"
        var role = "assistant"
        var model: String
        var content: [TextBlock]
        var stop_reason: String? = "end_turn"
        var stop_sequence: String? = nil
        var usage: Usage

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id); try c.encode(type, forKey: .type); try c.encode(role, forKey: .role)
            try c.encode(model, forKey: .model); try c.encode(content, forKey: .content)
            try c.encode(stop_reason, forKey: .stop_reason); try c.encode(stop_sequence, forKey: .stop_sequence)
            try c.encode(usage, forKey: .usage)
        }
        enum CodingKeys: CodingKey { case id, type, role, model, content, stop_reason, stop_sequence, usage }
    }

    static func body(_ answer: SimulatedAnswer, encoder: JSONEncoder) -> [UInt8] {
        Array((try? encoder.encode(message(answer, content: [.init(text: answer.content)], stop: "end_turn",
                                           output: answer.completionTokens))) ?? Data())
    }

    private static func message(_ answer: SimulatedAnswer, content: [TextBlock], stop: String?, output: Int) -> Message {
        Message(id: answer.id, model: answer.model, content: content, stop_reason: stop,
                usage: .init(input_tokens: answer.promptTokens, output_tokens: output))
    }

    /// SSE events in the order Anthropic sends them, each with its `event:` line.
    static func events(_ answer: SimulatedAnswer, encoder: JSONEncoder) -> [[UInt8]] {
        func event<T: Encodable>(_ name: String, _ payload: T) -> [UInt8] {
            Array("event: \(name)\ndata: ".utf8) + Array((try? encoder.encode(payload)) ?? Data()) + Array("\n\n".utf8)
        }
        struct Start: Encodable { var type = "message_start"; var message: Message }
        struct BlockStart: Encodable { var type = "content_block_start"; var index = 0; var content_block: TextBlock }
        struct Delta: Encodable { var type = "text_delta"; var text: String }
        struct BlockDelta: Encodable { var type = "content_block_delta"; var index = 0; var delta: Delta }
        struct BlockStop: Encodable { var type = "content_block_stop"; var index = 0 }
        struct MessageDelta: Encodable {
            struct Stop: Encodable { var stop_reason = "end_turn"; var stop_sequence: String? = nil
                func encode(to encoder: Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(stop_reason, forKey: .stop_reason); try c.encode(stop_sequence, forKey: .stop_sequence)
                }
                enum CodingKeys: CodingKey { case stop_reason, stop_sequence }
            }
            var type = "message_delta"; var delta = Stop(); var usage: Usage
        }
        struct Stop: Encodable { var type = "message_stop" }

        var events = [event("message_start", Start(message: message(answer, content: [], stop: nil, output: 0))),
                      event("content_block_start", BlockStart(content_block: .init(text: "")))]
        for piece in pieces(of: answer.content) {
            events.append(event("content_block_delta", BlockDelta(delta: .init(text: piece))))
        }
        events.append(event("content_block_stop", BlockStop()))
        events.append(event("message_delta", MessageDelta(usage: .init(input_tokens: answer.promptTokens,
                                                                       output_tokens: answer.completionTokens))))
        events.append(event("message_stop", Stop()))
        return events
    }

    static func error(message: String, type: String, encoder: JSONEncoder) -> [UInt8] {
        struct Body: Encodable {
            struct Detail: Encodable { var type: String; var message: String }
            var type = "error"
            var error: Detail
        }
        return Array((try? encoder.encode(Body(error: .init(type: type, message: message)))) ?? Data())
    }
}

/// Splits content into a handful of stream deltas at word boundaries.
func pieces(of content: String, count: Int = 8) -> [String] {
    let words = content.split(separator: " ", omittingEmptySubsequences: false)
    guard words.count > 1 else { return [content] }
    let size = max(1, (words.count + count - 1) / count)
    return stride(from: 0, to: words.count, by: size).map { start in
        let piece = words[start..<min(words.count, start + size)].joined(separator: " ")
        return start == 0 ? piece : " " + piece
    }
}
