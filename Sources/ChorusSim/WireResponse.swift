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
    static func events(_ answer: SimulatedAnswer) -> [[UInt8]] {
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
        var events = [chunk { $0.raw("\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]") }]
        if answer.toolCalls.isEmpty || !answer.content.isEmpty {
            for piece in pieces(of: answer.content) {
                events.append(
                    chunk { w in
                        w.raw("\"delta\":{\"content\":"); w.string(piece); w.raw("},\"finish_reason\":null}]")
                    })
            }
        }
        for (index, call) in answer.toolCalls.enumerated() {
            events.append(
                chunk { w in
                    w.raw("\"delta\":{\"tool_calls\":[{\"index\":"); w.number(index); w.raw(",\"id\":"); w.string(call.id)
                    w.raw(",\"type\":\"function\",\"function\":{\"name\":"); w.string(call.name)
                    w.raw(",\"arguments\":\"\"}}]},\"finish_reason\":null}]")
                })
            for piece in pieces(of: call.arguments) {
                events.append(
                    chunk { w in
                        w.raw("\"delta\":{\"tool_calls\":[{\"index\":"); w.number(index); w.raw(",\"function\":{\"arguments\":")
                        w.string(piece)
                        w.raw("}}]},\"finish_reason\":null}]")
                    })
            }
        }
        events.append(
            chunk { w in
                w.raw("\"delta\":{},\"finish_reason\":"); w.string(answer.finishReason); w.raw("}],")
                usage(answer, into: &w)
            })
        events.append(Array("data: [DONE]\n\n".utf8))
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
    static func events(_ answer: SimulatedAnswer) -> [[UInt8]] {
        func event(_ name: StaticString, _ body: (inout JSONWriter) -> Void) -> [UInt8] {
            var w = JSONWriter()
            w.raw("event: "); w.raw(name); w.raw("\ndata: ")
            body(&w)
            w.raw("\n\n")
            return w.bytes
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
            for piece in pieces(of: block.text) {
                events.append(
                    event("content_block_delta") { w in
                        w.raw("{\"type\":\"content_block_delta\",\"index\":"); w.number(index)
                        w.raw(
                            block.tool == nil
                                ? ",\"delta\":{\"type\":\"text_delta\",\"text\":"
                                : ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":")
                        w.string(piece)
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
