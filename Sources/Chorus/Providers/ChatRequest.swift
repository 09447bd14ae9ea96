import ChorusJSON

/// A tool call a model asked for: the id it gave the call, the tool, and the input.
package struct ToolCall: Sendable, Hashable {
    /// The provider's id for the call, which its result must quote.
    package var id: String
    package var name: String
    /// The input: a JSON object, or a string when the model sent arguments that are not JSON.
    package var input: JSONValue

    package init(id: String, name: String, input: JSONValue) {
        self.id = id
        self.name = name
        self.input = input
    }
}

/// One message of a chat conversation sent to a model.
package struct ChatMessage: Sendable, Hashable {
    /// Who speaks: the instructions, the user, the model, or a tool's result.
    package enum Role: String, Sendable, Hashable { case system, user, assistant, tool }

    /// The speaker.
    package var role: Role
    /// The text (for a tool result, what the tool returned or the error).
    package var content: String
    /// The tool calls of an assistant turn.
    package var toolCalls: [ToolCall] = []
    /// For a tool result: the call it answers.
    package var toolCallID: String? = nil
    /// For a tool result: whether it reports a failure.
    package var isError = false

    /// A message from `role` saying `content`.
    package init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    /// An assistant turn that asked for `toolCalls` (and perhaps said `content` too).
    package static func assistant(_ content: String, toolCalls: [ToolCall]) -> ChatMessage {
        var message = ChatMessage(role: .assistant, content: content)
        message.toolCalls = toolCalls
        return message
    }

    /// The result of tool call `id`.
    package static func toolResult(_ id: String, content: String, isError: Bool) -> ChatMessage {
        var message = ChatMessage(role: .tool, content: content)
        message.toolCallID = id
        message.isError = isError
        return message
    }
}

/// A tool as a request offers it to the model.
public struct ToolDefinition: Sendable, Hashable {
    /// The tool's name, as the model calls it.
    public var name: String
    /// What the tool does, for the model to decide when to call it.
    public var description: String
    /// JSON Schema of the input.
    public var inputSchema: JSONValue

    /// A definition as a request sends it.
    public init(name: String, description: String, inputSchema: JSONValue) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
    }
}

/// What Chorus asks of one model call, independent of the provider's wire format.
package struct ChatRequest: Sendable, Hashable {
    /// The provider's model id (`gpt-4o-mini`, `qwen2.5:0.5b`, …).
    package var model: String
    /// The conversation, system message first when there is one.
    package var messages: [ChatMessage]
    /// Sampling temperature; nil leaves the provider's default.
    package var temperature: Double?
    /// Upper bound on generated tokens; nil leaves the provider's default.
    package var maxTokens: Int?
    /// A JSON Schema the answer must satisfy; sent as `response_format` where supported.
    package var outputSchema: JSONValue?
    /// The name the schema goes by in the request (OpenAI requires one; it names the tool
    /// in `tool` mode).
    package var outputSchemaName: String
    /// How the schema is sent.
    package var outputMode: StructuredOutputMode
    /// Whether to stream the answer as server-sent events.
    package var stream: Bool
    /// Tools the model may call.
    package var tools: [ToolDefinition] = []

    /// A request for `model` with `messages` and provider defaults for everything else.
    package init(
        model: String, messages: [ChatMessage], temperature: Double? = nil, maxTokens: Int? = nil,
        outputSchema: JSONValue? = nil, outputSchemaName: String = "output", outputMode: StructuredOutputMode = .jsonSchema,
        stream: Bool = false, tools: [ToolDefinition] = []
    ) {
        self.tools = tools
        self.model = model
        self.messages = messages
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.outputSchema = outputSchema
        self.outputSchemaName = outputSchemaName
        self.outputMode = outputMode
        self.stream = stream
    }
}

/// Builds request bodies for OpenAI-compatible chat completions (`POST …/chat/completions`),
/// the shape OpenAI, vLLM, llama.cpp server, Ollama and LM Studio accept.
package enum OpenAIChatRequestBody {
    /// The JSON body for `request`, keys sorted so equal requests give equal bytes
    /// (the trace hashes request bodies to match them on replay).
    package static func encode(_ request: ChatRequest) -> [UInt8] {
        var messages = request.messages
        if let schema = request.outputSchema, request.outputMode == .jsonObject || request.outputMode == .prompt {
            SchemaInstruction.append(to: &messages, schema: schema)
        }
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "messages": .array(messages.map(message)),
        ]
        if let temperature = request.temperature { body["temperature"] = .number(temperature) }
        // `max_tokens` rather than `max_completion_tokens`: OpenAI still accepts it, and the
        // local servers Chorus also targets (Ollama, llama.cpp, older vLLM) know only it.
        if let maxTokens = request.maxTokens { body["max_tokens"] = .number(Double(maxTokens)) }
        var tools: [JSONValue] = request.tools.map {
            ["type": "function", "function": ["name": .string($0.name), "description": .string($0.description), "parameters": $0.inputSchema]]
        }
        if let schema = request.outputSchema {
            let name = JSONValue.string(sanitizedName(request.outputSchemaName))
            switch request.outputMode {
            case .jsonSchema:
                body["response_format"] = ["type": "json_schema", "json_schema": ["name": name, "schema": schema, "strict": false]]
            case .jsonObject:
                body["response_format"] = ["type": "json_object"]
            case .tool:
                tools.append([
                    "type": "function",
                    "function": [
                        "name": name, "description": .string(SchemaInstruction.toolDescription),
                        "parameters": schema,
                    ],
                ])
                // With real tools too, the model must call one of them or the answer tool.
                body["tool_choice"] = request.tools.isEmpty ? ["type": "function", "function": ["name": name]] : "required"
            case .prompt:
                break
            }
        }
        if !tools.isEmpty { body["tools"] = .array(tools) }
        if request.stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        // Room for the messages from the start, with an eighth for escapes: grown by doubling,
        // the body of a synthesiser prompt holding 100,000 findings (23 MB) reached 35 MB.
        var writer = JSONWriter(capacity: messages.reduce(1024) { $0 + $1.content.utf8.count * 9 / 8 })
        writer.value(.object(body))
        return writer.bytes
    }

    /// A message in OpenAI's shape: tool calls on assistant turns, `role: tool` results.
    static func message(_ message: ChatMessage) -> JSONValue {
        switch message.role {
        case .assistant where !message.toolCalls.isEmpty:
            return [
                "role": "assistant", "content": message.content.isEmpty ? .null : .string(message.content),
                "tool_calls": .array(
                    message.toolCalls.map {
                        [
                            "id": .string($0.id), "type": "function",
                            "function": ["name": .string($0.name), "arguments": .string($0.input.stringValue ?? $0.input.text)],
                        ]
                    }),
            ]
        case .tool:
            return ["role": "tool", "tool_call_id": .string(message.toolCallID ?? ""), "content": .string(message.content)]
        default:
            return ["role": .string(message.role.rawValue), "content": .string(message.content)]
        }
    }

    /// OpenAI accepts schema and tool names of `[a-zA-Z0-9_-]{1,64}`; anything else is replaced.
    static func sanitizedName(_ name: String) -> String {
        let allowed = name.unicodeScalars.map { scalar -> Character in
            (scalar.properties.isASCIIHexDigit || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
                || scalar == "_" || scalar == "-") ? Character(scalar) : "_"
        }
        let result = String(allowed.prefix(64))
        return result.isEmpty ? "output" : result
    }
}
