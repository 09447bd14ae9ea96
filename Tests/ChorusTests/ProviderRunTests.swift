import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Provider behaviours end to end: the real scheduler, HTTP client and SQLite trace against
/// `chorus sim` on loopback, taught each behaviour real servers show (JSON-mode-only
/// servers, answers cut at max_tokens, 401s that echo the key, LiteLLM's retry headers,
/// stalled streams, Anthropic's current fields).
@Suite struct ProviderRunTests {
    /// One agent node on `model`; returns the workflow path.
    private func single(_ h: RunHarness, model: String, settings: [String: JSONValue] = [:], agent extra: [String: JSONValue] = [:]) throws -> String {
        var spec = settings
        spec["model"] = .string(model)
        try h.writeConfig(["m": .object(spec)])
        try h.agent("a", model: "m", prompt: "{{inputs.question}}", extra: extra)
        return try h.workflow("one", nodes: ["a": ["kind": "agent", "agent": "a"]], output: "a")
    }

    private func bodies(_ store: TraceStore, _ calls: [ModelCallRecord]) throws -> [JSONValue] {
        let blobs = try store.blobs(Set(calls.map(\.requestHash)))
        return calls.map { (try? JSONValue(parsing: blobs[$0.requestHash] ?? [])) ?? .null }
    }

