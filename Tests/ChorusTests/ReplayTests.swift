import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Replay serves every call from the trace: these tests stop the simulator before replaying.
@Suite struct ReplayTests {
    private func researchProject(_ h: RunHarness, subtasks: Int) throws -> String {
        try h.writeConfig(["planner": ["model": .string("planner-\(subtasks)")], "small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent(
            "researcher", model: ["small", "large"], prompt: "{{inputs.question}} / {{item}}",
            extra: ["output_schema": findingSchema, "retries": 4])
        try h.agent("synth", model: "large", prompt: "{{#findings}}- {{.}}\n{{/findings}}")
        return try h.workflow(
            "research",
            nodes: [
                "research": ["kind": "lead", "lead": "lead", "worker": "researcher", "max_subtasks": .number(Double(subtasks)), "min_success": 0.9],
                "answer": ["kind": "reconcile", "from": "research", "strategy": "agent", "agent": "synth"],
            ], output: "answer")
    }

    @Test func aForkFromTheLastNodeRunsOnlyThatNodeLive() async throws {
        let h = try RunHarness()
        let workflow = try researchProject(h, subtasks: 40)
        let (original, _) = try await h.run(workflow)
        let before = h.stats()["requests"]?.intValue ?? 0
        let report = try await h.replay(
            original.runID, workflow: workflow,
            fork: .init(liveFrom: "answer", modelSwaps: [:], client: h.client))
        #expect(report.summary.status == .succeeded)
        #expect((h.stats()["requests"]?.intValue ?? 0) - before == 1, "only the synthesis ran live")
        #expect(report.servedCalls == original.calls - 1)
        #expect(report.reproduced, "same models, same deterministic simulator: same output")
        await h.shutdown()
    }

    @Test func aForkFromARoundReusesThePlanAndRunsTheWorkersOnTheSwappedModel() async throws {
        let h = try RunHarness()
        let workflow = try researchProject(h, subtasks: 30)
        let (original, _) = try await h.run(workflow)
        let before = h.stats()["requests"]?.intValue ?? 0
        let report = try await h.replay(
            original.runID, workflow: workflow,
            fork: .init(liveFrom: "research/round-1", modelSwaps: ["small": "large"], client: h.client))
        #expect(report.summary.status == .succeeded, "\(report.summary.error ?? "")")
        #expect(report.divergence == nil)
        #expect((h.stats()["requests"]?.intValue ?? 0) - before == 31, "30 workers and the synthesis, not the plan")
        #expect(report.servedCalls == 1)
        let store = try TraceStore(path: h.dbPath)
        let calls = try store.modelCalls(ofRun: report.summary.runID)
        #expect(calls.first { $0.stepPath == "research/round-1/plan" }?.url == "replay:\(original.runID)")
        let workers = calls.filter { $0.stepPath.hasPrefix("research/round-1/") && !$0.stepPath.hasSuffix("plan") }
        #expect(workers.count == 30 && workers.allSatisfy { $0.model == "large" && $0.cost > 0 })
        #expect(try store.run(matching: report.summary.runID)?.relation == .fork)
        await h.shutdown()
    }

    @Test func aForkPointThatIsNotInTheWorkflowIsRefused() async throws {
        let h = try RunHarness()
        let workflow = try researchProject(h, subtasks: 3)
        let (original, _) = try await h.run(workflow)
        for point in ["nowhere", "research/round-x", "answer/7/8/9"] {
            await #expect(throws: ReplayError.self) {
                _ = try await h.replay(original.runID, workflow: workflow, fork: .init(liveFrom: point, modelSwaps: [:], client: h.client))
            }
        }
        await #expect(throws: ReplayError.self) {
            _ = try await h.replay(
                original.runID, workflow: workflow,
                fork: .init(liveFrom: "answer", modelSwaps: ["small": "huge"], client: h.client))
        }
        await h.shutdown()
    }

    @Test func aReplayMakesNoConnectionAndReproducesTheOutput() async throws {
        let h = try RunHarness {
            $0.errorRate = 0.05; $0.rateLimitRate = 0.05; $0.malformedRate = 0.02; $0.retryAfterSeconds = 0.01; $0.seed = 5
        }
        let workflow = try researchProject(h, subtasks: 500)
        let (original, _) = try await h.run(workflow)
        #expect(original.status == .succeeded, "\(original.error ?? "")")
        let requestsBefore = h.stats()["requests"]?.intValue
        h.simulator.stop()  // nothing listens any more: a replay that touched the network would fail
        let report = try await h.replay(original.runID, workflow: workflow)
        #expect(report.divergence == nil, "\(report.divergence.map(\.description) ?? "")")
        #expect(report.reproduced)
        #expect(report.summary.output == original.output)
        #expect(h.stats()["requests"]?.intValue == requestsBefore, "zero model calls")
        let store = try TraceStore(path: h.dbPath)
        let replayRun = try #require(try store.run(matching: report.summary.runID))
        #expect(replayRun.parentRunID == original.runID)
        #expect(try store.modelCalls(ofRun: replayRun.id).allSatisfy { $0.url == "replay:\(original.runID)" && $0.cost == 0 })
        #expect(try store.modelCalls(ofRun: replayRun.id).count == original.calls, "retries are replayed too")
        await h.shutdown()
    }

    @Test func aChangedPromptIsCaughtAtItsStepWithADifference() async throws {
        let h = try RunHarness()
        let workflow = try researchProject(h, subtasks: 5)
        let (original, _) = try await h.run(workflow)
        try h.agent("synth", model: "large", prompt: "Summarise:\n{{#findings}}- {{.}}\n{{/findings}}")
        let report = try await h.replay(original.runID, workflow: workflow)
        let divergence = try #require(report.divergence)
        #expect(divergence.step == "answer")
        #expect(divergence.differences.first == "$.messages[0].content:")
        #expect(divergence.differences.contains { $0.contains("+ now:") && $0.contains("Summarise:") })
        #expect(!report.reproduced)
        await h.shutdown()
    }
}
