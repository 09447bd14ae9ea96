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
        return try h.workflow(
            "ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask",
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
        let workflow = try project(
            h, smallAccepts: ["public", "pii"],
            tool: [
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

    /// Every path that builds a request goes through the one boundary check (issue 23: an
    /// eval judge was sent a secret case). A `secret` input, and for each path an agent
    /// whose first model (`open`) accepts only `public`: the lead's plan, the workers, the
    /// synthesis, input and output guard judges, escalation, a fork that swaps the trusted
    /// model for the open one, and an eval judge. The simulator's counters for the open
    /// models stay at zero; validation and `EvalPlan` refuse what could only cross it.
    @Test func everyPathThatBuildsARequestIsChecked() async throws {
        let h = try RunHarness()
        let open: JSONValue = ["public"], trusted: JSONValue = ["public", "secret"]
        try h.writeConfig([
            "open": ["model": "sim-small", "accepts": open], "trusted": ["model": "sim-large", "accepts": trusted],
            "openplan": ["model": "planner-4", "accepts": open], "trustedplan": ["model": "planner-3", "accepts": trusted],
        ])
        let judgeSchema: JSONValue = ["type": "object", "required": ["allow"], "properties": ["allow": ["const": true]]]
        try h.agent("judge", model: ["open", "trusted"], prompt: "Safe? {{text}}", extra: ["output_schema": judgeSchema, "retries": 0])
        let guards: JSONValue = ["input": [["type": "agent", "agent": "judge"]], "output": [["type": "agent", "agent": "judge"]]]
        try h.agent("worker", model: ["open", "trusted"], prompt: "{{item}}", extra: ["retries": 0, "guards": guards])
        try h.agent(
            "lead", model: ["openplan", "trustedplan"], prompt: "Plan: {{inputs.question}}",
            extra: [
                "output_schema": [
                    "type": "object", "required": ["subtasks"], "properties": ["subtasks": ["type": "array"]],
                ]
            ])
        try h.agent("synth", model: ["open", "trusted"], prompt: "Sum up:{{#findings}} {{.}}{{/findings}}", extra: ["retries": 0])
        let workflow = try h.workflow(
            "research",
            nodes: [
                "research": ["kind": "lead", "lead": "lead", "worker": "worker", "max_rounds": 1],
                "answer": ["kind": "reconcile", "from": "research", "strategy": "agent", "agent": "synth"],
            ], output: "answer", inputs: ["question": ["type": "string", "labels": ["secret"]]])
        let openRequests = { ["sim-small", "planner-4"].reduce(0) { $0 + (h.stats()["models"]?[$1]?["requests"]?.intValue ?? 0) } }

        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let paths = Set(try store.modelCalls(ofRun: summary.runID).map(\.stepPath))
        #expect(paths.contains("research/round-1/plan") || paths.contains { $0.hasPrefix("research") }, "\(paths.sorted())")
        #expect(paths.contains { $0.contains("#guard-input") } && paths.contains { $0.contains("#guard-output") }, "\(paths.sorted())")
        #expect(paths.contains("answer"), "\(paths.sorted())")
        #expect(openRequests() == 0, "no request reached a model outside the boundary: \(h.stats())")

        // A fork whose live part swaps the trusted model for the open one: refused, not sent.
        let fork = try await h.replay(
            summary.runID, workflow: workflow,
            fork: Replayer.Fork(liveFrom: "answer", modelSwaps: ["trusted": "open"], client: h.client))
        #expect(
            fork.summary.status == .failed && fork.summary.error?.contains("data boundary: label 'secret'") == true,
            "\(fork.summary.error ?? "")")
        #expect(openRequests() == 0)

        // Validation refuses a guard judge with no model inside the boundary.
        try h.agent("judge", model: ["open"], prompt: "Safe? {{text}}", extra: ["output_schema": judgeSchema])
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path)
        else { Issue.record("a judge that cannot see the step's data must not validate"); return }
        #expect(failure.description.contains("agent 'judge' has no model that may receive this node's data"), "\(failure)")
        try h.agent("judge", model: ["open", "trusted"], prompt: "Safe? {{text}}", extra: ["output_schema": judgeSchema, "retries": 0])

        // An eval judge reads the case and the output: one that may not see them is refused before any call.
        try h.agent("grader", model: ["open"], prompt: "{{inputs.case.question}} {{inputs.output}}")
        let cases = h.directory.appendingPathComponent("cases.jsonl").path
        try #"{"id": "c1", "inputs": {"question": "the secret plan"}, "expect": {"judge": "grader"}}"#.write(toFile: cases, atomically: true, encoding: .utf8)
        let project = try h.load(workflow)
        let dataset = try EvalCases.load(cases, workflow: project.workflow).get()
        #expect(throws: EvalError.self) {
            _ = try EvalPlan(project: project, cases: dataset, casesPath: cases, variants: [], parallelCases: 1, maxParallel: 4, reusePlan: false)
        }
        do { _ = try EvalPlan.judges(for: dataset, project: project) } catch {
            #expect(error.description.contains("may not see what it judges") && error.description.contains("label 'secret'"), "\(error)")
        }
        #expect(openRequests() == 0)
        await h.shutdown()
    }
}
