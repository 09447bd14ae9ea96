import ChorusJSON

/// One training example in OpenAI's chat fine-tuning shape, drawn from a recorded call: the
/// request's conversation as OpenAI chat messages, the accepted answer as the last
/// (assistant) message, and the tools the call offered.
///
/// The trace keeps bodies as sent, so a call to an Anthropic model is converted: `system`
/// becomes a system message, text blocks are joined, `tool_use` blocks become the
/// assistant's `tool_calls` and `tool_result` blocks `tool` messages. An answer given
/// through a forced answer tool (structured output in `tool` mode) is the JSON it carried,
/// as the assistant's content, and that tool is left out of `tools`: it is how Chorus asked
/// for structure, not a tool the model may call.
public struct FineTuneExample: Sendable, Equatable {
    /// The conversation, ending with the assistant's answer.
    public var messages: [JSONValue]
    /// The tools the call offered, in OpenAI's function shape (empty: none).
    public var tools: [JSONValue]

    /// Why a recorded call gives no example.
    public struct Unusable: Error, Sendable, Equatable, CustomStringConvertible {
        /// One line, for the count of what was left out.
        public var reason: String
        public var description: String { reason }
    }

    /// The example as one JSONL line's object: `{"messages": [...], "tools": [...]}`.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["messages": .array(messages)]
        if !tools.isEmpty { object["tools"] = .array(tools) }
        return .object(object)
    }

    /// What duplicates share: the prompt (every message but the answer) and the tools, as
    /// canonical JSON.
    public var requestKey: String {
        JSONValue.object(["messages": .array(Array(messages.dropLast())), "tools": .array(tools)]).text
    }

    /// The example a call to `provider` with these bodies gives.
    public init(request: [UInt8], response: [UInt8], provider: ProviderKind) throws(Unusable) {
        guard let body = try? JSONValue(parsing: request), body.objectValue != nil else { throw Unusable(reason: "request body is not a JSON object") }
        let answer: ModelAnswer
        do { answer = try ModelAnswerParser.parse(response, provider: provider) } catch {
            throw Unusable(reason: "response: \(error.reason)")
        }
        tools = []
        switch provider {
        case .openai:
            messages = try Self.openAIMessages(body)
            for tool in body["tools"]?.arrayValue ?? [] { if let kept = try Self.openAITool(tool) { tools.append(kept) } }
        case .anthropic:
            messages = try Self.anthropicMessages(body)
            for tool in body["tools"]?.arrayValue ?? [] { if let kept = try Self.anthropicTool(tool) { tools.append(kept) } }
        }
        guard !messages.isEmpty else { throw Unusable(reason: "request has no messages") }
        messages.append(["role": "assistant", "content": .string(answer.text)])
    }

    /// An OpenAI request's messages, with only the keys the fine-tuning format reads.
    private static func openAIMessages(_ body: JSONValue) throws(Unusable) -> [JSONValue] {
        guard let list = body["messages"]?.arrayValue else { throw Unusable(reason: "request has no messages array") }
        var out: [JSONValue] = []
        for message in list {
            guard let role = message["role"]?.stringValue, ["system", "developer", "user", "assistant", "tool"].contains(role) else {
                throw Unusable(reason: "a message has no known role")
            }
            var kept: [String: JSONValue] = ["role": .string(role)]
            let content = message["content"] ?? .null
            switch content {
            case .string, .array: kept["content"] = content
            case .null where role == "assistant" && message["tool_calls"] != nil: kept["content"] = .null
            default: throw Unusable(reason: "a \(role) message has no content")
            }
            if role == "assistant", let calls = message["tool_calls"]?.arrayValue {
                var converted: [JSONValue] = []
                for call in calls { converted.append(try openAIToolCall(call)) }
                kept["tool_calls"] = .array(converted)
            }
            if role == "tool" {
                guard let id = message["tool_call_id"]?.stringValue else { throw Unusable(reason: "a tool message has no tool_call_id") }
                kept["tool_call_id"] = .string(id)
            }
            out.append(.object(kept))
        }
        return out
    }

    private static func openAIToolCall(_ call: JSONValue) throws(Unusable) -> JSONValue {
        guard let id = call["id"]?.stringValue, let name = call["function"]?["name"]?.stringValue,
            let arguments = call["function"]?["arguments"]?.stringValue
        else { throw Unusable(reason: "a tool call lacks its id, name or arguments") }
        return ["id": .string(id), "type": "function", "function": ["name": .string(name), "arguments": .string(arguments)]]
    }

    /// An OpenAI tool definition as the format takes it; nil for the forced answer tool.
    private static func openAITool(_ tool: JSONValue) throws(Unusable) -> JSONValue? {
        guard let function = tool["function"], let name = function["name"]?.stringValue else {
            throw Unusable(reason: "a tool has no function name")
        }
        return definition(name: name, description: function["description"]?.stringValue, parameters: function["parameters"])
    }

    private static func anthropicTool(_ tool: JSONValue) throws(Unusable) -> JSONValue? {
        guard let name = tool["name"]?.stringValue else { throw Unusable(reason: "a tool has no name") }
        return definition(name: name, description: tool["description"]?.stringValue, parameters: tool["input_schema"])
    }

    private static func definition(name: String, description: String?, parameters: JSONValue?) -> JSONValue? {
        if description == SchemaInstruction.toolDescription { return nil }
        var function: [String: JSONValue] = ["name": .string(name)]
        if let description { function["description"] = .string(description) }
        if let parameters, parameters.objectValue != nil { function["parameters"] = parameters }
        return ["type": "function", "function": .object(function)]
    }

    /// An Anthropic request's `system` and messages as OpenAI chat messages.
    private static func anthropicMessages(_ body: JSONValue) throws(Unusable) -> [JSONValue] {
        guard let list = body["messages"]?.arrayValue else { throw Unusable(reason: "request has no messages array") }
        var out: [JSONValue] = []
        if let system = body["system"] {
            guard let text = text(of: system) else { throw Unusable(reason: "system is neither text nor text blocks") }
            if !text.isEmpty { out.append(["role": "system", "content": .string(text)]) }
        }
        for message in list {
            let role = message["role"]?.stringValue
            guard role == "user" || role == "assistant", let content = message["content"] else {
                throw Unusable(reason: "a message has no known role or no content")
            }
            if let text = content.stringValue {
                out.append(["role": .string(role ?? "user"), "content": .string(text)])
                continue
            }
            guard let blocks = content.arrayValue else { throw Unusable(reason: "a message's content is neither text nor blocks") }
            if role == "assistant" {
                out.append(try assistant(blocks))
            } else {
                out += try user(blocks)
            }
        }
        return out
    }

    /// An assistant turn: its text blocks joined, its `tool_use` blocks as tool calls.
    private static func assistant(_ blocks: [JSONValue]) throws(Unusable) -> JSONValue {
        var texts: [String] = []
        var calls: [JSONValue] = []
        for block in blocks {
            switch block["type"]?.stringValue {
            case "text": texts.append(block["text"]?.stringValue ?? "")
            case "tool_use":
                guard let id = block["id"]?.stringValue, let name = block["name"]?.stringValue else {
                    throw Unusable(reason: "a tool_use block lacks its id or name")
                }
                calls.append(["id": .string(id), "type": "function", "function": ["name": .string(name), "arguments": .string((block["input"] ?? [:]).text)]])
            default: throw Unusable(reason: "an assistant block of type \(block["type"]?.stringValue ?? "none") has no chat equivalent")
            }
        }
        let text = texts.joined()
        guard !calls.isEmpty else { return ["role": "assistant", "content": .string(text)] }
        return ["role": "assistant", "content": text.isEmpty ? .null : .string(text), "tool_calls": .array(calls)]
    }

    /// A user turn: each `tool_result` block a `tool` message (in order), the text blocks one
    /// user message after them.
    private static func user(_ blocks: [JSONValue]) throws(Unusable) -> [JSONValue] {
        var out: [JSONValue] = []
        var texts: [String] = []
        for block in blocks {
            switch block["type"]?.stringValue {
            case "text": texts.append(block["text"]?.stringValue ?? "")
            case "tool_result":
                guard let id = block["tool_use_id"]?.stringValue, let content = text(of: block["content"] ?? "") else {
                    throw Unusable(reason: "a tool_result block lacks its tool_use_id or text")
                }
                out.append(["role": "tool", "tool_call_id": .string(id), "content": .string(content)])
            default: throw Unusable(reason: "a user block of type \(block["type"]?.stringValue ?? "none") has no chat equivalent")
            }
        }
        if !texts.isEmpty { out.append(["role": "user", "content": .string(texts.joined(separator: "\n\n"))]) }
        return out
    }

    /// A string, or the text of an array of text blocks joined; nil for anything else.
    private static func text(of value: JSONValue) -> String? {
        if let text = value.stringValue { return text }
        guard let blocks = value.arrayValue else { return nil }
        var texts: [String] = []
        for block in blocks {
            guard block["type"] == "text", let text = block["text"]?.stringValue else { return nil }
            texts.append(text)
        }
        return texts.joined(separator: "\n\n")
    }
}
