import ChorusJSON

/// What a model answered: its text, the tokens the provider counted, and why it stopped.
package struct ModelAnswer: Sendable, Equatable {
    /// The assistant's text; for a `tool`-mode answer, the forced tool call's input as JSON.
    package var text: String
    package var tokensIn: Int
    package var tokensOut: Int
    /// `finish_reason` (OpenAI) or `stop_reason` (Anthropic) as the provider sent it.
    package var finishReason: String? = nil
    /// The assistant's own text, apart from any tool call.
    package var content = ""
    /// Every tool call of the answer, in order (for a `tool`-mode answer, the forced one too).
    package var toolCalls: [ToolCall] = []

    /// The answer was cut at `max_tokens`: OpenAI's `length`, Anthropic's `max_tokens`.
    package var truncated: Bool { finishReason == "length" || finishReason == "max_tokens" }
}

/// A 2xx response whose body is not what the provider's API promises.
package struct MalformedResponse: Error, Sendable, CustomStringConvertible {
    /// What was expected and not found.
    package var reason: String
    package var description: String { "malformed response: \(reason)" }
}

/// Reads answers out of provider response bodies.
package enum ModelAnswerParser {
    /// Parses a whole (non-streamed) response body of `provider`'s shape.
    package static func parse(_ body: [UInt8], provider: ProviderKind) throws(MalformedResponse) -> ModelAnswer {
        let json: JSONValue
        do { json = try JSONValue(parsing: body) } catch {
            throw MalformedResponse(reason: "body is not JSON (\(error))")
        }
        switch provider {
        case .openai:
            guard let choice = json["choices"]?.arrayValue?.first, let message = choice["message"] else {
                throw MalformedResponse(reason: "expected choices[0].message")
            }
            // A forced tool call (`tool` mode) carries the answer as its arguments, a JSON string.
            let text: String
            let calls = message["tool_calls"]?.arrayValue ?? []
            if let arguments = calls.first?["function"]?["arguments"]?.stringValue {
                text = arguments
            } else if let content = message["content"]?.stringValue {
                text = content
            } else {
                throw MalformedResponse(reason: "expected choices[0].message.content to be a string")
            }
            let toolCalls = calls.enumerated().map { i, call in
                let arguments = call["function"]?["arguments"]?.stringValue ?? ""
                return ToolCall(
                    id: call["id"]?.stringValue ?? "call_\(i)", name: call["function"]?["name"]?.stringValue ?? "",
                    input: arguments.isEmpty ? [:] : (try? JSONValue(parsing: arguments)) ?? .string(arguments))
            }
            return ModelAnswer(
                text: text, tokensIn: try tokens(json, "prompt_tokens"), tokensOut: try tokens(json, "completion_tokens"),
                finishReason: choice["finish_reason"]?.stringValue, content: message["content"]?.stringValue ?? "",
                toolCalls: toolCalls)
        case .anthropic:
            guard let blocks = json["content"]?.arrayValue else { throw MalformedResponse(reason: "expected content blocks") }
            let text: String
            let content = blocks.compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil }.joined()
            if let input = blocks.first(where: { $0["type"] == "tool_use" })?["input"] {
                text = input.text
            } else {
                text = content
            }
            let toolCalls = blocks.filter { $0["type"] == "tool_use" }.enumerated().map { i, block in
                ToolCall(id: block["id"]?.stringValue ?? "toolu_\(i)", name: block["name"]?.stringValue ?? "", input: block["input"] ?? [:])
            }
            return ModelAnswer(
                text: text, tokensIn: try tokens(json, "input_tokens"), tokensOut: try tokens(json, "output_tokens"),
                finishReason: json["stop_reason"]?.stringValue, content: content, toolCalls: toolCalls)
        }
    }

    /// The most tokens one call can count: far above any context window (1M today), far
    /// below what would overflow a sum over a run.
    package static let maxTokenCount = 100_000_000

    /// A token count from `usage`: absent or null is 0 (some servers send no usage); a
    /// negative, fractional, huge or non-numeric count is a malformed response, retried like
    /// one, and its body (recorded with the call) keeps the raw value. Trusting it blindly
    /// recorded -5 tokens in and summed them into the run's cost (issue 17).
    static func tokens(_ json: JSONValue, _ key: String) throws(MalformedResponse) -> Int {
        guard let value = json["usage"]?[key], value != .null else { return 0 }
        if case .number(let number) = value, number >= 0, number <= Double(maxTokenCount), number.rounded() == number {
            return Int(number)
        }
        throw MalformedResponse(reason: "usage.\(key) is \(value.text.prefix(40)): expected a whole number from 0 to \(maxTokenCount)")
    }

    /// The answer as JSON, for agents with an output schema. Tolerates a Markdown code
    /// fence around the object, which small models often add.
    package static func json(from text: String) throws(MalformedResponse) -> JSONValue {
        // Native trimming: Foundation's bridges through UTF-16, and a lead's 10,000-subtask
        // plan spent 30 ms there (perf).
        var body = trimmed(Substring(text))
        if body.hasPrefix("```") {
            body = body.drop(while: { $0 != "\n" }).dropFirst()
            if let fence = body.ranges(of: "```").last { body = body[..<fence.lowerBound] }
        }
        do { return try JSONValue(parsing: String(body)) } catch {
            throw MalformedResponse(reason: "answer is not JSON (\(error))")
        }
    }

    private static func trimmed(_ text: Substring) -> Substring {
        let scalars = text.unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end && scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start && scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
        return Substring(scalars[start..<end])
    }
}
