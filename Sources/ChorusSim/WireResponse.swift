import ChorusJSON

/// The answer to one model request, independent of the API shape it goes out in.
struct SimulatedAnswer {
    var id: String
    var model: String
    var content: String
    var promptTokens: Int
    var completionTokens: Int
    var created: Int
    /// OpenAI's finish_reason or Anthropic's stop_reason.
    var finishReason: String
    /// The tool calls of the answer: a forced answer tool's, or the calls a `tooluser-`
    /// model makes. Each input is JSON text.
    var toolCalls: [SimulatedToolCall] = []
}

/// One tool call of a simulated answer.
struct SimulatedToolCall {
    var id: String
    var name: String
    /// The input, as JSON text.
    var arguments: String
}

/// Encodes answers and errors in OpenAI's chat-completions shape (JSON and SSE).
/// Written with `JSONWriter`: this runs once per simulated request.
enum OpenAIWire {
    static func body(_ answer: SimulatedAnswer) -> [UInt8] {
        var w = JSONWriter(capacity: 384 + answer.content.utf8.count)
        w.raw("{\"id\":"); w.string(answer.id)
        w.raw(",\"object\":\"chat.completion\",\"created\":"); w.number(answer.created)
        w.raw(",\"model\":"); w.string(answer.model)
        w.raw(",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":")
        if answer.toolCalls.isEmpty || !answer.content.isEmpty { w.string(answer.content) } else { w.raw("null") }
        if !answer.toolCalls.isEmpty {
            w.raw(",\"tool_calls\":[")
            for (i, call) in answer.toolCalls.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw("{\"id\":"); w.string(call.id)
                w.raw(",\"type\":\"function\",\"function\":{\"name\":"); w.string(call.name)
                w.raw(",\"arguments\":"); w.string(call.arguments); w.raw("}}")
            }
            w.raw("]")
        }
        w.raw("},\"finish_reason\":"); w.string(answer.finishReason); w.raw("}],")
        usage(answer, into: &w)
        w.raw(",\"system_fingerprint\":\"chorus-sim\"}")
        return w.bytes
    }

    /// SSE events: a role delta, content deltas, a finishing chunk with usage, `[DONE]`.
    static func events(_ answer: SimulatedAnswer, tokensPerEvent: Int) -> [StreamEvent] {
        func chunk(_ body: (inout JSONWriter) -> Void) -> [UInt8] {
            var w = JSONWriter()
            w.raw("data: {\"id\":"); w.string(answer.id)
            w.raw(",\"object\":\"chat.completion.chunk\",\"created\":"); w.number(answer.created)
            w.raw(",\"model\":"); w.string(answer.model)
            w.raw(",\"choices\":[{\"index\":0,")
            body(&w)
            w.raw("}\n\n")
            return w.bytes
        }
        var events = [
            StreamEvent(bytes: chunk { $0.raw("\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]") }, tokens: 0)
        ]
        if answer.toolCalls.isEmpty || !answer.content.isEmpty {
            for delta in streamDeltas(of: answer.content, tokensPerEvent: tokensPerEvent) {
                let bytes = chunk { w in
                    w.raw("\"delta\":{\"content\":"); w.string(delta.text); w.raw("},\"finish_reason\":null}]")
                }
                events.append(StreamEvent(bytes: bytes, tokens: delta.tokens))
            }
        }
        for (index, call) in answer.toolCalls.enumerated() {
            let start = chunk { w in
                w.raw("\"delta\":{\"tool_calls\":[{\"index\":"); w.number(index); w.raw(",\"id\":"); w.string(call.id)
                w.raw(",\"type\":\"function\",\"function\":{\"name\":"); w.string(call.name)
                w.raw(",\"arguments\":\"\"}}]},\"finish_reason\":null}]")
            }
            events.append(StreamEvent(bytes: start, tokens: 0))
            for delta in streamDeltas(of: call.arguments, tokensPerEvent: tokensPerEvent) {
                let bytes = chunk { w in
                    w.raw("\"delta\":{\"tool_calls\":[{\"index\":"); w.number(index); w.raw(",\"function\":{\"arguments\":")
                    w.string(delta.text)
                    w.raw("}}]},\"finish_reason\":null}]")
                }
                events.append(StreamEvent(bytes: bytes, tokens: delta.tokens))
            }
        }
        let finish = chunk { w in
            w.raw("\"delta\":{},\"finish_reason\":"); w.string(answer.finishReason); w.raw("}],")
            usage(answer, into: &w)
        }
        events.append(StreamEvent(bytes: finish, tokens: 0))
        events.append(StreamEvent(bytes: Array("data: [DONE]\n\n".utf8), tokens: 0))
        return events
    }

