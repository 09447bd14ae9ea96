import ChorusJSON

/// One message of a chat conversation sent to a model.
public struct ChatMessage: Sendable, Hashable {
    /// Who speaks: the instructions, the user, or the model.
    public enum Role: String, Sendable, Hashable { case system, user, assistant }

    /// The speaker.
    public var role: Role
    /// The text.
    public var content: String

    /// A message from `role` saying `content`.
    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// What Chorus asks of one model call, independent of the provider's wire format.
public struct ChatRequest: Sendable, Hashable {
    /// The provider's model id (`gpt-4o-mini`, `qwen2.5:0.5b`, …).
    public var model: String
    /// The conversation, system message first when there is one.
    public var messages: [ChatMessage]
    /// Sampling temperature; nil leaves the provider's default.
    public var temperature: Double?
    /// Upper bound on generated tokens; nil leaves the provider's default.
    public var maxTokens: Int?
    /// A JSON Schema the answer must satisfy; sent as `response_format` where supported.
    public var outputSchema: JSONValue?
    /// The name the schema goes by in the request (OpenAI requires one; it names the tool
    /// in `tool` mode).
    public var outputSchemaName: String
    /// How the schema is sent.
    public var outputMode: StructuredOutputMode
    /// Whether to stream the answer as server-sent events.
    public var stream: Bool

    /// A request for `model` with `messages` and provider defaults for everything else.
    public init(model: String, messages: [ChatMessage], temperature: Double? = nil, maxTokens: Int? = nil,
                outputSchema: JSONValue? = nil, outputSchemaName: String = "output", outputMode: StructuredOutputMode = .jsonSchema,
                stream: Bool = false) {
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
public enum OpenAIChatRequestBody {
    /// The JSON body for `request`, keys sorted so equal requests give equal bytes
    /// (the trace hashes request bodies to match them on replay).
    public static func encode(_ request: ChatRequest) -> [UInt8] {
        var messages = request.messages
        if let schema = request.outputSchema, request.outputMode == .jsonObject || request.outputMode == .prompt {
            SchemaInstruction.append(to: &messages, schema: schema)
        }
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "messages": .array(messages.map { .object(["role": .string($0.role.rawValue), "content": .string($0.content)]) }),
        ]
        if let temperature = request.temperature { body["temperature"] = .number(temperature) }
        // `max_tokens` rather than `max_completion_tokens`: OpenAI still accepts it, and the
        // local servers Chorus also targets (Ollama, llama.cpp, older vLLM) know only it.
        if let maxTokens = request.maxTokens { body["max_tokens"] = .number(Double(maxTokens)) }
        if let schema = request.outputSchema {
            let name = JSONValue.string(sanitizedName(request.outputSchemaName))
            switch request.outputMode {
            case .jsonSchema:
                body["response_format"] = ["type": "json_schema", "json_schema": ["name": name, "schema": schema, "strict": false]]
            case .jsonObject:
                body["response_format"] = ["type": "json_object"]
            case .tool:
                body["tools"] = [["type": "function", "function": ["name": name, "description": .string(SchemaInstruction.toolDescription),
                                                                   "parameters": schema]]]
                body["tool_choice"] = ["type": "function", "function": ["name": name]]
            case .prompt:
                break
            }
        }
        if request.stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        return JSONValue.object(body).serialized()
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
