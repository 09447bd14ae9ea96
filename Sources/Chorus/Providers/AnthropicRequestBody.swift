import ChorusJSON

/// Builds request bodies for Anthropic's Messages API (`POST …/messages`).
public enum AnthropicRequestBody {
    /// Anthropic requires `max_tokens`; this is sent when the agent sets none.
    public static let defaultMaxTokens = 1024

    /// The JSON body for `request`, keys sorted. The system message goes in `system`;
    /// an output schema becomes an instruction there (the API has no response_format).
    public static func encode(_ request: ChatRequest) -> [UInt8] {
        var system = request.messages.filter { $0.role == .system }.map(\.content).joined(separator: "\n\n")
        if let schema = request.outputSchema {
            system += (system.isEmpty ? "" : "\n\n") + SchemaInstruction.text(for: schema)
        }
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "max_tokens": .number(Double(request.maxTokens ?? defaultMaxTokens)),
            "messages": .array(request.messages.filter { $0.role != .system }
                .map { .object(["role": .string($0.role.rawValue), "content": .string($0.content)]) }),
        ]
        if !system.isEmpty { body["system"] = .string(system) }
        if let temperature = request.temperature { body["temperature"] = .number(temperature) }
        if request.stream { body["stream"] = true }
        return JSONValue.object(body).serialized()
    }
}

/// The instruction that asks a model without structured output for schema-shaped JSON.
enum SchemaInstruction {
    static func text(for schema: JSONValue) -> String {
        "Answer with one JSON object, and nothing else, that satisfies this JSON Schema:\n" + schema.text
    }
}
