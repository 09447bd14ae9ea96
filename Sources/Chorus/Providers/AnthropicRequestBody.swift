import ChorusJSON

/// Builds request bodies for Anthropic's Messages API (`POST …/v1/messages`), with only
/// the parameters the current official SDK's `MessageCreateParams` accepts: no
/// `temperature` (current models take no sampling parameters, and the SDK's types reject it).
package enum AnthropicRequestBody {
    /// The JSON body for `request`, keys sorted. The system message goes in `system`; an
    /// output schema goes as `output_config.format` (structured outputs), a forced tool, or
    /// an instruction in `system`, per `request.outputMode`.
    package static func encode(_ request: ChatRequest) -> [UInt8] {
        var messages = request.messages
        if let schema = request.outputSchema, request.outputMode == .jsonObject || request.outputMode == .prompt {
            SchemaInstruction.append(to: &messages, schema: schema)
        }
        let system = messages.filter { $0.role == .system }.map(\.content).joined(separator: "\n\n")
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "max_tokens": .number(Double(request.maxTokens ?? ModelSpec.defaultMaxTokens)),
            "messages": .array(conversation(messages.filter { $0.role != .system })),
        ]
        if !system.isEmpty { body["system"] = .string(system) }
        var tools: [JSONValue] = request.tools.map {
            ["name": .string($0.name), "description": .string($0.description), "input_schema": $0.inputSchema]
        }
        if let schema = request.outputSchema {
            switch request.outputMode {
            case .jsonSchema:
                body["output_config"] = ["format": ["type": "json_schema", "schema": schema]]
            case .tool:
                let name = JSONValue.string(OpenAIChatRequestBody.sanitizedName(request.outputSchemaName))
                tools.append(["name": name, "description": .string(SchemaInstruction.toolDescription), "input_schema": schema])
                // With real tools too, the model must call one of them or the answer tool.
                body["tool_choice"] = request.tools.isEmpty ? ["type": "tool", "name": name] : ["type": "any"]
            case .jsonObject, .prompt:
                break
            }
        }
        if !tools.isEmpty { body["tools"] = .array(tools) }
        if request.stream { body["stream"] = true }
        return JSONValue.object(body).serialized()
    }
}

extension AnthropicRequestBody {
    /// Messages in Anthropic's shape: an assistant turn's tool calls are `tool_use` blocks,
    /// and the results that follow go back together as `tool_result` blocks of one user turn.
    static func conversation(_ messages: [ChatMessage]) -> [JSONValue] {
        var out: [JSONValue] = []
        var results: [JSONValue] = []
        func flushResults() {
            if !results.isEmpty { out.append(["role": "user", "content": .array(results)]) }
            results = []
        }
        for message in messages {
            switch message.role {
            case .tool:
                var block: [String: JSONValue] = [
                    "type": "tool_result", "tool_use_id": .string(message.toolCallID ?? ""),
                    "content": .string(message.content),
                ]
                if message.isError { block["is_error"] = true }
                results.append(.object(block))
            case .assistant where !message.toolCalls.isEmpty:
                flushResults()
                var blocks: [JSONValue] = message.content.isEmpty ? [] : [["type": "text", "text": .string(message.content)]]
                blocks += message.toolCalls.map {
                    [
                        "type": "tool_use", "id": .string($0.id), "name": .string($0.name),
                        "input": $0.input.objectValue != nil ? $0.input : [:],
                    ]
                }
                out.append(["role": "assistant", "content": .array(blocks)])
            default:
                flushResults()
                out.append(["role": .string(message.role.rawValue), "content": .string(message.content)])
            }
        }
        flushResults()
        return out
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
