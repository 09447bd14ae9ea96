import Chorus
import ChorusJSON
import Foundation
import Testing

/// Checks the bodies Chorus sends to OpenAI-compatible endpoints against
/// `CreateChatCompletionRequest` from OpenAI's published OpenAPI spec (the subset in
/// ../shared/conformance; a copy ships in Fixtures for clones without shared/).
@Suite struct OpenAIChatRequestConformanceTests {
    static let spec: JSONValue = {
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared/conformance/openai-chat-subset.json")
        let fixture = here.deletingLastPathComponent().appendingPathComponent("Fixtures/openai-chat-subset.json")
        let path = FileManager.default.fileExists(atPath: shared.path) ? shared : fixture
        return try! JSONValue(parsing: Array(try! Data(contentsOf: path)))
    }()

    static var validator: JSONSchemaValidator {
        JSONSchemaValidator(schema: spec["components"]!["schemas"]!["CreateChatCompletionRequest"]!, root: spec)
    }

    static let requests: [ChatRequest] =
        [
            ChatRequest(model: "gpt-4o-mini", messages: [.init(role: .user, content: "Hello")]),
            ChatRequest(
                model: "qwen2.5:0.5b",
                messages: [
                    .init(role: .system, content: "You are terse."), .init(role: .user, content: "Plan."),
                    .init(role: .assistant, content: "{}"), .init(role: .user, content: "Again"),
                ],
                temperature: 0.2, maxTokens: 256),
            ChatRequest(model: "small", messages: [.init(role: .user, content: "Stream it")], stream: true),
            ChatRequest(
                model: "small", messages: [.init(role: .user, content: "Answer as JSON")],
                outputSchema: ["type": "object", "properties": ["answer": ["type": "string"]], "required": ["answer"]],
                outputSchemaName: "research finding!"),
        ]
        + StructuredOutputMode.allCases.flatMap { mode in
            [false, true].map { ProviderWireTests.request(mode, system: !$0, stream: $0) }
        } + StructuredOutputMode.allCases.map(toolConversation)

    /// A tool round in every output mode: tools offered, an assistant turn with two tool
    /// calls (one with unparsable arguments), their results (one an error).
    static func toolConversation(_ mode: StructuredOutputMode) -> ChatRequest {
        let calls = [
            ToolCall(id: "call_1", name: "wordcount", input: ["text": "a b c"]),
            ToolCall(id: "call_2", name: "clock", input: .string("not json")),
        ]
        return ChatRequest(
            model: "m",
            messages: [
                .init(role: .system, content: "S"), .init(role: .user, content: "Q"),
                .assistant("", toolCalls: calls),
                .toolResult("call_1", content: "3", isError: false),
                .toolResult("call_2", content: "bad input", isError: true),
            ],
            maxTokens: 100, outputSchema: planSchema, outputSchemaName: "lead", outputMode: mode, stream: true,
            tools: [
                ToolDefinition(
                    name: "wordcount", description: "Counts words.",
                    inputSchema: ["type": "object", "properties": ["text": ["type": "string"]]]),
                ToolDefinition(name: "clock", description: "The time.", inputSchema: ["type": "object"]),
            ])
    }

    @Test(arguments: requests)
    func theRequestBodyConformsToTheOpenAISchema(_ request: ChatRequest) throws {
        let body = try JSONValue(parsing: OpenAIChatRequestBody.encode(request))
        let violations = Self.validator.validate(body)
        #expect(violations.isEmpty, "\(violations)")
    }

    @Test func theValidatorRejectsABodyOpenAIWouldReject() throws {
        let bad: JSONValue = ["model": "x", "messages": [["role": "wizard", "content": "hi"]], "temperature": 7]
        #expect(!Self.validator.validate(bad).isEmpty)
        #expect(!Self.validator.validate(["model": "x", "messages": []]).isEmpty)
    }
}