    static func error(message: String, type: String) -> [UInt8] {
        var w = JSONWriter()
        w.raw("{\"error\":{\"message\":"); w.string(message)
        w.raw(",\"type\":"); w.string(type)
        w.raw(",\"code\":null}}")
        return w.bytes
    }

    private static func usage(_ answer: SimulatedAnswer, into w: inout JSONWriter) {
        w.raw("\"usage\":{\"prompt_tokens\":"); w.number(answer.promptTokens)
        w.raw(",\"completion_tokens\":"); w.number(answer.completionTokens)
        w.raw(",\"total_tokens\":"); w.number(answer.promptTokens + answer.completionTokens)
        w.raw("}")
    }
}

/// Encodes answers and errors in Anthropic's Messages shape (JSON and SSE).
enum AnthropicWire {
    static func body(_ answer: SimulatedAnswer) -> [UInt8] {
        var w = JSONWriter(capacity: 384 + answer.content.utf8.count)
        message(answer, content: answer.content, stopReason: answer.finishReason, outputTokens: answer.completionTokens, into: &w)
        return w.bytes
    }

    private static func message(
        _ answer: SimulatedAnswer, content: String?, stopReason: String?,
        outputTokens: Int, into w: inout JSONWriter
    ) {
        w.raw("{\"id\":"); w.string(answer.id)
        w.raw(",\"type\":\"message\",\"role\":\"assistant\",\"model\":"); w.string(answer.model)
        w.raw(",\"content\":[")
        if let content {
            var first = true
            if answer.toolCalls.isEmpty || !content.isEmpty {
                w.raw("{\"type\":\"text\",\"text\":"); w.string(content); w.raw("}")
                first = false
            }
            for call in answer.toolCalls {
                if !first { w.raw(",") }
                first = false
                w.raw("{\"type\":\"tool_use\",\"id\":"); w.string(call.id)
                w.raw(",\"name\":"); w.string(call.name); w.raw(",\"input\":"); w.json(call.arguments); w.raw("}")
            }
        }
        w.raw("],\"stop_reason\":")
        if let stopReason { w.string(stopReason) } else { w.raw("null") }
        w.raw(",\"stop_sequence\":null,\"usage\":{\"input_tokens\":"); w.number(answer.promptTokens)
        w.raw(",\"output_tokens\":"); w.number(outputTokens)
        w.raw("}}")
    }

