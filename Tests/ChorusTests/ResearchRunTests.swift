import Chorus
import ChorusJSON
import ChorusTrace
import Testing

/// End to end through loopback HTTP against `chorus sim` (the simulated provider): no mock
/// of the provider, the client, the loop or the database.
@Suite struct ResearchRunTests {
    /// A lead planning `subtasks` items for a worker, collected in order.
    private func researchWorkflow(
        _ h: RunHarness, subtasks: Int, minSuccess: JSONValue = 1, retries: Int = 3,
        maxParallel: Int = 64
    ) throws -> String {
        try h.writeConfig(["planner": ["model": .string("planner-\(subtasks)")], "small": ["model": "sim-small"]])
        try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}} (round {{round}})", extra: ["output_schema": planSchema])
        try h.agent(
            "researcher", model: "small", prompt: "{{inputs.question}} / {{item}}",
            extra: ["output_schema": findingSchema, "retries": .number(Double(retries))])
        return try h.workflow(
            "research",
            nodes: [
                "research": [
                    "kind": "lead", "lead": "lead", "worker": "researcher", "max_rounds": 1,
                    "max_subtasks": .number(Double(subtasks)), "max_parallel": .number(Double(maxParallel)), "min_success": minSuccess,
                ]
            ], output: "research")
    }

    @Test func twoHundredSubtasksReconcileToTwoHundredFindings() async throws {
        let h = try RunHarness()
        let (summary, store) = try await h.run(try researchWorkflow(h, subtasks: 200))
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let findings = try #require(summary.output?.arrayValue)
        #expect(findings.count == 200)
        #expect(findings.allSatisfy { $0["finding"]?.stringValue != nil })
        let provenance = try #require(summary.provenance?.arrayValue)
        #expect(provenance.map { $0["step"]?.stringValue } == (0..<200).map { "research/round-1/\($0)" }, "findings keep step order")
        let steps = try store.steps(ofRun: summary.runID).filter { $0.kind == "item" }
        #expect(steps.count == 200 && steps.allSatisfy { $0.status == .succeeded })
        await h.shutdown()
    }

    @Test func faultInjectionCompletesWithEveryItemAccountedFor() async throws {
        let h = try RunHarness {
            $0.errorRate = 0.10; $0.rateLimitRate = 0.05; $0.malformedRate = 0.02; $0.retryAfterSeconds = 0.01; $0.seed = 3
        }
        let (summary, store) = try await h.run(try researchWorkflow(h, subtasks: 300, minSuccess: 0.9, retries: 4))
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let items = try store.steps(ofRun: summary.runID).filter { $0.kind == "item" }
        #expect(items.count == 300, "every item has a step")
        let succeeded = items.filter { $0.status == .succeeded }.count
        #expect(succeeded + summary.failedItems.count == 300, "succeeded and failed items add up")
        #expect(summary.output?.arrayValue?.count == succeeded)
        let calls = try store.modelCalls(ofRun: summary.runID)
        let stats = h.stats()
        #expect(calls.count == stats["requests"]?.intValue, "every HTTP request is traced")
        #expect(calls.contains { $0.httpStatus == 429 } && calls.contains { $0.httpStatus == 500 })
        #expect(calls.contains { $0.error?.contains("malformed") == true || $0.error?.contains("not JSON") == true })
        #expect(items.contains { $0.attempts > 1 }, "retried items record every attempt")
        await h.shutdown()
    }

    @Test func missingMinSuccessFailsTheRunAndNamesTheFailures() async throws {
        let h = try RunHarness {
            $0.errorRate = 0.5; $0.seed = 11
        }
        let (summary, store) = try await h.run(try researchWorkflow(h, subtasks: 40, minSuccess: 0.9, retries: 0))
        #expect(summary.status == .failed)
        #expect(summary.errorCode == .stepsFailed && summary.json["error_code"] == "steps_failed")
        let error = try #require(summary.error)
        #expect(error.contains("min_success needs 36"), "\(error)")
        #expect(error.contains("research/round-1/"))
        let run = try #require(try store.run(matching: summary.runID))
        #expect(run.status == .failed && run.error == error)
        #expect(try store.steps(ofRun: summary.runID).filter { $0.kind == "item" }.count == 40, "completed steps are all in the trace")
        await h.shutdown()
    }

    @Test func aModelsConcurrencyCapHoldsAcrossNodes() async throws {
        let h = try RunHarness { $0.latencyMs = 20 }
        try h.writeConfig(["planner": ["model": "planner-60"], "small": ["model": "capped", "max_concurrency": 5]])
        try h.agent("lead", model: "planner", prompt: "{{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("worker", model: "small", prompt: "{{item}}")
        let path = try h.workflow(
            "capped",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "a": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": 60],
                "b": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": 60],
                "both": ["kind": "reconcile", "from": ["a", "b"], "strategy": "collect"],
            ], output: "both")
        let (summary, _) = try await h.run(path)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(h.stats()["models"]?["capped"]?["peak_in_flight"]?.intValue == 5, "one limiter per model, shared by both fan-outs")
        #expect(h.stats()["models"]?["capped"]?["requests"]?.intValue == 120)
        await h.shutdown()
    }

    @Test func theTraceHoldsEveryCallWithTokensAndCost() async throws {
        let h = try RunHarness()
        let (summary, store) = try await h.run(try researchWorkflow(h, subtasks: 12))
        let calls = try store.modelCalls(ofRun: summary.runID)
        #expect(calls.count == 13)
        #expect(calls.allSatisfy { $0.tokensIn > 0 && $0.tokensOut > 0 && $0.cost > 0 && $0.httpStatus == 200 })
        #expect(calls.map(\.tokensIn).reduce(0, +) == summary.tokensIn)
        let run = try #require(try store.run(matching: summary.runID))
        #expect(abs(run.cost - calls.map(\.cost).reduce(0, +)) < 1e-9)
        for call in calls.prefix(3) {
            let request = try #require(try store.blob(call.requestHash))
            #expect(TraceStore.hash(request) == call.requestHash, "bodies are content-addressed")
            #expect(try store.blob(call.responseHash!) != nil)
        }
        #expect(try store.integrityCheck() == "ok")
        await h.shutdown()
    }

    @Test func aSmallModelsInvalidAnswerEscalatesToTheLargeModel() async throws {
        let h = try RunHarness()
        // The simulator's `prose-` models ignore format instructions: the answer fails the
        // output schema, as a small model's might.
        try h.writeConfig(["small": ["model": "prose-tiny"], "large": ["model": "big"]])
        try h.agent("checker", model: ["small", "large"], prompt: "{{inputs.question}}", extra: ["output_schema": findingSchema, "retries": 1])
        let path = try h.workflow("escalate", nodes: ["check": ["kind": "agent", "agent": "checker"]], output: "check")
        let (summary, store) = try await h.run(path)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let step = try #require(try store.steps(ofRun: summary.runID).first { $0.path == "check" })
        #expect(step.model == "large")
        #expect(step.attempts == 3, "two tries on the small model, one on the large")
        #expect(try store.events(ofRun: summary.runID).contains { $0.kind == "escalated" })
        await h.shutdown()
    }

    /// Failed items are reported, never silently dropped: a fan-out whose min_success
    /// tolerates failures upstream of a reconcile still lists each one, with why.
    @Test func toleratedFailuresUpstreamOfTheOutputAreListedWithTheirReasons() async throws {
        let h = try RunHarness {
            $0.errorRate = 0.3; $0.seed = 3
        }
        try h.writeConfig(["planner": ["model": "planner-10"], "small": ["model": "sim-small"]])
        try h.agent("lead", model: "planner", prompt: "{{inputs.question}}", extra: ["output_schema": planSchema, "retries": 8])
        try h.agent("worker", model: "small", prompt: "{{item}}", extra: ["retries": 0])
        try h.agent("synth", model: "small", prompt: "{{#findings}}- {{.}}\n{{/findings}}", extra: ["retries": 8])
        let workflow = try h.workflow(
            "tolerant",
            nodes: [
                "research": ["kind": "lead", "lead": "lead", "worker": "worker", "max_rounds": 1, "max_parallel": 1, "min_success": 0.1],
                "answer": ["kind": "reconcile", "from": "research", "strategy": "agent", "agent": "synth"],
            ], output: "answer")
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let failedSteps = try store.steps(ofRun: summary.runID).filter { $0.status == .failed }.map(\.path).sorted()
        #expect(!failedSteps.isEmpty && summary.failedItems.map(\.step).sorted() == failedSteps, "\(summary.failedItems)")
        #expect(
            summary.failedItems.allSatisfy { $0.step.hasPrefix("research/round-1/") && $0.reason.hasPrefix("small: HTTP 500: simulated server error") },
            "\(summary.failedItems)")
        #expect(summary.json["failed_items"]?.arrayValue?.count == failedSteps.count)
        await h.shutdown()
    }
}
