@testable import Chorus
import ChorusIO
import ChorusJSON
import ChorusSim
import ChorusTrace
import Foundation
import Testing

/// `chorus eval` end to end on loopback: the simulator's ground truth, variants by model
/// swap, plan reuse, judges, and re-grading with no model call.
struct EvalRunTests {
    /// A harness with the eval-tasks project: `small` (sim-small) escalating to `large`
    /// (sim-large), priced as in the shipped chorus.json.
    private func harness(cases count: Int, accuracy: [String: Double]? = nil) throws -> (RunHarness, String, String) {
        let harness = try RunHarness { if let accuracy { $0.accuracy = accuracy } }
        try harness.writeConfig([
            "small": ["model": "sim-small", "price": ["input_per_mtok": 0.02, "output_per_mtok": 0.04]],
            "large": ["model": "sim-large", "provider": "anthropic", "price": ["input_per_mtok": 3, "output_per_mtok": 15]],
            "planner": ["model": "planner-3"],
        ])
        try harness.agent(
            "solver", model: ["small", "large"], prompt: "{{inputs.task}}",
            extra: [
                "retries": 1,
                "output_schema": [
                    "type": "object", "required": ["answer", "confidence"],
                    "properties": ["answer": ["type": "string", "minLength": 1], "confidence": ["type": "number", "minimum": 0.7, "maximum": 1]],
                ],
            ])
        let workflow = try harness.workflow(
            "tasks", nodes: ["solve": ["kind": "agent", "agent": "solver"]], output: "solve",
            inputs: ["task": ["type": "string"]])
        let casesPath = harness.directory.appendingPathComponent("cases.jsonl").path
        try EvalTaskGenerator.cases(count: count, seed: 1).map(\.text).joined(separator: "\n").write(toFile: casesPath, atomically: true, encoding: .utf8)
        return (harness, workflow, casesPath)
    }

    private func evaluate(
        _ harness: RunHarness, workflow: String, cases: String, variants: [String] = [], reusePlan: Bool = false,
        parallelCases: Int = 8
    ) async throws -> (EvalReport, TraceStore) {
        let project = try harness.load(workflow)
        let dataset = try EvalCases.load(cases, workflow: project.workflow).get()
        let plan = try EvalPlan(
            project: project, cases: dataset, casesPath: cases, variants: try variants.map(EvalVariant.init(parsing:)),
            parallelCases: parallelCases, maxParallel: 64, reusePlan: reusePlan)
        let store = try TraceStore(path: harness.dbPath)
        let writer = TraceWriter(store: store)
        defer { writer.close() }
        let report = await Evaluator.run(
            plan, evalID: Orchestrator.newRunID(), store: store, trace: writer, client: harness.client,
            loop: harness.loop, progress: EvalProgress(total: dataset.count * plan.variants.count))
        return (report, store)
    }

    private func requests(_ harness: RunHarness, _ model: String) -> Int {
        harness.stats()["models"]?[model]?["requests"]?.intValue ?? 0
    }

    @Test func theSimulatorSolvesEveryGeneratedCaseWhenItsAccuracyIsOne() async throws {
        let (harness, workflow, cases) = try harness(cases: 120, accuracy: ["sim-small": 1, "sim-large": 1])
        let (report, _) = try await evaluate(harness, workflow: workflow, cases: cases)
        let figures = try #require(report.figures.first)
        #expect(figures.passed == 120, "generator and solver disagree on: \(report.results.filter { !$0.passed }.map(\.caseID))")
        #expect(figures.escalationRate == 0)
        #expect(requests(harness, "sim-large") == 0)
        await harness.shutdown()
    }

