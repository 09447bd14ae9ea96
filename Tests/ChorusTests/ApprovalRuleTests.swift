@testable import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Approval on escalation and over a cost: the step stops before the call that needs a
/// person; after the decision a resume runs it again and it goes through.
@Suite struct ApprovalRuleTests {
    private func approve(_ runID: String, node: String, store: TraceStore) {
        let writer = TraceWriter(store: store)
        writer.append(
            .event(
                runID: runID, ApprovalDecision(node: node, approved: true, by: "test", note: nil).event(), stepPath: nil,
                at: Date().timeIntervalSince1970))
        writer.close()
    }

    private func resume(_ runID: String, _ h: RunHarness, workflow: String, store: TraceStore) async throws -> RunSummary {
        let writer = TraceWriter(store: store)
        defer { writer.close() }
        return try await Resumer.resume(
            runID, store: store, project: try h.load(workflow), client: h.client, trace: writer,
            loop: h.loop, maxParallel: 8, progress: RunProgress())
    }

    @Test func anEscalationWaitsForApprovalThenGoesToTheLargerModel() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "prose-small"], "large": ["model": "sim-large"]])
        try h.agent("asker", model: ["small", "large"], prompt: "{{inputs.question}}", extra: ["output_schema": findingSchema, "retries": 0])
        let workflow = try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker", "approval": "on_escalation"]], output: "ask")
        let (paused, store) = try await h.run(workflow)
        #expect(paused.status == .awaitingApproval && paused.errorCode == .awaitingApproval, "\(paused.error ?? "")")
        #expect(paused.error?.contains("awaiting approval of ask") == true)
        #expect(h.stats()["models"]?["sim-large"]?["requests"] == nil, "the larger model was not asked")
        #expect(try store.events(ofRun: paused.runID).contains { $0.kind == "escalation_held" })
        approve(paused.runID, node: "ask", store: store)
        let resumed = try await resume(paused.runID, h, workflow: workflow, store: store)
        #expect(resumed.status == .succeeded, "\(resumed.error ?? "")")
        #expect(try store.steps(ofRun: resumed.runID).first { $0.path == "ask" }?.model == "large")
        await h.shutdown()
    }

    @Test func aCallOverTheCostLimitWaitsForApproval() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small", "price": ["input_per_mtok": 100, "output_per_mtok": 100]]])
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: ["max_tokens": 1000])
        // Worst case: (request bytes + 1,000) tokens at 100 µ$ each, over $0.05.
        let workflow = try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker", "approval": ["over_usd": 0.05]]], output: "ask")
        let (paused, store) = try await h.run(workflow)
        #expect(paused.status == .awaitingApproval, "\(paused.error ?? "")")
        #expect(paused.error?.contains("awaiting approval of ask") == true && h.stats()["requests"] == 0)
        let requested = try store.events(ofRun: paused.runID).first { $0.kind == "approval_requested" }
        #expect(requested?.detailJSON?.contains("over $0.050000") == true, "\(requested?.detailJSON ?? "")")
        approve(paused.runID, node: "ask", store: store)
        let resumed = try await resume(paused.runID, h, workflow: workflow, store: store)
        #expect(resumed.status == .succeeded, "\(resumed.error ?? "")")
        #expect(h.stats()["requests"] == 1)
        await h.shutdown()
    }

    @Test func aToolThatRequiresApprovalRunsOnlyAfterIt() async throws {
        let h = try RunHarness()
        let marker = h.directory.appendingPathComponent("ran").path
        try FileManager.default.createDirectory(at: h.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
        try h.write(
            "tools/mark.json",
            [
                "name": "mark", "description": "Marks.", "approval": "always",
                "input_schema": ["type": "object", "properties": ["text": ["type": "string"]]],
                "subprocess": ["argv": ["sh", "-c", "cat > \"$0\"", .string(marker)]],
            ])
        try h.writeConfig(["small": ["model": "tooluser-small"]])
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: ["tools": ["mark"]])
        let workflow = try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
        let (paused, store) = try await h.run(workflow)
        #expect(paused.status == .awaitingApproval, "\(paused.error ?? "")")
        #expect(!FileManager.default.fileExists(atPath: marker), "the tool did not run")
        approve(paused.runID, node: "tool:mark", store: store)
        let resumed = try await resume(paused.runID, h, workflow: workflow, store: store)
        #expect(resumed.status == .succeeded, "\(resumed.error ?? "")")
        #expect(FileManager.default.fileExists(atPath: marker), "approved, it ran")
        await h.shutdown()
    }

    @Test func aModelThatRequiresApprovalIsCalledOnlyAfterIt() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "prose-small"], "large": ["model": "sim-large", "approval": "always"]])
        try h.agent("asker", model: ["small", "large"], prompt: "{{inputs.question}}", extra: ["output_schema": findingSchema, "retries": 0])
        let workflow = try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
        let (paused, store) = try await h.run(workflow)
        #expect(paused.status == .awaitingApproval && paused.error?.contains("model:large") == true, "\(paused.error ?? "")")
        #expect(h.stats()["models"]?["sim-large"]?["requests"] == nil)
        approve(paused.runID, node: "model:large", store: store)
        #expect(try await resume(paused.runID, h, workflow: workflow, store: store).status == .succeeded)
        await h.shutdown()
    }
}
