import ChorusIO
import ChorusJSON
import ChorusSim
import HTTPTypes
import Testing

/// A simulator and a client on separate loops, as a real provider and Chorus would be.
final class SimHarness: Sendable {
    let serverLoop: EventLoop
    let clientLoop: EventLoop
    let simulator: Simulator
    let client: HTTPClient

    init(_ configure: (inout SimulatorConfiguration) -> Void = { _ in }) throws {
        serverLoop = try EventLoop(name: "sim")
        clientLoop = try EventLoop(name: "client")
        var configuration = SimulatorConfiguration()
        configure(&configuration)
        simulator = try Simulator.start(on: serverLoop, configuration: configuration)
        client = try HTTPClient.make(on: clientLoop, configuration: .init(maxConnectionsPerHost: 256))
    }

    var base: String { "http://127.0.0.1:\(simulator.port)" }

    func chat(_ body: JSONValue, path: String = "/v1/chat/completions", timeout: Duration = .seconds(30)) async throws -> HTTPClientResponse {
        try await client.execute(
            .init(
                method: .post, url: base + path, headerFields: [.contentType: "application/json"],
                body: body.serialized(), timeout: timeout))
    }

    func stats() -> JSONValue { simulator.statsJSON() }

    /// Shuts the loops down if a test threw before calling `shutdown()`: a loop thread left
    /// running keeps the test process alive after the last test.
    deinit {
        clientLoop.shutdown()
        serverLoop.shutdown()
    }

    func shutdown() async {
        await client.shutdown()
        simulator.stop()
        clientLoop.shutdown()
        serverLoop.shutdown()
    }
}

func userMessage(_ text: String, model: String = "small") -> JSONValue {
    ["model": .string(model), "messages": [["role": "user", "content": .string(text)]]]
}

@Suite struct SimulatorTests {
    @Test func openAIChatCompletionsAnswerWithContentAndUsage() async throws {
        let sim = try SimHarness()
        let response = try await sim.chat(userMessage("Why is the sky blue?"))
        let body = try JSONValue(parsing: response.body)
        #expect(body["object"] == "chat.completion")
        let content = try #require(body["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        #expect(content.contains("Why is the sky blue?"))
        let usage = try #require(body["usage"])
        #expect((usage["prompt_tokens"]?.intValue ?? 0) > 0)
        #expect(usage["total_tokens"]?.intValue == (usage["prompt_tokens"]?.intValue ?? 0) + (usage["completion_tokens"]?.intValue ?? 0))
        await sim.shutdown()
    }

    @Test func answersAreDeterministicPerRequestAndSeed() async throws {
        let a = try SimHarness { $0.seed = 1 }
        let b = try SimHarness { $0.seed = 2 }
        func content(_ sim: SimHarness, _ text: String) async throws -> JSONValue? {
            try JSONValue(parsing: try await sim.chat(userMessage(text)).body)["choices"]?.arrayValue?.first?["message"]?["content"]
        }
        let first = try await content(a, "same question")
        #expect(try await content(a, "same question") == first)
        #expect(try await content(a, "another question") != first)
        #expect(try await content(b, "same question") != first)
        await a.shutdown()
        await b.shutdown()
    }

    @Test(arguments: [0, 1, 40, 200])
    func plannerNAnswersWithNSubtasks(_ count: Int) async throws {
        let sim = try SimHarness()
        let response = try await sim.chat(userMessage("Research orchestration runtimes", model: "planner-\(count)"))
        let content = try #require(try JSONValue(parsing: response.body)["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        let subtasks = try #require(try JSONValue(parsing: content)["subtasks"]?.arrayValue)
        #expect(subtasks.count == count)
        #expect(Set(subtasks).count == count, "subtasks should differ")
        await sim.shutdown()
    }

    @Test func aJSONSchemaResponseFormatGetsAConformingObject() async throws {
        let sim = try SimHarness()
        let schema: JSONValue = [
            "type": "object", "required": ["claim", "score", "tags"],
            "properties": [
                "claim": ["type": "string"], "score": ["type": "integer", "minimum": 1, "maximum": 5],
                "tags": ["type": "array", "items": ["type": "string"], "minItems": 2],
                "verdict": ["enum": ["true", "false"]],
            ],
        ]
        var request = userMessage("Check this claim")
        if case .object(var members) = request {
            members["response_format"] = ["type": "json_schema", "json_schema": ["name": "check", "schema": schema]]
            request = .object(members)
        }
        let body = try JSONValue(parsing: try await sim.chat(request).body)
        let content = try #require(body["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        #expect(JSONSchemaValidator(schema: schema).validate(try JSONValue(parsing: content)).isEmpty)
        await sim.shutdown()
    }

    /// Sizes a request's schema asks for are bounded: the simulator answers at once (a
    /// shorter answer than asked, which Chorus's validation refuses) and keeps answering.
    @Test(
        arguments: [
            ["type": "object", "properties": ["x": ["type": "string", "minLength": 4_294_967_296]]],
            ["type": "array", "minItems": 1e12, "items": ["type": "array", "minItems": 1e12, "items": ["type": "string"]]],
            ["type": "object", "properties": ["n": ["type": "integer", "minimum": 1e300, "maximum": -1e300], "m": ["type": "number", "minimum": -1e308]]],
        ] as [JSONValue])
    func aHostileSchemaGetsABoundedAnswerAndTheSimulatorStaysUp(_ schema: JSONValue) async throws {
        let sim = try SimHarness()
        var request = userMessage("Check this claim")
        if case .object(var members) = request {
            members["response_format"] = ["type": "json_schema", "json_schema": ["name": "check", "schema": schema]]
            request = .object(members)
        }
        let response = try await sim.chat(request)
        #expect(response.body.count < 10_000_000, "bounded: \(response.body.count) bytes")
        let again = try await sim.chat(userMessage("still there?"))
        #expect(again.status == 200)
        await sim.shutdown()
    }

