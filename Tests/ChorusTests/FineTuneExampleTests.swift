import Chorus
import ChorusJSON
import Testing

/// A recorded call as a chat fine-tuning example: OpenAI bodies kept, Anthropic bodies
/// converted, the forced answer tool turned into the answer's JSON, damaged bodies refused.
@Suite struct FineTuneExampleTests {
    private let schema: JSONValue = ["type": "object", "required": ["answer"], "properties": ["answer": ["type": "string"]]]
    private let probe = ToolDefinition(
        name: "probe", description: "Looks into it.", inputSchema: ["type": "object", "properties": ["query": ["type": "string"]]])

    /// The conversation of a tool-using step at its last call: the question, the model's tool
    /// call, the tool's result.
    private func conversation() -> [ChatMessage] {
        [
            ChatMessage(role: .system, content: "Be brief."), ChatMessage(role: .user, content: "Why?"),
            .assistant("Checking.", toolCalls: [ToolCall(id: "toolu_1", name: "probe", input: ["query": "why"])]),
            .toolResult("toolu_1", content: "because", isError: false),
        ]
    }

    @Test func anAnthropicCallIsConvertedToChatMessagesWithItsToolCallsAndTools() throws {
        let request = ChatRequest(model: "m", messages: conversation(), maxTokens: 100, tools: [probe])
        let response: JSONValue = [
            "type": "message", "role": "assistant", "content": [["type": "text", "text": "Because."]], "stop_reason": "end_turn",
            "usage": ["input_tokens": 10, "output_tokens": 2],
        ]
        let example = try FineTuneExample(request: AnthropicRequestBody.encode(request), response: response.serialized(), provider: .anthropic)
        #expect(
            example.messages == [
                ["role": "system", "content": "Be brief."], ["role": "user", "content": "Why?"],
                [
                    "role": "assistant", "content": "Checking.",
                    "tool_calls": [["id": "toolu_1", "type": "function", "function": ["name": "probe", "arguments": #"{"query":"why"}"#]]],
                ],
                ["role": "tool", "tool_call_id": "toolu_1", "content": "because"], ["role": "assistant", "content": "Because."],
            ])
        #expect(
            example.tools == [
                [
                    "type": "function",
                    "function": ["name": "probe", "description": "Looks into it.", "parameters": probe.inputSchema],
                ]
            ])
        #expect(example.json["tools"] != nil && example.json["messages"]?.arrayValue?.count == 5)
    }

    /// Structured output through a forced tool: the answer is the JSON the tool call carried,
    /// and the answer tool, Chorus's way of asking for structure, is no tool of the example.
    @Test func aForcedAnswerToolBecomesTheAnswersJSONAndLeavesTheTools() throws {
        for provider in [ProviderKind.openai, .anthropic] {
            let request = ChatRequest(
                model: "m", messages: [ChatMessage(role: .user, content: "Q")], maxTokens: 100, outputSchema: schema, outputSchemaName: "solver",
                outputMode: .tool, tools: [probe])
            let body = provider == .openai ? OpenAIChatRequestBody.encode(request) : AnthropicRequestBody.encode(request)
            let response: JSONValue =
                provider == .openai
                ? [
                    "choices": [
                        [
                            "finish_reason": "tool_calls",
                            "message": [
                                "role": "assistant", "content": .null,
                                "tool_calls": [["id": "c1", "type": "function", "function": ["name": "solver", "arguments": #"{"answer":"42"}"#]]],
                            ],
                        ]
                    ]
                ]
                : ["content": [["type": "tool_use", "id": "t1", "name": "solver", "input": ["answer": "42"]]], "stop_reason": "tool_use"]
            let example = try FineTuneExample(request: body, response: response.serialized(), provider: provider)
            #expect(example.messages.last == ["role": "assistant", "content": #"{"answer":"42"}"#], "\(provider)")
            #expect(example.tools.map { $0["function"]?["name"] } == ["probe"], "\(provider)")
        }
    }

    /// An OpenAI body is already chat messages: kept as sent (the schema instruction a
    /// json_object request adds to the system message included: the model saw it).
    @Test func anOpenAICallKeepsItsMessages() throws {
        let request = ChatRequest(model: "m", messages: conversation(), outputSchema: schema, outputMode: .jsonObject)
        let body = OpenAIChatRequestBody.encode(request)
        let response: JSONValue = ["choices": [["message": ["role": "assistant", "content": #"{"answer":"x"}"#], "finish_reason": "stop"]]]
        let example = try FineTuneExample(request: body, response: response.serialized(), provider: .openai)
        let sent = try #require(try JSONValue(parsing: body)["messages"]?.arrayValue)
        #expect(Array(example.messages.dropLast()) == sent)
        #expect(example.messages.first?["content"]?.stringValue?.contains("Answer with one JSON object") == true)
        #expect(example.messages.last == ["role": "assistant", "content": #"{"answer":"x"}"#])
        #expect(example.tools.isEmpty && example.json["tools"] == nil)
        #expect(example.requestKey == JSONValue.object(["messages": .array(sent), "tools": []]).text)
    }

    /// A body that is not its provider's shape gives no example, with a reason, never a crash
    /// or a guess.
    @Test(arguments: [
        ("not json", #"{"choices":[{"message":{"content":"a"}}]}"#),
        (#"{"messages":[{"role":"bot","content":"q"}]}"#, #"{"choices":[{"message":{"content":"a"}}]}"#),
        (#"{"messages":[{"role":"user","content":7}]}"#, #"{"choices":[{"message":{"content":"a"}}]}"#),
        (#"{"messages":[]}"#, #"{"choices":[{"message":{"content":"a"}}]}"#),
        (#"{"messages":[{"role":"user","content":"q"}]}"#, "<html>"),
        (#"{"messages":[{"role":"user","content":"q"}]}"#, #"{"choices":[]}"#),
        (#"{"messages":[{"role":"tool","content":"r"}]}"#, #"{"choices":[{"message":{"content":"a"}}]}"#),
        (#"[1,2]"#, #"{"choices":[{"message":{"content":"a"}}]}"#),
    ])
    func aDamagedBodyIsRefusedWithAReason(request: String, response: String) {
        #expect(throws: FineTuneExample.Unusable.self) {
            try FineTuneExample(request: Array(request.utf8), response: Array(response.utf8), provider: .openai)
        }
    }

    @Test(arguments: [
        #"{"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#,
        #"{"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"x"}]}]}"#,
        #"{"system":5,"messages":[{"role":"user","content":"q"}]}"#,
        #"{"messages":[{"role":"user","content":[{"type":"tool_result","content":"r"}]}]}"#,
    ])
    func aDamagedAnthropicBodyIsRefused(request: String) {
        let response = #"{"content":[{"type":"text","text":"a"}],"stop_reason":"end_turn"}"#
        #expect(throws: FineTuneExample.Unusable.self) {
            try FineTuneExample(request: Array(request.utf8), response: Array(response.utf8), provider: .anthropic)
        }
    }
}
