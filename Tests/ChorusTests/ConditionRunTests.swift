import Chorus
import ChorusJSON
import ChorusTrace
import Testing

/// `when` end to end against `chorus sim`: a false condition skips the node, what depends
/// only on skipped nodes is skipped too, a reconcile over branches takes those that ran,
/// and nothing skipped is ever a failure; a replay takes the same branches with no call.
@Suite struct ConditionRunTests {
    private func workflow(_ h: RunHarness) throws -> String {
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("specialist", model: "small", prompt: "{{inputs.question}} for {{inputs.tier}}")
        try h.agent("follow", model: "small", prompt: "Follow up: {{premium}}")
        let gold: JSONValue = ["path": "inputs.tier", "equals": "gold"]
        return try h.workflow(
            "tiers",
            nodes: [
                "premium": ["kind": "agent", "agent": "specialist", "when": gold],
                "basic": ["kind": "agent", "agent": "specialist", "when": ["not": gold]],
                "premium_follow_up": ["kind": "agent", "agent": "follow"],
                "answer": ["kind": "reconcile", "from": ["premium_follow_up", "basic"], "strategy": "collect"],
            ], output: "answer", inputs: ["question": ["type": "string"], "tier": ["type": "string"]])
    }

    @Test(arguments: ["silver", "gold"])
    func aFalseConditionSkipsItsBranchAndTheRunStillSucceeds(tier: String) async throws {
        let h = try RunHarness()
        let path = try workflow(h)
        let (summary, store) = try await h.run(path, inputs: ["question": "Which plan?", "tier": .string(tier)])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.failedItems.isEmpty, "a skipped node is never a failure")
        let steps = try store.steps(ofRun: summary.runID).filter { !$0.isNodeResult }
        let status = Dictionary(uniqueKeysWithValues: steps.map { ($0.path, $0.status) })
        let skipped: Set<String> = tier == "gold" ? ["basic"] : ["premium", "premium_follow_up"]
        #expect(Set(status.filter { $0.value == .skipped }.keys) == skipped)
        #expect(!status.values.contains(.failed))
        let why = try #require(steps.first { $0.path == skipped.sorted().first })
        let reason = try JSONValue(parsing: why.provenanceJSON ?? "{}")["skipped"]?.stringValue ?? ""
        #expect(reason.contains("inputs.tier") || reason.contains("every node it depends on was skipped"), "\(reason)")
        #expect(try store.events(ofRun: summary.runID).filter { $0.kind == "node_skipped" }.count == skipped.count)
        #expect(summary.output?.arrayValue?.count == 1, "the reconcile took the branch that ran")
        #expect(summary.calls == (tier == "gold" ? 2 : 1))

        let replay = try await h.replay(summary.runID, workflow: path)
        #expect(replay.reproduced && replay.divergence == nil && replay.servedCalls == summary.calls)
        await h.shutdown()
    }

    @Test func aConditionOnAnUnknownNodeOrAMalformedOneIsRefusedWithOneLine() throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("specialist", model: "small", prompt: "{{inputs.question}}")
        let unknown = try h.workflow(
            "unknown", nodes: ["a": ["kind": "agent", "agent": "specialist", "when": ["path": "ghost.value", "gte": 1]]], output: "a")
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: unknown, config: h.directory.appendingPathComponent("chorus.json").path)
        else {
            Issue.record("accepted")
            return
        }
        #expect(failure.issues.map(\.description).contains { $0.contains("$.nodes.a.when: no node named 'ghost'") }, "\(failure.issues)")
        let malformed = try h.workflow(
            "malformed", nodes: ["a": ["kind": "agent", "agent": "specialist", "when": ["path": "inputs.question", "gte": "x"]]], output: "a")
        guard case .failure(let bad) = SpecLoader.loadProject(workflow: malformed, config: h.directory.appendingPathComponent("chorus.json").path)
        else {
            Issue.record("accepted")
            return
        }
        #expect(bad.issues.map(\.description).contains { $0.contains("$.nodes.a.when.gte: expected a number, found string") }, "\(bad.issues)")
    }
}