    /// SSE events in the order Anthropic sends them, each with its `event:` line.
    static func events(_ answer: SimulatedAnswer, tokensPerEvent: Int) -> [StreamEvent] {
        func event(_ name: StaticString, tokens: Int = 0, _ body: (inout JSONWriter) -> Void) -> StreamEvent {
            var w = JSONWriter()
            w.raw("event: "); w.raw(name); w.raw("\ndata: ")
            body(&w)
            w.raw("\n\n")
            return StreamEvent(bytes: w.bytes, tokens: tokens)
        }
        var events = [
            event("message_start") { w in
                w.raw("{\"type\":\"message_start\",\"message\":")
                message(answer, content: nil, stopReason: nil, outputTokens: 0, into: &w)
                w.raw("}")
            },
            event("ping") { $0.raw("{\"type\":\"ping\"}") },
        ]
        // One content block per text and per tool call, each started, filled and stopped.
        var blocks: [(tool: SimulatedToolCall?, text: String)] = []
        if answer.toolCalls.isEmpty || !answer.content.isEmpty { blocks.append((nil, answer.content)) }
        blocks += answer.toolCalls.map { ($0, $0.arguments) }
        for (index, block) in blocks.enumerated() {
            events.append(
                event("content_block_start") { w in
                    w.raw("{\"type\":\"content_block_start\",\"index\":"); w.number(index)
                    if let call = block.tool {
                        w.raw(",\"content_block\":{\"type\":\"tool_use\",\"id\":"); w.string(call.id)
                        w.raw(",\"name\":"); w.string(call.name); w.raw(",\"input\":{}}}")
                    } else {
                        w.raw(",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
                    }
                })
            for delta in streamDeltas(of: block.text, tokensPerEvent: tokensPerEvent) {
                events.append(
                    event("content_block_delta", tokens: delta.tokens) { w in
                        w.raw("{\"type\":\"content_block_delta\",\"index\":"); w.number(index)
                        w.raw(
                            block.tool == nil
                                ? ",\"delta\":{\"type\":\"text_delta\",\"text\":"
                                : ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":")
                        w.string(delta.text)
                        w.raw("}}")
                    })
            }
            events.append(
                event("content_block_stop") { w in
                    w.raw("{\"type\":\"content_block_stop\",\"index\":"); w.number(index); w.raw("}")
                })
        }
        events.append(
            event("message_delta") { w in
                w.raw("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"); w.string(answer.finishReason)
                w.raw(",\"stop_sequence\":null},\"usage\":{\"output_tokens\":")
                w.number(answer.completionTokens)
                w.raw("}}")
            })
        events.append(event("message_stop") { $0.raw("{\"type\":\"message_stop\"}") })
        return events
    }

    static func error(message: String, type: String) -> [UInt8] {
        var w = JSONWriter()
        w.raw("{\"type\":\"error\",\"error\":{\"type\":"); w.string(type)
        w.raw(",\"message\":"); w.string(message)
        w.raw("}}")
        return w.bytes
    }
}

/// One server-sent event of a streamed answer, with how many simulator tokens it carries
/// (0 for the framing events: role, block start and stop, finish, `[DONE]`). The pacer
/// sends an event once the tokens before it have had their time.
struct StreamEvent {
    var bytes: [UInt8]
    var tokens: Int
}

/// The deltas a text is streamed in: `tokensPerEvent` simulator tokens each (see
/// `simulatorTokens`), concatenating to the text byte for byte. An empty text is one
/// empty delta, as before; it also counts as the one token usage reports for it.
func streamDeltas(of text: String, tokensPerEvent: Int) -> [(text: String, tokens: Int)] {
    let tokens = simulatorTokens(of: text)
    guard !tokens.isEmpty else { return [("", 1)] }
    let size = max(1, tokensPerEvent)
    return stride(from: 0, to: tokens.count, by: size).map { start in
        let group = tokens[start..<min(tokens.count, start + size)]
        return (group.joined(), group.count)
    }
}

/// The simulator's tokens: four UTF-8 bytes each, the same rule `tokenEstimate` reports
/// usage by, so an answer streamed one token per event has as many deltas as its
/// `completion_tokens` (usage is its simulator tokens, at least one). A cut that would
/// fall inside a multi-byte character moves forward to the character's end (a delta is
/// a JSON string and must be whole UTF-8); characters are at most four bytes, so every
/// four-byte stretch still ends exactly one token and the count stays `(bytes + 3) / 4`.
func simulatorTokens(of text: String) -> [String] {
    let bytes = Array(text.utf8)
    var tokens: [String] = []
    tokens.reserveCapacity((bytes.count + 3) / 4)
    var start = 0
    while start < bytes.count {
        var end = min(bytes.count, tokens.count * 4 + 4)
        while end < bytes.count && bytes[end] & 0xC0 == 0x80 { end += 1 }
        tokens.append(String(decoding: bytes[start..<end], as: UTF8.self))
        start = end
    }
    return tokens
}
