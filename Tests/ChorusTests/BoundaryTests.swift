import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Data boundaries: a labelled input, or a labelled tool's output, never reaches a model
/// that does not accept the label — not even through escalation. The simulator's own
/// per-model counters prove it.
@Suite struct BoundaryTests {
    private func project(_ h: RunHarness, smallAccepts: [String], largeAccepts: [String]? = nil, tool: JSONValue? = nil) throws -> String {
        var small: [String: JSONValue] = ["model": tool == nil ? "sim-small" : "tooluser-small", "accepts": .array(smallAccepts.map { .string($0) })]
        var large: [String: JSONValue] = ["model": tool == nil ? "sim-large" : "tooluser-large"]
        if let largeAccepts { large["accepts"] = .array(largeAccepts.map { .string($0) }) }
        small["price"] = ["input_per_mtok": 0, "output_per_mtok": 0]
        try h.writeConfig(["small": .object(small), "large": .object(large)])
        var extra: [String: JSONValue] = ["retries": 0]
        if let tool {
            try FileManager.default.createDirectory(at: h.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
            try h.write("tools/vault.json", tool)
            extra["tools"] = ["vault"]
        }
        try h.agent("asker", model: ["small", "large"], prompt: tool == nil ? "{{inputs.question}}" : "Look it up.", extra: extra)
        return try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask",
                              inputs: ["question": ["type": "string", "labels": ["pii"]]])
    }

    @Test func aLabelledInputSkipsTheModelThatRefusesItAndGoesToTheOneThatAccepts() async throws {
        let h = try RunHarness()
        let workflow = try project(h, smallAccepts: ["public"])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(h.stats()["models"]?["sim-small"]?["requests"] == nil, "the small model never saw a request")
        #expect((h.stats()["models"]?["sim-large"]?["requests"]?.intValue ?? 0) > 0, "the large one did: \(h.stats())")
        #expect(try store.modelCalls(ofRun: summary.runID).allSatisfy { $0.model == "large" })
        let refused = try store.events(ofRun: summary.runID).filter { $0.kind == "boundary_refused" }
        #expect(refused.count == 1 && refused[0].detailJSON?.contains("input 'question'") == true)
        await h.shutdown()
    }

    @Test func withNoModelInsideTheBoundaryNothingIsSentAndValidationSaysSo() async throws {
        let h = try RunHarness()
        let workflow = try project(h, smallAccepts: ["public"], largeAccepts: ["internal"])
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path)
        else { Issue.record("expected a boundary conflict"); return }
        let text = failure.issues.map(\.description).joined(separator: "\n")
        #expect(text.contains("$.nodes.ask") && text.contains("label 'pii' (from input 'question') may not go to model 'large'"), "\(text)")
        #expect(h.stats()["requests"] == 0)
        await h.shutdown()
    }

    /// A tool whose output is labelled: the conversation it enters carries the label.
    @Test func aLabelledToolsOutputNeverReachesAModelThatRefusesIt() async throws {
        let h = try RunHarness()
        let workflow = try project(h, smallAccepts: ["public", "pii"], tool: [
            "name": "vault", "description": "Secrets.", "labels": ["secret"],
            "input_schema": ["type": "object", "properties": ["text": ["type": "string"]]], "subprocess": ["argv": ["cat"]],
        ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(h.stats()["models"]?["tooluser-small"]?["requests"] == nil)
        #expect((h.stats()["models"]?["tooluser-large"]?["requests"]?.intValue ?? 0) == 2, "a tool round and the answer")
        #expect(try store.toolCalls(ofRun: summary.runID).count == 1)
        #expect(try store.modelCalls(ofRun: summary.runID).allSatisfy { $0.model == "large" })
        await h.shutdown()
    }
}