    @Test func openAIStreamingEndsWithDoneAndCarriesUsage() async throws {
        let sim = try SimHarness()
        var request = userMessage("stream please")
        if case .object(var members) = request { members["stream"] = true; request = .object(members) }
        let response = try await sim.client.stream(.init(method: .post, url: sim.base + "/v1/chat/completions", body: request.serialized()))
        #expect(response.headerFields[.contentType] == "text/event-stream")
        var text = ""
        var sawUsage = false
        var last = ""
        for try await event in response.events {
            last = event.data
            if event.data == "[DONE]" { continue }
            let chunk = try JSONValue(parsing: event.data)
            text += chunk["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue ?? ""
            if chunk["usage"]?["completion_tokens"]?.intValue != nil { sawUsage = true }
        }
        #expect(last == "[DONE]")
        #expect(sawUsage)
        let whole = try JSONValue(parsing: try await sim.chat(userMessage("stream please")).body)
        #expect(whole["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == text, "streamed and whole answers agree")
        await sim.shutdown()
    }

    @Test func anAnthropicSchemaInstructionIsFollowedAndAProseModelIgnoresIt() async throws {
        let sim = try SimHarness()
        let schema: JSONValue = ["type": "object", "required": ["finding"], "properties": ["finding": ["type": "string"]]]
        func ask(_ model: String) async throws -> String {
            let request: JSONValue = [
                "model": .string(model), "max_tokens": 64,
                "system": .string("Be brief.\n\nAnswer with one JSON object, and nothing else, that satisfies this JSON Schema:\n" + schema.text),
                "messages": [["role": "user", "content": "Why?"]],
            ]
            let body = try JSONValue(parsing: try await sim.chat(request, path: "/v1/messages").body)
            return body["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        }
        #expect(JSONSchemaValidator(schema: schema).validate(try JSONValue(parsing: try await ask("claude-large"))).isEmpty)
        #expect((try? JSONValue(parsing: try await ask("prose-small"))) == nil, "a prose- model answers in prose")
        await sim.shutdown()
    }

    @Test func anthropicMessagesAnswerAsJSONAndAsEvents() async throws {
        let sim = try SimHarness()
        let request: JSONValue = [
            "model": "claude-small", "max_tokens": 64, "system": "Be brief.",
            "messages": [["role": "user", "content": [["type": "text", "text": "Hello"]]]],
        ]
        let body = try JSONValue(parsing: try await sim.chat(request, path: "/v1/messages").body)
        #expect(body["type"] == "message")
        let text = try #require(body["content"]?.arrayValue?.first?["text"]?.stringValue)
        #expect(body["usage"]?["output_tokens"]?.intValue ?? 0 > 0)

        var streaming = request
        if case .object(var members) = streaming { members["stream"] = true; streaming = .object(members) }
        let response = try await sim.client.stream(.init(method: .post, url: sim.base + "/v1/messages", body: streaming.serialized()))
        var names: [String] = []
        var streamed = ""
        for try await event in response.events {
            names.append(event.event)
            let data = try JSONValue(parsing: event.data)
            streamed += data["delta"]?["text"]?.stringValue ?? ""
        }
        #expect(names.first == "message_start")
        #expect(names.last == "message_stop")
        #expect(names.contains("content_block_delta"))
        #expect(streamed == text)
        await sim.shutdown()
    }

    @Test func malformedRequestsGetA400NamingTheProblem() async throws {
        let sim = try SimHarness()
        let cases: [(JSONValue?, String, String)] = [
            (nil, "/v1/chat/completions", "not valid JSON"),
            (["messages": [["role": "user", "content": "x"]]], "/v1/chat/completions", "missing field 'model'"),
            (["model": "m", "messages": []], "/v1/chat/completions", "$.messages"),
            (["model": "m", "messages": [["role": "user", "content": "x"]]], "/v1/messages", "missing field 'max_tokens'"),
        ]
        for (body, path, expected) in cases {
            let bytes = body?.serialized() ?? Array("{\"model\":".utf8)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await sim.client.execute(.init(method: .post, url: sim.base + path, body: bytes))
            }
            #expect(error?.response?.status == .badRequest)
            let message = (try? JSONValue(parsing: error?.response?.body ?? []))?["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains(expected), "\(message)")
        }
        let notFound = await #expect(throws: HTTPClientError.self) { _ = try await sim.client.execute(.init(url: sim.base + "/v2/nothing")) }
        #expect(notFound?.response?.status == .notFound)
        await sim.shutdown()
    }

    @Test func latencyDelaysEveryAnswer() async throws {
        let sim = try SimHarness { $0.latencyMs = 40 }
        let start = ContinuousClock.now
        _ = try await sim.chat(userMessage("slow"))
        #expect(ContinuousClock.now - start >= .milliseconds(40))
        await sim.shutdown()
    }
}
