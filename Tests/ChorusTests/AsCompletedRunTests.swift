import Chorus
import ChorusJSON
import ChorusSim
import ChorusTrace
import Testing

/// A lead with `"schedule": "as_completed"` end to end against `chorus sim` (loopback HTTP,
/// a real SQLite trace): it re-plans while workers still run, and its replay reproduces the
/// run byte for byte whatever order the workers arrived in.
@Suite struct AsCompletedRunTests {
    private func leadWorkflow(
        _ h: RunHarness, perPlan: Int = 4, rounds: Int = 4, subtasks: Int = 16, parallel: Int = 6,
        extra: [String: JSONValue] = ["replan_after": 2]
    ) throws -> String {
        try h.writeConfig(["planner": ["model": .string("planner-\(perPlan)")], "small": ["model": "sim-small"]])
        try h.agent(
            "lead", model: "planner", prompt: "Plan: {{inputs.question}} (call {{round}}); known: {{{findings_json}}}",
            extra: ["output_schema": planSchema])
        try h.agent("researcher", model: "small", prompt: "{{inputs.question}} / {{item}}", extra: ["output_schema": findingSchema])
        var node: [String: JSONValue] = [
            "kind": "lead", "lead": "lead", "worker": "researcher", "schedule": "as_completed",
            "max_rounds": .number(Double(rounds)), "max_subtasks": .number(Double(subtasks)), "max_parallel": .number(Double(parallel)),
        ]
        node.merge(extra) { $1 }
        return try h.workflow("research", nodes: ["research": .object(node)], output: "research")
    }

    /// (round, index) of `research/round-R/I`.
    static func place(_ path: String) -> [Int] {
        path.split(separator: "/").dropFirst().map { Int($0.replacingOccurrences(of: "round-", with: "")) ?? 0 }
    }

