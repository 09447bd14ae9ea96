import ChorusJSON

/// Builds request bodies for Anthropic's Messages API (`POST …/v1/messages`), with only
/// the parameters the current official SDK's `MessageCreateParams` accepts: no
/// `temperature` (current models take no sampling parameters, and the SDK's types reject it).
public enum AnthropicRequestBody {
    /// The JSON body for `request`, keys sorted. The system message goes in `system`; an
    /// output schema goes as `output_config.format` (structured outputs), a forced tool, or
    /// an instruction in `system`, per `request.outputMode`.
    public static func encode(_ request: ChatRequest) -> [UInt8] {
        var messages = request.messages
        if let schema = request.outputSchema, request.outputMode == .jsonObject || request.outputMode == .prompt {
            SchemaInstruction.append(to: &messages, schema: schema)
        }
        let system = messages.filter { $0.role == .system }.map(\.content).joined(separator: "\n\n")
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "max_tokens": .number(Double(request.maxTokens ?? ModelSpec.defaultMaxTokens)),
            "messages": .array(messages.filter { $0.role != .system }
                .map { .object(["role": .string($0.role.rawValue), "content": .string($0.content)]) }),
        ]
        if !system.isEmpty { body["system"] = .string(system) }
        if let schema = request.outputSchema {
            switch request.outputMode {
            case .jsonSchema:
                body["output_config"] = ["format": ["type": "json_schema", "schema": schema]]
            case .tool:
                let name = JSONValue.string(OpenAIChatRequestBody.sanitizedName(request.outputSchemaName))
                body["tools"] = [["name": name, "description": .string(SchemaInstruction.toolDescription), "input_schema": schema]]
                body["tool_choice"] = ["type": "tool", "name": name]
            case .jsonObject, .prompt:
                break
            }
        }
        if request.stream { body["stream"] = true }
        return JSONValue.object(body).serialized()
    }
}

/// The instruction that asks a model without native structured output for schema-shaped JSON.
enum SchemaInstruction {
    static func text(for schema: JSONValue) -> String {
        "Answer with one JSON object, and nothing else, that satisfies this JSON Schema:\n" + schema.text
    }

    /// The description of the one tool a `tool`-mode request forces the model to call.
    static let toolDescription = "Give your answer by calling this tool; its input is the answer."

    /// Adds the instruction to the system message, or adds a system message holding it.
    static func append(to messages: inout [ChatMessage], schema: JSONValue) {
        let instruction = text(for: schema)
        if let index = messages.firstIndex(where: { $0.role == .system }) {
            messages[index].content += "\n\n" + instruction
        } else {
            messages.insert(ChatMessage(role: .system, content: instruction), at: 0)
        }
    }
}
