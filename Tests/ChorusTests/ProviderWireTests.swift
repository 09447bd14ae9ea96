@testable import Chorus
import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes
import Testing

/// What goes over the wire for each provider and structured-output mode, and how answers,
/// streams, errors and retry hints coming back are read. No sockets: pure functions.
@Suite struct ProviderWireTests {
    static let schema: JSONValue = ["type": "object", "required": ["answer"], "properties": ["answer": ["type": "string"]]]

    static func request(_ mode: StructuredOutputMode, system: Bool = true, stream: Bool = false) -> ChatRequest {
        ChatRequest(
            model: "m", messages: (system ? [ChatMessage(role: .system, content: "Be terse.")] : []) + [.init(role: .user, content: "Q")],
            temperature: 0.3, maxTokens: 64, outputSchema: schema, outputSchemaName: "my agent", outputMode: mode, stream: stream)
    }

    static func json(_ bytes: [UInt8]) -> JSONValue { (try? JSONValue(parsing: bytes)) ?? .null }

    @Test func openAIJSONObjectModePutsTheSchemaInTheSystemPromptAndAsksForJSONMode() {
        let body = Self.json(OpenAIChatRequestBody.encode(Self.request(.jsonObject)))
        #expect(body["response_format"] == ["type": "json_object"])
        let system = body["messages"]?.arrayValue?.first?["content"]?.stringValue ?? ""
        #expect(system.hasPrefix("Be terse.\n\n") && system.contains("JSON Schema:\n" + Self.schema.text))
        let alone = Self.json(OpenAIChatRequestBody.encode(Self.request(.jsonObject, system: false)))
        #expect(alone["messages"]?.arrayValue?.first?["role"] == "system", "a system message is added when the agent has none")
        #expect(alone["messages"]?.arrayValue?.count == 2)
    }

    @Test func openAIToolModeForcesOneFunctionWhoseParametersAreTheSchema() {
        let body = Self.json(OpenAIChatRequestBody.encode(Self.request(.tool)))
        #expect(body["tools"]?.arrayValue?.first?["function"]?["parameters"] == Self.schema)
        #expect(body["tools"]?.arrayValue?.first?["function"]?["name"] == "my_agent")
        #expect(body["tool_choice"] == ["type": "function", "function": ["name": "my_agent"]])
        #expect(body["response_format"] == nil)
        #expect(body["messages"]?.arrayValue?.first?["content"] == "Be terse.", "the schema travels in the tool, not the prompt")
    }

    @Test func anthropicBodiesCarryNoTemperatureAndTheSchemaTheWayTheModeSays() {
        let native = Self.json(AnthropicRequestBody.encode(Self.request(.jsonSchema)))
        #expect(native["temperature"] == nil)
        #expect(native["output_config"] == ["format": ["type": "json_schema", "schema": Self.schema]])
        #expect(native["system"] == "Be terse.")
        let tool = Self.json(AnthropicRequestBody.encode(Self.request(.tool)))
        #expect(tool["tools"]?.arrayValue?.first?["input_schema"] == Self.schema)
        #expect(tool["tool_choice"] == ["type": "tool", "name": "my_agent"])
        let prompt = Self.json(AnthropicRequestBody.encode(Self.request(.prompt)))
        #expect(prompt["output_config"] == nil && prompt["tools"] == nil)
        #expect(prompt["system"]?.stringValue?.contains("JSON Schema:\n") == true)
        let unlimited = ChatRequest(model: "m", messages: [.init(role: .user, content: "Q")])
        #expect(Self.json(AnthropicRequestBody.encode(unlimited))["max_tokens"] == .number(Double(ModelSpec.defaultMaxTokens)))
    }

