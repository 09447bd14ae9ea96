import Chorus
import ChorusJSON
import ChorusTrace
import Testing

/// Each reconcile strategy inside a real run (foreach over a planner's subtasks).
@Suite struct StrategyRunTests {
    @Test(arguments: ["collect", "concat", "vote", "first_success", "agent"])
    func aForeachReconcilesWithTheStrategy(_ strategy: String) async throws {
        let h = try RunHarness()
        try h.writeConfig(["planner": ["model": "planner-6"], "small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        try h.agent("lead", model: "planner", prompt: "{{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("worker", model: "small", prompt: "{{item}}")
        try h.agent("synth", model: "large", prompt: "{{#findings}}- {{.}}\n{{/findings}}")
        var reconcile: [String: JSONValue] = ["strategy": .string(strategy)]
        if strategy == "agent" { reconcile["agent"] = "synth" }
        let path = try h.workflow(
            "s",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "reconcile": .object(reconcile)],
            ], output: "work")
        let (summary, store) = try await h.run(path)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let output = try #require(summary.output)
        switch strategy {
        case "collect": #expect(output.arrayValue?.count == 6)
        case "concat": #expect(output.stringValue?.components(separatedBy: "\n\n").count == 6)
        case "vote": #expect(output["total"] == 6)
        case "first_success": #expect(output.stringValue?.isEmpty == false)
        default:
            #expect(output.stringValue?.isEmpty == false)
            #expect(try store.steps(ofRun: summary.runID).contains { $0.path == "work/synthesis" && $0.agent == "synth" })
        }
        #expect(summary.provenance != nil)
        await h.shutdown()
    }

    /// `findings_json` is made only for a synthesiser whose templates name it (a second copy
    /// of every finding): one that does gets every finding in it, one that does not still
    /// gets `findings`; and a fan-out's provenance, dropped once its row is written, is in
    /// the trace while the output node's is in the summary.
    @Test(arguments: [true, false])
    func aSynthesiserGetsFindingsJSONWhenItNamesIt(_ namesIt: Bool) async throws {
        let h = try RunHarness()
        try h.writeConfig(["planner": ["model": "planner-3"], "small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        try h.agent("lead", model: "planner", prompt: "{{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("worker", model: "small", prompt: "{{item}}")
        try h.agent("synth", model: "large", prompt: namesIt ? "JSON: {{findings_json}}" : "{{#findings}}- {{.}}\n{{/findings}}")
        let path = try h.workflow(
            "s",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"],
                "answer": ["kind": "reconcile", "from": "work", "strategy": "agent", "agent": "synth"],
            ], output: "answer")
        let (summary, store) = try await h.run(path)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let calls = try store.modelCalls(ofRun: summary.runID)
        let synthesis = try #require(calls.first { $0.stepPath == "answer" })
        let request = try JSONValue(parsing: try #require(try store.blob(synthesis.requestHash)))
        let prompt = try #require(request["messages"]?.arrayValue?.last?["content"]?.stringValue)
        let work = try #require(try store.steps(ofRun: summary.runID).first { $0.path == StepPath.result(of: "work").description })
        let findings = try #require(work.outputJSON)
        if namesIt {
            #expect(prompt == "JSON: " + findings, "findings_json is every finding, as JSON")
        } else {
            #expect(prompt.hasPrefix("- ") && prompt.components(separatedBy: "\n- ").count == 3)
        }
        #expect(try JSONValue(parsing: try #require(work.provenanceJSON)).arrayValue?.count == 3)
        #expect(summary.provenance?.arrayValue?.count == 3)
        await h.shutdown()
    }

    @Test func mergeOfTwoAgentNodesKeepsProvenance() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent(
            "a", model: "small", prompt: "{{inputs.question}} a",
            extra: ["output_schema": ["type": "object", "properties": ["left": ["type": "string"]], "required": ["left"]]])
        try h.agent(
            "b", model: "small", prompt: "{{inputs.question}} b",
            extra: ["output_schema": ["type": "object", "properties": ["right": ["type": "string"]], "required": ["right"]]])
        let path = try h.workflow(
            "m",
            nodes: [
                "left": ["kind": "agent", "agent": "a"], "right": ["kind": "agent", "agent": "b"],
                "both": ["kind": "reconcile", "from": ["left", "right"], "strategy": "merge", "conflict": "error"],
            ], output: "both")
        let (summary, _) = try await h.run(path)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.output?["left"] != nil && summary.output?["right"] != nil)
        #expect(summary.provenance?.arrayValue?.contains { $0["part"] == "left" && $0["step"] == "left" } == true)
        await h.shutdown()
    }
}