    @Test func aJSONModeOnlyServerWorksThroughJSONObject() async throws {
        let h = try RunHarness()
        let refused = try single(h, model: "jsonobj-small", agent: ["output_schema": findingSchema, "retries": 1])
        let (failed, _) = try await h.run(refused)
        #expect(failed.status == .failed)
        #expect(failed.error?.contains("HTTP 500: response_format type 'json_schema' is not supported") == true, "\(failed.error ?? "")")
        let workflow = try single(h, model: "jsonobj-small", settings: ["structured_output": "json_object"], agent: ["output_schema": findingSchema])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.output?["finding"]?.stringValue != nil && summary.output?["confidence"]?.numberValue != nil)
        let body = try #require(try bodies(store, store.modelCalls(ofRun: summary.runID)).first)
        #expect(body["response_format"] == ["type": "json_object"])
        #expect(body["max_tokens"] == 1024, "every request carries a limit")
        await h.shutdown()
    }

    @Test func anAnswerCutAtMaxTokensIsReportedAsTruncated() async throws {
        let h = try RunHarness()
        let schemaAgent = try single(h, model: "runaway-small", agent: ["output_schema": findingSchema, "retries": 1, "max_tokens": 40])
        let (failed, store) = try await h.run(schemaAgent)
        #expect(failed.status == .failed)
        #expect(failed.error?.contains("answer truncated at max_tokens (40") == true, "\(failed.error ?? "")")
        let calls = try store.modelCalls(ofRun: failed.runID)
        #expect(calls.count == 2 && calls.allSatisfy { $0.finishReason == "length" && $0.truncated && $0.tokensOut == 40 })
        #expect(calls.allSatisfy { $0.firstTokenMs != nil }, "streamed by default")

        let textAgent = try single(h, model: "runaway-small", agent: ["max_tokens": 40])
        let (cut, _) = try await h.run(textAgent)
        #expect(cut.status == .succeeded, "a text agent keeps its cut answer")
        #expect(try store.modelCalls(ofRun: cut.runID).first?.finishReason == "length")
        #expect(try store.events(ofRun: cut.runID).contains { $0.kind == "answer_truncated" && $0.stepPath == "a" })
        await h.shutdown()
    }

    @Test func aConfigurationErrorStopsTheRunWithOneLineQuotingTheProvider() async throws {
        let h = try RunHarness { $0.latencyMs = 20 }
        // The key variable must exist in this process: PATH stands in for a key, so the
        // test needs no setenv (which races with subprocess spawns in other tests).
        let key = try #require(ProcessInfo.processInfo.environment["PATH"])
        try h.writeConfig([
            "planner": ["model": "planner-40"], "small": ["model": "unauthorized-small", "api_key_env": "PATH"],
            "large": ["model": "sim-large"],
        ])
        try h.agent("lead", model: "planner", prompt: "{{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("researcher", model: ["small", "large"], prompt: "{{item}}", extra: ["output_schema": findingSchema])
        let workflow = try h.workflow(
            "research",
            nodes: [
                "research": ["kind": "lead", "lead": "lead", "worker": "researcher", "max_subtasks": 40, "max_parallel": 8]
            ], output: "research")
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .failed)
        let error = try #require(summary.error)
        #expect(error.hasPrefix("model 'small' (unauthorized-small at http://127.0.0.1:"), "\(error)")
        #expect(error.contains("HTTP 401: Incorrect API key provided: [redacted]."), "\(error)")
        #expect(!error.contains(key))
        #expect(h.stats()["models"]?["sim-large"] == nil, "no step escalated to the large model")
        #expect((h.stats()["models"]?["unauthorized-small"]?["requests"]?.intValue ?? 99) <= 8, "no call started after the circuit opened")
        let calls = try store.modelCalls(ofRun: summary.runID)
        #expect(calls.count <= 9, "the plan and at most the 8 calls in flight when the circuit opened: \(calls.count)")
        let responses = try store.blobs(Set(calls.compactMap(\.responseHash)))
        #expect(
            !responses.isEmpty && responses.values.allSatisfy { !String(decoding: $0, as: UTF8.self).contains(key) },
            "the echoed key never reaches the trace")
        #expect(try store.events(ofRun: summary.runID).filter { $0.kind == "circuit_opened" }.count == 1)

        // The replay of this failed run reproduces the failure, and says so.
        let report = try await h.replay(summary.runID, workflow: workflow)
        #expect(
            report.reproduced && report.summary.status == .failed && report.summary.error == error,
            "\(report.summary.error ?? "")")
        await h.shutdown()
    }

    @Test func litellmsRetryAfterHeadersAreHonoured() async throws {
        let h = try RunHarness {
            $0.rateLimitRate = 1; $0.retryAfterSeconds = 1.5; $0.retryAfterStyle = .litellm
        }
        let workflow = try single(h, model: "sim-small", agent: ["retries": 1])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("HTTP 429: simulated rate limit") == true, "\(summary.error ?? "")")
        let calls = try store.modelCalls(ofRun: summary.runID).sorted { $0.attempt < $1.attempt }
        #expect(calls.count == 2)
        let gap = calls[1].startedAt - calls[0].startedAt
        #expect(gap >= 1.5, "waited \(gap) s; llm_provider-retry-after-ms asked for 1.5 s")
        await h.shutdown()
    }

    @Test func aStalledStreamEndsAtTheIdleTimeoutNotTheTotalOne() async throws {
        let h = try RunHarness { $0.hangRate = 1 }
        let workflow = try single(h, model: "sim-small", settings: ["idle_timeout_s": 1], agent: ["retries": 0, "timeout_s": 60])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.error?.contains("no byte received for the idle timeout") == true, "\(summary.error ?? "")")
        let calls = try store.modelCalls(ofRun: summary.runID)
        #expect(calls.count == 1)
        #expect((calls.first?.latencyMs ?? .infinity) < 50_000, "ended by the 1 s idle timeout, not the 60 s total one")
        await h.shutdown()
    }

    @Test(arguments: ["json_schema", "tool", "prompt"])
    func anthropicModesGiveValidatedAnswers(_ mode: String) async throws {
        let h = try RunHarness()
        let workflow = try single(
            h, model: "sim-large", settings: ["provider": "anthropic", "structured_output": .string(mode)],
            agent: ["output_schema": findingSchema, "temperature": 0.5, "retries": 0])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.modelCalls(ofRun: summary.runID).first)
        #expect(call.finishReason == (mode == "tool" ? "tool_use" : "end_turn"))
        #expect(call.firstTokenMs != nil && call.tokensIn > 0)
        let body = try #require(try bodies(store, [call]).first)
        #expect(body["temperature"] == nil, "the current Messages API takes no temperature")
        #expect(body["stream"] == true)
        // The stored response is the assembled non-streamed message.
        let responseHash = try #require(call.responseHash)
        let response = try JSONValue(parsing: try #require(try store.blobs([responseHash]).values.first))
        #expect(response["type"] == "message")
        await h.shutdown()
    }

    @Test func openAIToolModeAndNonStreamedCallsWork() async throws {
        let h = try RunHarness()
        let workflow = try single(
            h, model: "sim-small", settings: ["structured_output": "tool", "stream": false],
            agent: ["output_schema": findingSchema, "retries": 0])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.modelCalls(ofRun: summary.runID).first)
        #expect(call.firstTokenMs == nil && call.finishReason == "stop")
        #expect(try bodies(store, [call]).first?["tool_choice"]?["function"]?["name"] == "a")
        await h.shutdown()
    }

    @Test func aServerThatIgnoresStreamingIsReadAsAWholeAnswer() async throws {
        let h = try RunHarness()
        let workflow = try single(h, model: "nostream-small", agent: ["output_schema": findingSchema, "retries": 0])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.modelCalls(ofRun: summary.runID).first)
        #expect(try bodies(store, [call]).first?["stream"] == true)
        #expect(call.firstTokenMs == nil && call.finishReason == "stop")
        await h.shutdown()
    }
}