    @Test func anthropicBaseURLsWorkWithOrWithoutV1() throws {
        for base in ["https://api.anthropic.com", "https://api.anthropic.com/", "https://api.anthropic.com/v1"] {
            let spec = ModelSpec(name: "a", json: ["provider": "anthropic", "base_url": .string(base), "model": "claude"])
            #expect(spec.endpoint == "https://api.anthropic.com/v1/messages", "\(base)")
            #expect(spec.anthropicVersion == ModelSpec.defaultAnthropicVersion)
            #expect(spec.maxTokens == ModelSpec.defaultMaxTokens && spec.stream && spec.structuredOutput == .jsonSchema)
        }
        let openai = ModelSpec(
            name: "o",
            json: [
                "provider": "openai", "base_url": "http://h/v1", "model": "x", "structured_output": "json_object",
                "max_tokens": 99, "stream": false, "idle_timeout_s": 5,
            ])
        #expect(openai.endpoint == "http://h/v1/chat/completions")
        #expect(openai.structuredOutput == .jsonObject && openai.maxTokens == 99 && !openai.stream && openai.idleTimeout == .seconds(5))
        let request = try ModelEndpoint(spec: openai).httpRequest(body: [], timeout: .seconds(9))
        #expect(request.idleTimeout == nil, "only streamed calls have an idle timeout")
    }