    @Test func theCascadeReachesAllLargeWithinItsIntervalAtAThirdOfItsCost() async throws {
        let (harness, workflow, cases) = try harness(cases: 300)
        let (report, store) = try await evaluate(
            harness, workflow: workflow, cases: cases,
            variants: ["all-small:large=small", "all-large:small=large"], parallelCases: 16)
        let byName = Dictionary(uniqueKeysWithValues: report.figures.map { ($0.variant.name, $0) })
        let cascade = try #require(byName["as-configured"]), small = try #require(byName["all-small"]), large = try #require(byName["all-large"])
        #expect(cascade.cases == 300 && small.cases == 300 && large.cases == 300)
        // sim-small is right 70% of the time, sim-large 97% (deterministic per case and seed).
        #expect(abs(small.passRate - 0.70) < 0.08, "\(small.passRate)")
        #expect(abs(large.passRate - 0.97) < 0.04, "\(large.passRate)")
        #expect(cascade.passRate >= large.interval.low, "cascade \(cascade.passRate) vs all-large \(large.interval)")
        #expect(cascade.cost <= large.cost / 3, "cascade $\(cascade.cost) vs all-large $\(large.cost)")
        #expect(cascade.escalationRate > 0.15 && cascade.escalationRate < 0.4)
        #expect(small.escalationRate == 0 && large.escalationRate == 0, "a swapped chain names one model once")
        // A confidently wrong small answer passes validation and fails the grader: some cases
        // fail under the cascade with the run succeeded.
        let wrongButValid = report.results.filter { $0.variant == "all-small" && $0.runStatus == "succeeded" && !$0.passed }
        let invalid = report.results.filter { $0.variant == "all-small" && $0.runStatus != "succeeded" }
        #expect(!wrongButValid.isEmpty && !invalid.isEmpty, "wrong answers both validation can and cannot catch")
        // Every run is traced and linked: its run_started event names the eval, case and variant.
        let sample = try #require(report.results.first { $0.variant == "all-large" })
        let sampleRun = try #require(sample.runID)
        let start = try #require(try store.events(ofRun: sampleRun).first { $0.kind == "run_started" })
        let detail = try JSONValue(parsing: try #require(start.detailJSON))
        #expect(detail["eval"]?["variant"] == "all-large" && detail["eval"]?["case"] == .string(sample.caseID))
        #expect(detail["model_swaps"]?["small"] == "large")
        #expect(try store.modelCalls(ofRun: sample.runID!).allSatisfy { $0.model == "large" })
        #expect(try store.evalResults(of: report.eval.id).count == 900)
        await harness.shutdown()
    }

    @Test func reusingThePlanCallsThePlannerOncePerCase() async throws {
        let harness = try RunHarness()
        try harness.writeConfig(["planner": ["model": "planner-3"], "small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        try harness.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
        try harness.agent("worker", model: ["small", "large"], prompt: "{{item}}", extra: ["output_schema": findingSchema])
        let workflow = try harness.workflow("research", nodes: ["research": ["kind": "lead", "lead": "lead", "worker": "worker"]], output: "research")
        let cases = harness.directory.appendingPathComponent("q.jsonl").path
        try [
            "{\"id\": \"a\", \"inputs\": {\"question\": \"one\"}, \"expect\": {\"json_schema\": {\"type\": \"array\"}}}",
            "{\"id\": \"b\", \"inputs\": {\"question\": \"two\"}, \"expect\": {\"json_schema\": {\"type\": \"array\"}}}",
        ]
        .joined(separator: "\n").write(toFile: cases, atomically: true, encoding: .utf8)

        let (fresh, _) = try await evaluate(harness, workflow: workflow, cases: cases, variants: ["all-large:small=large"])
        #expect(fresh.results.count == 4 && fresh.results.allSatisfy { $0.passed })
        #expect(requests(harness, "planner-3") == 4, "without reuse every run plans")
        _ = harness.simulator.statsJSON()
        let before = requests(harness, "planner-3")
        let (reused, store) = try await evaluate(harness, workflow: workflow, cases: cases, variants: ["all-large:small=large"], reusePlan: true)
        #expect(reused.results.allSatisfy { $0.passed })
        #expect(requests(harness, "planner-3") - before == 2, "the variant forks the as-configured run's recorded plan")
        let fork = try #require(reused.results.first { $0.variant == "all-large" })
        let forkRun = try #require(fork.runID)
        let run = try #require(try store.run(matching: forkRun))
        #expect(run.relation == .fork)
        #expect(fork.cost > 0 && fork.calls == 4, "the reused plan's call counts, at its recorded price")
        await harness.shutdown()
    }

    @Test func aJudgeGradesAndAReplayRegradesWithNoModelCall() async throws {
        let (harness, workflow, _) = try harness(cases: 0, accuracy: ["sim-small": 1, "sim-large": 1])
        try harness.agent(
            "grader", model: "large", prompt: "Task: {{inputs.case.task}}\nReference answer: {{inputs.criteria}}\nCandidate answer: {{inputs.output}}\n",
            extra: [
                "output_schema": [
                    "type": "object", "required": ["pass", "score", "reason"],
                    "properties": ["pass": ["type": "boolean"], "score": ["type": "number"], "reason": ["type": "string"]],
                ]
            ])
        let cases = harness.directory.appendingPathComponent("judged.jsonl").path
        try [
            #"{"id": "right", "inputs": {"task": "Compute 6 * 7. Reply with the number only."}, "expect": {"judge": "grader", "criteria": "42"}}"#,
            #"{"id": "wrong", "inputs": {"task": "Compute 6 * 7. Reply with the number only."}, "expect": [{"judge": "grader", "criteria": "41"}, {"json_path": "$.answer", "equals": "42"}]}"#,
        ]
        .joined(separator: "\n").write(toFile: cases, atomically: true, encoding: .utf8)
        let (report, store) = try await evaluate(harness, workflow: workflow, cases: cases)
        let right = try #require(report.results.first { $0.caseID == "right" })
        let wrong = try #require(report.results.first { $0.caseID == "wrong" })
        #expect(right.passed && !wrong.passed)
        let grades = try #require(try JSONValue(parsing: wrong.gradesJSON).arrayValue).compactMap(Grade.init(json:))
        #expect(grades.count == 2 && !grades[0].passed && grades[1].passed)
        let judgeRunID = try #require(grades[0].judgeRunID)
        let judgeRun = try #require(try store.run(matching: judgeRunID))
        #expect(judgeRun.workflow == "judge-grader" && judgeRun.status == .succeeded)

        // Change the grader's criteria in the dataset: the deterministic check is graded anew;
        // the judge's recorded verdict is replayed, so neither makes a call.
        try [
            #"{"id": "right", "inputs": {"task": "Compute 6 * 7. Reply with the number only."}, "expect": [{"judge": "grader", "criteria": "42"}, {"json_path": "$.answer", "regex": "^4"}]}"#,
            #"{"id": "wrong", "inputs": {"task": "Compute 6 * 7. Reply with the number only."}, "expect": {"json_path": "$.answer", "equals": "42"}}"#,
        ]
        .joined(separator: "\n").write(toFile: cases, atomically: true, encoding: .utf8)
        let requestsBefore = harness.stats()["requests"]?.intValue
        let project = try harness.load(workflow)
        let plan = try EvalPlan(
            project: project, cases: try EvalCases.load(cases, workflow: project.workflow).get(), casesPath: cases,
            variants: [], parallelCases: 1, maxParallel: 8, reusePlan: false)
        let writer = TraceWriter(store: store)
        let regraded = try await Evaluator.regrade(report.eval, plan: plan, evalID: Orchestrator.newRunID(), store: store, trace: writer, loop: harness.loop)
        writer.close()
        #expect(harness.stats()["requests"]?.intValue == requestsBefore, "no model call")
        #expect(regraded.results.allSatisfy { $0.passed }, "\(regraded.results.map(\.gradesJSON))")
        #expect(regraded.eval.sourceEvalID == report.eval.id)
        #expect(try store.evalResults(of: regraded.eval.id).count == 2)
        await harness.shutdown()
    }

    @Test func theCounterfactualPricesEveryCallOnTheMostExpensiveModelOfItsChain() async throws {
        let (harness, workflow, _) = try harness(cases: 0, accuracy: ["sim-small": 1, "sim-large": 1])
        let (summary, store) = try await harness.run(workflow, inputs: ["task": "Compute 2 + 2. Reply with the number only."])
        #expect(summary.status == .succeeded)
        let calls = try store.modelCalls(ofRun: summary.runID)
        let start = try #require(try store.events(ofRun: summary.runID).first { $0.kind == "run_started" })
        let pricing = try JSONValue(parsing: try #require(start.detailJSON))["pricing"]
        let estimate = try #require(Counterfactual.estimate(pricing: pricing, steps: try store.steps(ofRun: summary.runID), calls: calls))
        let call = try #require(calls.first)
        #expect(call.model == "small")
        #expect(abs(estimate.actual - call.cost) < 1e-12)
        #expect(abs(estimate.ceiling - Double(call.tokensIn * 3 + call.tokensOut * 15) / 1_000_000) < 1e-12)
        #expect(estimate.ceilingModels == ["large"])
        #expect(Counterfactual.estimate(pricing: nil, steps: [], calls: calls) == nil, "runs recorded before pricing was kept")
        await harness.shutdown()
    }

    /// `expect_route` graded against the labels the route chose: a small router that is
    /// always wrong (sim-small at accuracy 0) routes none of the tickets right, the large
    /// one all; the report carries route accuracy per variant, in the table and the JSON,
    /// and a re-grade reads the same routes back from the trace with no call.
    @Test func routeAccuracyIsReportedPerVariantAndReGradedFromTheTrace() async throws {
        let harness = try RunHarness { $0.accuracy = ["sim-small": 0, "sim-large": 1] }
        try harness.writeConfig([
            "router": ["model": "sim-small", "price": ["input_per_mtok": 0.02, "output_per_mtok": 0.04]],
            "large": ["model": "sim-large", "price": ["input_per_mtok": 3, "output_per_mtok": 15]],
        ])
        let answer: JSONValue = ["type": "object", "required": ["answer"], "properties": ["answer": ["type": "string", "minLength": 1]]]
        try harness.agent(
            "triage", model: ["router"], prompt: "Classify this support ticket as billing, technical, general or other: \"{{inputs.ticket}}\"",
            extra: [
                "retries": 0,
                "output_schema": [
                    "type": "object", "required": ["label"],
                    "properties": ["label": ["enum": ["billing", "technical", "general", "other"]], "confidence": ["type": "number"]],
                ],
            ])
        for name in ["desk", "expert"] { try harness.agent(name, model: ["large"], prompt: "Ticket: {{inputs.ticket}}", extra: ["output_schema": answer]) }
        let workflow = try harness.workflow(
            "triage",
            nodes: [
                "triage": ["kind": "route", "agent": "triage", "on": "label", "cases": ["billing": ["desk"], "technical": ["desk"]], "default": ["expert"]],
                "desk": ["kind": "agent", "agent": "desk"], "expert": ["kind": "agent", "agent": "expert"],
                "reply": ["kind": "reconcile", "from": ["desk", "expert"], "strategy": "first_success"],
            ], output: "reply", inputs: ["ticket": ["type": "string"]])
        let cases = harness.directory.appendingPathComponent("triage.jsonl").path
        try EvalTaskGenerator.triageCases(count: 8, seed: 3).map { line -> String in
            var object = line.objectValue ?? [:]
            object["expect"] = ["json_path": "$.answer", "regex": "\\S"]
            return JSONValue.object(object).text
        }.joined(separator: "\n").write(toFile: cases, atomically: true, encoding: .utf8)
        let (report, store) = try await evaluate(harness, workflow: workflow, cases: cases, variants: ["large-router:router=large"])
        let figures = report.figures
        #expect(figures.map(\.routesGraded) == [8, 8])
        #expect(figures.map(\.routesRight) == [0, 8], "\(report.table)")
        #expect(figures[1].routeAccuracy == 1 && figures[1].passRate == 1)
        #expect(report.table.contains("route acc.") && report.table.contains("100.0% (8/8)"), "\(report.table)")
        #expect(report.json["variants"]?.arrayValue?.map { $0["route_accuracy"] } == [0, 1])
        // Every wrong route says what it chose, or that it chose nothing (the router's answer
        // failed validation, and with it the run).
        let reasons = report.results.filter { $0.variant == "as-configured" }.compactMap { result in
            ((try? JSONValue(parsing: result.gradesJSON))?.arrayValue ?? []).compactMap(Grade.init(json:)).first { $0.route == "triage" }?.reason
        }
        #expect(reasons.count == 8 && reasons.allSatisfy { $0.hasPrefix("triage chose") }, "\(reasons)")

        let requestsBefore = harness.stats()["requests"]?.intValue
        let project = try harness.load(workflow)
        let plan = try EvalPlan(
            project: project, cases: try EvalCases.load(cases, workflow: project.workflow, agents: project.agents).get(), casesPath: cases,
            variants: [], parallelCases: 1, maxParallel: 8, reusePlan: false, regrading: true)
        let writer = TraceWriter(store: store)
        let regraded = try await Evaluator.regrade(report.eval, plan: plan, evalID: Orchestrator.newRunID(), store: store, trace: writer, loop: harness.loop)
        writer.close()
        #expect(harness.stats()["requests"]?.intValue == requestsBefore, "no model call")
        #expect(regraded.figures.map(\.routesRight) == [0, 8])
        await harness.shutdown()
    }
}