    private func views(_ steps: [StepRecord]) -> [[String]] {
        steps.filter { $0.kind == "plan" }.sorted { $0.path < $1.path }.map { step in
            (try? JSONValue(parsing: step.provenanceJSON ?? "{}"))?["saw"]?.arrayValue?.compactMap(\.stringValue) ?? ["?"]
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func itReplansAsFindingsArriveAndItsReplayReproducesItWithNoCall(seed: UInt64) async throws {
        let h = try RunHarness {
            $0.latencyMs = 5; $0.jitterMs = 60; $0.seed = seed
        }
        let workflow = try leadWorkflow(h)
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let steps = try store.steps(ofRun: summary.runID)
        let plans = steps.filter { $0.kind == "plan" }
        let workers = steps.filter { $0.kind == "item" }
        #expect(plans.count == 4 && workers.count == 16, "4 lead calls of 4 subtasks")
        // Each lead call saw every finding that had arrived, and at least the two since the one before.
        let seen = views(steps)
        #expect(seen[0].isEmpty)
        for (before, after) in zip(seen, seen.dropFirst()) {
            #expect(Array(after.prefix(before.count)) == before && after.count >= before.count + 2, "\(seen)")
        }
        // Re-planning while workers ran: some lead call started before a worker planned
        // earlier had ended.
        let overlapped = plans.dropFirst().contains { plan in
            workers.contains { $0.startedAt < plan.startedAt && ($0.endedAt ?? 0) > plan.startedAt }
        }
        #expect(overlapped, "a lead call overlapped running workers")
        // Reconciled in step order.
        let order = try #require(summary.provenance?.arrayValue).compactMap { $0["step"]?.stringValue }
        let stepOrder = workers.filter { $0.status == .succeeded }.map(\.path).sorted { a, b in Self.place(a).lexicographicallyPrecedes(Self.place(b)) }
        #expect(order == stepOrder)

        let replay = try await h.replay(summary.runID, workflow: workflow)
        #expect(replay.divergence == nil, "\(replay.divergence?.description ?? "")")
        #expect(replay.reproduced, "the same output, byte for byte")
        #expect(replay.servedCalls == summary.calls, "every call from the trace")
        let replayed = try store.steps(ofRun: replay.summary.runID)
        #expect(views(replayed) == seen, "each replayed lead call saw what the recorded one saw")
        await h.shutdown()
    }

    @Test func aForkFromALeadCallReplansLiveFromWhatThatCallSaw() async throws {
        let h = try RunHarness {
            $0.latencyMs = 5; $0.jitterMs = 40; $0.seed = 9
        }
        let workflow = try leadWorkflow(h)
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let recorded = views(try store.steps(ofRun: summary.runID))
        let fork = try await h.replay(
            summary.runID, workflow: workflow, fork: Replayer.Fork(liveFrom: "research/round-3/plan", modelSwaps: [:], client: h.client))
        #expect(fork.summary.status == .succeeded, "\(fork.summary.error ?? "")")
        let forked = try store.steps(ofRun: fork.summary.runID)
        #expect(Array(views(forked).prefix(3)) == Array(recorded.prefix(3)), "calls 1-2 replayed, call 3 re-planned from what it saw")
        #expect(fork.servedCalls > 0 && fork.servedCalls < fork.summary.calls, "recorded up to the point, live after")
        await h.shutdown()
    }

    @Test func doneWithOnDoneCancelCancelsTheRunningSubtasksAndItsReplayReproducesIt() async throws {
        // Workers on a simulator whose answers take 0-500 ms; the lead on a second one that
        // answers at once, and says done once it has seen 3 findings (`planner-N-until-K`):
        // most of the 12 subtasks are still running then.
        let h = try RunHarness {
            $0.latencyMs = 1; $0.jitterMs = 500; $0.seed = 4
        }
        let fast = try Simulator.start(on: h.simLoop, configuration: SimulatorConfiguration())
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.write(
            "chorus.json",
            [
                "models": [
                    "planner": [
                        "provider": "openai", "base_url": .string("http://127.0.0.1:\(fast.port)/v1"), "model": "planner-12-until-3", "max_tokens": 100_000,
                    ],
                    "small": ["provider": "openai", "base_url": .string(h.baseURL), "model": "sim-small"],
                ]
            ])
        try h.agent(
            "lead", model: "planner", prompt: "Plan: {{inputs.question}} (call {{round}}); known: {{{findings_json}}}", extra: ["output_schema": planSchema])
        try h.agent("researcher", model: "small", prompt: "{{inputs.question}} / {{item}}", extra: ["output_schema": findingSchema])
        let workflow = try h.workflow(
            "research",
            nodes: [
                "research": [
                    "kind": "lead", "lead": "lead", "worker": "researcher", "schedule": "as_completed", "on_done": "cancel",
                    "replan_after": 3, "max_rounds": 4, "max_subtasks": 24, "max_parallel": 12, "min_success": 1,
                ]
            ], output: "research")
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let steps = try store.steps(ofRun: summary.runID)
        #expect(steps.filter { $0.kind == "plan" }.count == 2, "planned, then done")
        let items = steps.filter { $0.kind == "item" }
        #expect(items.count == 12, "the second plan's subtasks were dropped, never started")
        let cancelled = items.filter { $0.status == .cancelled }
        #expect(!cancelled.isEmpty, "the subtasks still running were cancelled, recorded as cancelled")
        #expect(!steps.contains { $0.status == .failed })
        #expect(summary.output?.arrayValue?.count == items.count - cancelled.count)
        let replay = try await h.replay(summary.runID, workflow: workflow)
        #expect(replay.reproduced && replay.divergence == nil, "\(replay.divergence?.description ?? "")")
        let replayed = try store.steps(ofRun: replay.summary.runID).filter { $0.kind == "item" }
        #expect(replayed.filter { $0.status == .cancelled }.map(\.path).sorted() == cancelled.map(\.path).sorted())
        fast.stop()
        await h.shutdown()
    }

    @Test func aPlanLongerThanWhatIsLeftRunsUpToTheLimitAndSaysSo() async throws {
        let h = try RunHarness()
        try h.writeConfig(["planner": ["model": "planner-10"], "small": ["model": "sim-small"]])
        // A schema that does not describe `subtasks` is sent with no maxItems to keep to.
        try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": ["type": "object", "required": ["subtasks"]]])
        try h.agent("researcher", model: "small", prompt: "{{item}}", extra: ["output_schema": findingSchema])
        for schedule in ["rounds", "as_completed"] {
            let workflow = try h.workflow(
                "research-\(schedule)",
                nodes: [
                    "research": ["kind": "lead", "lead": "lead", "worker": "researcher", "schedule": .string(schedule), "max_rounds": 1, "max_subtasks": 4]
                ], output: "research")
            let (summary, store) = try await h.run(workflow)
            #expect(summary.status == .succeeded, "\(schedule): \(summary.error ?? "")")
            #expect(try store.steps(ofRun: summary.runID).filter { $0.kind == "item" }.count == 4, "\(schedule)")
            let truncated = try store.events(ofRun: summary.runID).filter { $0.kind == "plan_truncated" }
            #expect(truncated.count == 1, "\(schedule)")
            #expect(truncated.first?.detailJSON.flatMap { try? JSONValue(parsing: $0) } == ["planned": 10, "kept": 4], "\(schedule)")
        }
        await h.shutdown()
    }
}