    /// Token counts outside 0…100,000,000, fractional or not numbers are a malformed
    /// response (retried like one); absent or null usage counts 0.
    @Test(arguments: ["-5", "1e300", "9223372036854775808", "\"12\"", "1.5", "true"])
    func aTokenCountOutsideTheSaneRangeIsAMalformedResponse(_ count: String) {
        let openai = Array(#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":\#(count),"completion_tokens":3}}"#.utf8)
        let anthropic = Array(#"{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":2,"output_tokens":\#(count)}}"#.utf8)
        for (body, provider, key) in [(openai, ProviderKind.openai, "prompt_tokens"), (anthropic, .anthropic, "output_tokens")] {
            do {
                let answer = try ModelAnswerParser.parse(body, provider: provider)
                Issue.record("\(provider) \(count) was accepted as \(answer.tokensIn)/\(answer.tokensOut)")
            } catch {
                #expect(error.reason.contains("usage.\(key)") && error.reason.contains("expected a whole number"), "\(error)")
            }
        }
    }

    @Test func absentOrNullUsageCountsZeroAndAWholeCountIsKept() throws {
        let none = try ModelAnswerParser.parse(Array(#"{"choices":[{"message":{"content":"hi"}}]}"#.utf8), provider: .openai)
        #expect(none.tokensIn == 0 && none.tokensOut == 0)
        let null = try ModelAnswerParser.parse(
            Array(#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":null,"completion_tokens":7}}"#.utf8), provider: .openai)
        #expect(null.tokensIn == 0 && null.tokensOut == 7)
    }

    @Test func answersReadTheFinishReasonAndForcedToolCalls() throws {
        let cut = try ModelAnswerParser.parse(Array(#"{"choices":[{"message":{"content":"{\"a"},"finish_reason":"length"}]}"#.utf8), provider: .openai)
        #expect(cut.truncated && cut.finishReason == "length")
        let tool = try ModelAnswerParser.parse(
            Array(
                #"""
                {"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"t","arguments":"{\"answer\":\"x\"}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}
                """#.utf8), provider: .openai)
        #expect(tool.text == #"{"answer":"x"}"# && !tool.truncated && tool.tokensIn == 3)
        let anthropic = try ModelAnswerParser.parse(
            Array(
                #"""
                {"content":[{"type":"tool_use","id":"t","name":"t","input":{"answer":"y"}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}
                """#.utf8), provider: .anthropic)
        #expect(try ModelAnswerParser.json(from: anthropic.text) == ["answer": "y"])
        let stopped = try ModelAnswerParser.parse(Array(#"{"content":[{"type":"text","text":"ab"}],"stop_reason":"max_tokens"}"#.utf8), provider: .anthropic)
        #expect(stopped.truncated && stopped.text == "ab")
    }

    static func events(_ text: String) -> [ServerSentEvent] {
        var parser = ServerSentEventParser()
        return parser.feed(Array(text.utf8))
    }

    @Test func anOpenAIStreamAssemblesToTheNonStreamedBody() throws {
        var assembler = StreamAssembler(provider: .openai)
        var steps: [StreamAssembler.Step] = []
        for event in Self.events(
            """
            data: {"id":"c1","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

            data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}

            data: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}

            data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}

            data: [DONE]


            """)
        { steps.append(assembler.consume(event)) }
        #expect(steps == [.progress, .content, .content, .progress, .done])
        let answer = try ModelAnswerParser.parse(try #require(assembler.assembled()), provider: .openai)
        #expect(answer == ModelAnswer(text: "Hello", tokensIn: 7, tokensOut: 2, finishReason: "length", content: "Hello"))
    }

    @Test func streamedToolCallsAssembleForBothProviders() throws {
        var openai = StreamAssembler(provider: .openai)
        for event in Self.events(
            """
            data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"t","arguments":""}}]},"finish_reason":null}]}

            data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"answer\\":"}}]},"finish_reason":null}]}

            data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"z\\"}"}}]},"finish_reason":"tool_calls"}]}

            data: [DONE]


            """)
        { _ = openai.consume(event) }
        #expect(try ModelAnswerParser.parse(try #require(openai.assembled()), provider: .openai).text == #"{"answer":"z"}"#)

        var anthropic = StreamAssembler(provider: .anthropic)
        var last = StreamAssembler.Step.progress
        for event in Self.events(
            """
            event: message_start
            data: {"type":"message_start","message":{"id":"msg","model":"claude","usage":{"input_tokens":9,"output_tokens":0}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"tu","name":"t","input":{}}}

            event: ping
            data: {"type":"ping"}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"answer\\": \\"w"}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\\"}"}}

            event: message_delta
            data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":6}}

            event: message_stop
            data: {"type":"message_stop"}


            """)
        { last = anthropic.consume(event) }
        #expect(last == .done)
        let answer = try ModelAnswerParser.parse(try #require(anthropic.assembled()), provider: .anthropic)
        #expect(answer.text == #"{"answer":"w"}"# && answer.tokensIn == 9 && answer.tokensOut == 6 && answer.finishReason == "tool_use")
    }

    /// One token per event, as real providers stream, read by the scanner in chunks cut at
    /// every byte: the same body every time, with escapes, surrogate pairs, an escaped key
    /// and fields the assembler does not know.
    @Test func aStreamCutAnywhereAssemblesTheSameBody() throws {
        let stream = Array(
            #"""
            data: {"id":"c9","object":"chat.completion.chunk","created":7,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

            data: {"id":"c9","choices":[{"index":0,"delta":{"content":"\"Caf\u00e9"},"logprobs":{"content":[{"token":"x","bytes":[1,2]}]},"finish_reason":null}]}

            data: {"id":"c9","choices":[{"index":0,"delta":{"cont\u0065nt":" \ud83d\ude00\n"},"finish_reason":null}]}

            data: {"id":"c9","choices":[{"index":0,"delta":{"content":"ok\\"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}

            data: [DONE]


            """#.utf8)
        func assemble(cutAt cuts: [Int]) -> [UInt8]? {
            var scanner = ServerSentEventScanner()
            var assembler = StreamAssembler(provider: .openai)
            var from = 0
            for to in cuts + [stream.count] {
                _ = stream[from..<to].withUnsafeBytes { bytes in
                    scanner.feed(bytes) { event in assembler.consume(type: event.type, data: event.data) != .done }
                }
                from = to
            }
            return assembler.assembled()
        }
        let whole = try #require(assemble(cutAt: []))
        let answer = try ModelAnswerParser.parse(whole, provider: .openai)
        #expect(answer.text == "\"Café 😀\nok\\" && answer.tokensIn == 3 && answer.tokensOut == 4 && answer.finishReason == "stop")
        for cut in 1..<stream.count { #expect(assemble(cutAt: [cut]) == whole, "cut at \(cut)") }
        #expect(assemble(cutAt: Array(1..<stream.count)) == whole, "one byte at a time")
    }

    @Test func aStreamThatStopsEarlyOrReportsAnErrorIsNoAnswer() {
        var cut = StreamAssembler(provider: .openai)
        for event in Self.events("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n") { _ = cut.consume(event) }
        #expect(cut.assembled() == nil)
        var overloaded = StreamAssembler(provider: .anthropic)
        #expect(
            Self.events("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
                .map { overloaded.consume($0) } == [.error("Overloaded")])
        var garbage = StreamAssembler(provider: .openai)
        if case .malformed = Self.events("data: {\"id\":\n\n").map({ garbage.consume($0) }).first {} else { Issue.record("expected malformed") }
    }

    @Test func providerErrorsAreClassifiedByWhatCanFixThem() {
        #expect(ProviderFailure.kind(status: 401, message: nil) == .configuration)
        #expect(ProviderFailure.kind(status: 404, message: "The model `x` does not exist") == .configuration)
        #expect(ProviderFailure.kind(status: 400, message: "Invalid model name passed in model=gpt-9") == .configuration)
        #expect(ProviderFailure.kind(status: 400, message: "This model's maximum context length is 2048 tokens") == .rejected)
        #expect(ProviderFailure.kind(status: 429, message: nil) == .transient)
        #expect(ProviderFailure.kind(status: 529, message: nil) == .transient)
        let failure = ProviderFailure.status(
            401, body: Array(#"{"error":{"message":"Incorrect API key provided: [redacted].\nSee docs.","type":"x"}}"#.utf8),
            retryAfter: nil)
        #expect(failure.detail == "HTTP 401: Incorrect API key provided: [redacted]. See docs.")
        #expect(ProviderMessage.extract(Array(#"{"detail":"Not Found"}"#.utf8)) == "Not Found")
        #expect(ProviderMessage.extract(Array("upstream connect error".utf8)) == "upstream connect error")
        #expect(ProviderMessage.extract(Array(String(repeating: "x", count: 900).utf8))?.count == 301)
    }

    @Test func theKeyIsRedactedWhereverItIsEchoed() {
        let redactor = SecretRedactor("sk-test-5ecret")!
        #expect(redactor.redact("bad key sk-test-5ecret; again sk-test-5ecret.") == "bad key [redacted]; again [redacted].")
        #expect(redactor.redact(Array("nothing here".utf8)) == Array("nothing here".utf8))
        #expect(SecretRedactor("") == nil && SecretRedactor(nil) == nil)
    }

    @Test func retryHintsAreReadInEveryFormServersSend() {
        func fields(_ pairs: [(String, String)]) -> HTTPFields {
            var fields = HTTPFields()
            for (name, value) in pairs { fields[HTTPField.Name(name)!] = value }
            return fields
        }
        #expect(RetryAfter.parse(fields([("Retry-After", "2")])) == .seconds(2))
        #expect(RetryAfter.parse(fields([("retry-after-ms", "1500"), ("Retry-After", "2")])) == .milliseconds(1500))
        #expect(RetryAfter.parse(fields([("llm_provider-retry-after-ms", "1500")])) == .milliseconds(1500))
        #expect(RetryAfter.parse(fields([("llm_provider-retry-after", "0.25")])) == .milliseconds(250))
        #expect(RetryAfter.parse(fields([("Retry-After", "Sun, 06 Nov 1994 08:49:40 GMT")]), now: 784_111_777) == .seconds(3))
        #expect(RetryAfter.parse(fields([("Retry-After", "Sun, 06 Nov 1994 08:49:40 GMT")]), now: 784_111_999) == .zero)
        #expect(RetryAfter.parse(fields([("Retry-After", "soon")])) == nil)
        #expect(RetryAfter.parse(fields([("Retry-After", "-1")])) == nil)
        #expect(RetryAfter.parse(fields([("Retry-After", "1e300")])) == .seconds(86_400))
    }

    @Test func theLeadsSchemaCapsSubtasksAtWhatIsLeft() {
        let capped = LeadLoop.capping(planSchema, subtasks: 7)
        #expect(capped["properties"]?["subtasks"]?["maxItems"] == 7)
        #expect(LeadLoop.capping(capped, subtasks: 9)["properties"]?["subtasks"]?["maxItems"] == 7, "a smaller maxItems stays")
        #expect(LeadLoop.capping(["type": "object"], subtasks: 3) == ["type": "object"])
    }

    @Test func deadlinesAreWrittenAsShortDurations() {
        #expect(Duration(shortText: "90s") == .seconds(90) && Duration(shortText: "1h30m") == .seconds(5400))
        #expect(Duration(shortText: "250ms") == .milliseconds(250) && Duration(shortText: "2") == .seconds(2))
        for bad in ["", "soon", "5d", "-1s", "0", "1e30", "nan"] { #expect(Duration(shortText: bad) == nil, "\(bad)") }
        #expect(Duration.seconds(120).shortText == "2m" && Duration.milliseconds(1500).shortText == "1500ms")
    }
}
