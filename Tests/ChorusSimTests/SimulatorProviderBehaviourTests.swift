import ChorusIO
import ChorusJSON
import ChorusSim
import HTTPTypes
import Testing

/// The behaviours of real servers the simulator is taught, each seen on the wire.
@Suite struct SimulatorProviderBehaviourTests {
    private func status(_ sim: SimHarness, _ body: JSONValue, path: String = "/v1/chat/completions") async throws -> (Int, JSONValue) {
        do {
            let response = try await sim.chat(body, path: path)
            return (Int(response.status.code), try JSONValue(parsing: response.body))
        } catch let error as HTTPClientError {
            let response = try #require(error.response)
            return (Int(response.status.code), try JSONValue(parsing: response.body))
        }
    }

    /// The error response to `body` sent with `key`, or nil when it succeeded.
    private func errorResponse(_ sim: SimHarness, _ body: JSONValue, key: String) async -> HTTPClientResponse? {
        let request = HTTPClientRequest(
            method: .post, url: sim.base + "/v1/chat/completions",
            headerFields: [.contentType: "application/json", .authorization: "Bearer \(key)"], body: body.serialized())
        do {
            _ = try await sim.client.execute(request)
            return nil
        } catch {
            return error.response
        }
    }

    private static let schema: JSONValue = ["type": "object", "required": ["a"], "properties": ["a": ["type": "string"]]]

    @Test func answersAreCutAtMaxTokensWithTheProvidersFinishReason() async throws {
        let sim = try SimHarness()
        var request = userMessage("go on", model: "runaway-small")
        request = .object((request.objectValue ?? [:]).merging(["max_tokens": 20]) { $1 })
        let (code, body) = try await status(sim, request)
        #expect(code == 200)
        #expect(body["choices"]?.arrayValue?.first?["finish_reason"] == "length")
        #expect(body["usage"]?["completion_tokens"] == 20)
        var anthropic = request.objectValue ?? [:]
        anthropic["model"] = "sim-large"
        anthropic["max_tokens"] = 2
        let (_, message) = try await status(sim, .object(anthropic), path: "/v1/messages")
        #expect(message["stop_reason"] == "max_tokens")
        await sim.shutdown()
    }

    @Test func aJSONModeOnlyModelRefusesJSONSchemaAndFollowsTheInstructionInJSONMode() async throws {
        let sim = try SimHarness()
        var request = userMessage("q", model: "jsonobj-small").objectValue ?? [:]
        request["response_format"] = ["type": "json_schema", "json_schema": ["name": "x", "schema": Self.schema]]
        #expect(try await status(sim, .object(request)).0 == 500)
        request["response_format"] = ["type": "json_object"]
        request["messages"] = [
            ["role": "system", "content": .string("Answer with one JSON object, and nothing else, that satisfies this JSON Schema:\n" + Self.schema.text)],
            ["role": "user", "content": "q"],
        ]
        let (code, body) = try await status(sim, .object(request))
        #expect(code == 200)
        let content = try #require(body["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        #expect(try JSONValue(parsing: Array(content.utf8))["a"]?.stringValue != nil)
        await sim.shutdown()
    }

    @Test func unauthorizedModelsEchoTheKeyAndUnknownOnesAre404() async throws {
        let sim = try SimHarness()
        let refused = await errorResponse(sim, userMessage("q", model: "unauthorized-x"), key: "sk-echo-me")
        #expect(refused?.status.code == 401)
        let text = String(decoding: refused?.body ?? [], as: UTF8.self)
        #expect(text.contains("Incorrect API key provided: sk-echo-me"))
        #expect(try await status(sim, userMessage("q", model: "unknown-x")).0 == 404)
        await sim.shutdown()
    }

    @Test func anthropicRequestsWithFieldsTheSDKDoesNotKnowAreRefused() async throws {
        let sim = try SimHarness()
        let base: [String: JSONValue] = ["model": "sim-large", "max_tokens": 50, "messages": [["role": "user", "content": "q"]]]
        let (code, body) = try await status(sim, .object(base.merging(["temperature": 0.2]) { $1 }), path: "/v1/messages")
        #expect(code == 400 && body["error"]?["message"] == "temperature: Extra inputs are not permitted")
        let structured = base.merging(["output_config": ["format": ["type": "json_schema", "schema": Self.schema]]]) { $1 }
        let (ok, message) = try await status(sim, .object(structured), path: "/v1/messages")
        #expect(ok == 200)
        let text = try #require(message["content"]?.arrayValue?.first?["text"]?.stringValue)
        #expect(try JSONValue(parsing: Array(text.utf8))["a"] != nil)
        let tool = base.merging(["tools": [["name": "t", "input_schema": Self.schema]], "tool_choice": ["type": "tool", "name": "t"]]) { $1 }
        let (_, called) = try await status(sim, .object(tool), path: "/v1/messages")
        #expect(called["stop_reason"] == "tool_use" && called["content"]?.arrayValue?.first?["input"]?["a"] != nil)
        await sim.shutdown()
    }

    @Test(arguments: RetryAfterStyle.allCases)
    func eachRetryAfterStyleCarriesTheWait(_ style: RetryAfterStyle) async throws {
        let sim = try SimHarness {
            $0.rateLimitRate = 1; $0.retryAfterSeconds = 2; $0.retryAfterStyle = style
        }
        let response = await errorResponse(sim, userMessage("q"), key: "k")
        do {
            let fields = try #require(response?.headerFields)
            let wait = try #require(RetryAfter.parse(fields))
            // An HTTP date says when, not how long: the wait shrinks by however long this
            // (possibly busy) test process took to read it.
            #expect(wait <= .seconds(3) && (style == .date || wait > .milliseconds(1000)), "\(style): \(wait)")
            #expect((fields[HTTPField.Name("llm_provider-retry-after-ms")!] != nil) == (style == .litellm))
            #expect((fields[.retryAfter] != nil) == (style == .standard || style == .date))
        }
        await sim.shutdown()
    }
}
