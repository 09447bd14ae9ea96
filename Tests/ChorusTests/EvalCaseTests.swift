@testable import Chorus
import ChorusJSON
import Foundation
import Testing

/// Eval datasets and grading, without a run: each expectation kind passing and failing,
/// JSONPath, the loader's messages, and the statistics against published values.
struct EvalCaseTests {
    private func cases(_ lines: [String], workflow: WorkflowSpec? = nil) -> Result<[EvalCase], ValidationFailure> {
        EvalCases.parse(Array(lines.joined(separator: "\n").utf8), file: "evals/t.jsonl", workflow: workflow)
    }

    private func expectation(_ json: String) throws -> EvalExpectation {
        let loaded = try cases(["{\"id\": \"c\", \"inputs\": {}, \"expect\": \(json)}"]).get()
        return try #require(loaded.first?.expectations.first)
    }

    private func passes(_ json: String, _ output: JSONValue?) throws -> Bool {
        try #require(try expectation(json).grade(output)).passed
    }

    @Test func equalsComparesJSONValuesAndStringsWithoutCaseWhenAsked() throws {
        #expect(try passes(#"{"equals": {"a": [1, 2]}}"#, ["a": [1, 2]]))
        #expect(try !passes(#"{"equals": {"a": [1, 2]}}"#, ["a": [2, 1]]))
        #expect(try !passes(#"{"equals": "Positive"}"#, "positive"))
        #expect(try passes(#"{"equals": "Positive", "ignore_case": true}"#, "positive"))
        #expect(try !passes(#"{"equals": 432}"#, "432"), "a number is not the string holding it; number does that")
    }

    @Test func containsAndRegexReadAStringAsItIsAndAnythingElseAsJSON() throws {
        #expect(try passes(#"{"contains": "small models"}"#, "Use small models first."))
        #expect(try !passes(#"{"contains": "Small Models"}"#, "Use small models first."))
        #expect(try passes(#"{"contains": "Small Models", "ignore_case": true}"#, "Use small models first."))
        #expect(try passes(#"{"contains": "\"k\":1"}"#, ["k": 1]))
        #expect(try passes(#"{"regex": "^KX-\\d{5}$"}"#, "KX-48213"))
        #expect(try !passes(#"{"regex": "^KX-\\d{5}$"}"#, "order KX-48213"))
        #expect(try passes(#"{"regex": "^kx-", "ignore_case": true}"#, "KX-48213"))
    }

    /// A catastrophic expectation pattern on a model's output fails at its time budget
    /// (issue 23: Swift's Regex ran `(a+)+$` on 20 characters for over 60 s), and
    /// `chorus validate` warns about it.
    @Test func aCatastrophicRegexFailsAtItsBudget() throws {
        let hostile = JSONValue.string(String(repeating: "a", count: 30) + "!")
        let started = ContinuousClock.now
        let grade = try #require(try expectation(#"{"regex": "(a+)+$"}"#).grade(hostile))
        #expect(!grade.passed && grade.reason?.contains("regex exceeded its time budget") == true, "\(grade)")
        #expect(ContinuousClock.now - started < .seconds(3))
        let loaded = try cases([#"{"id": "c", "inputs": {}, "expect": {"regex": "(a+)+$"}}"#]).get()
        #expect(EvalCases.warnings(loaded, file: "evals/t.jsonl").first?.message.contains("nested quantifiers") == true)
    }

    @Test func jsonSchemaReportsTheFirstViolation() throws {
        let check = try expectation(#"{"json_schema": {"type": "object", "required": ["answer"]}}"#)
        #expect(check.grade(["answer": "x"])?.passed == true)
        let failed = try #require(check.grade(["other": 1]))
        #expect(!failed.passed && failed.reason?.contains("answer") == true, "\(failed)")
    }

    @Test func numberAcceptsANumericStringWithinTheTolerance() throws {
        #expect(try passes(#"{"json_path": "$.answer", "number": 174, "tolerance": 0}"#, ["answer": "174"]))
        #expect(try passes(#"{"json_path": "$.answer", "number": 174, "tolerance": 0}"#, ["answer": " 174\n"]))
        #expect(try !passes(#"{"json_path": "$.answer", "number": 174, "tolerance": 0}"#, ["answer": "175"]))
        #expect(try passes(#"{"json_path": "$.answer", "number": 3.14, "tolerance": 0.01}"#, ["answer": 3.1415]))
        let notNumber = try #require(try expectation(#"{"number": 1}"#).grade("one"))
        #expect(!notNumber.passed && notNumber.reason?.contains("not a number") == true)
    }

    @Test func jsonPathSelectsMembersAndIndexesAndReadsAStringOutputAsJSON() throws {
        let output: JSONValue = ["items": [["name": "a"], ["name": "b"]], "odd key": 1]
        #expect(JSONPath.select("$.items[1].name", in: output) == "b")
        #expect(JSONPath.select("$.items[-1]['name']", in: output) == "b")
        #expect(JSONPath.select("$[\"odd key\"]", in: output) == 1)
        #expect(JSONPath.select("$.items[2]", in: output) == nil)
        #expect(JSONPath.select("$", in: output) == output)
        #expect(try passes(#"{"json_path": "$.answer", "equals": "x"}"#, .string("{\"answer\": \"x\"}")), "a text agent that answered JSON")
        let missing = try #require(try expectation(#"{"json_path": "$.answer", "equals": "x"}"#).grade(["other": 1]))
        #expect(missing.reason == "$.answer selects nothing in the output")
        for bad in ["answer", "$.items[*]", "$..name", "$.items[0:2]", "$[?(@.a)]"] { #expect(JSONPath.problem(in: bad) != nil, "\(bad)") }
    }

    @Test func aRunWithoutOutputFailsEveryCheck() throws {
        let grade = try #require(try expectation(#"{"contains": "x"}"#).grade(nil))
        #expect(!grade.passed && grade.reason == "no output")
    }

    @Test func theLoaderReportsEveryProblemWithItsLine() throws {
        let workflow = WorkflowSpec(
            path: "w.json", json: ["name": "w", "inputs": ["task": ["type": "string"]], "nodes": [:], "output": "x"],
            agentsDirectory: "agents")
        let result = cases(
            [
                #"{"id": "a", "inputs": {"task": "t"}, "expect": {"equals": 1}}"#,
                "",
                "// a comment",
                #"{"id": "a", "inputs": {"task": "t"}, "expect": {"equals": 1}}"#,
                #"{"id": "b", "inputs": {"task": "t", "extra": 1}, "expect": {"equals": 1, "contains": "x"}}"#,
                #"{"id": "c", "inputs": {}, "expect": [{"number": 1, "min_score": 0.5}, {"regex": "("}, {"json_path": "$..x", "equals": 1}]}"#,
                "{not json",
                #"{"id": "d e", "inputs": {"task": "t"}, "expect": {}}"#,
            ], workflow: workflow)
        guard case .failure(let failure) = result else { Issue.record("expected problems"); return }
        let lines = failure.issues.map(\.description)
        let expected = [
            "evals/t.jsonl:4: $.id: 'a' is already the id of line 1",
            "evals/t.jsonl:5: $.expect: one check per expectation, found equals and contains (use a list for several)",
            "evals/t.jsonl:5: $.inputs.extra: w.json declares no input 'extra' (inputs: task)",
            "evals/t.jsonl:6: $.expect[0].min_score: min_score goes with judge, not number",
            "evals/t.jsonl:6: $.expect[1].regex: not a valid regular expression",
            "evals/t.jsonl:6: $.inputs.task: missing required input 'task' (string)",
        ]
        for line in expected { #expect(lines.contains(line), "missing: \(line)\nin: \(lines)") }
        #expect(lines.contains { $0.hasPrefix("evals/t.jsonl:6: $.expect[2].json_path: $..x:") })
        #expect(lines.contains { $0.hasPrefix("evals/t.jsonl:7: column") && $0.contains("invalid JSON") })
        #expect(lines.contains { $0.hasPrefix("evals/t.jsonl:8: $.id") }, "the id pattern")
    }

    @Test func theShippedDatasetsAreValidForTheirWorkflow() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let project = try SpecLoader.loadProject(
            workflow: root.appendingPathComponent("workflows/eval-tasks.json").path,
            config: root.appendingPathComponent("chorus.json").path
        ).get()
        for name in ["tasks", "tasks-judged"] {
            let loaded = try EvalCases.load(root.appendingPathComponent("evals/\(name).jsonl").path, workflow: project.workflow).get()
            #expect(loaded.count >= 12)
        }
        let triage = try SpecLoader.loadProject(
            workflow: root.appendingPathComponent("workflows/triage.json").path, config: root.appendingPathComponent("chorus.json").path
        ).get()
        let tickets = try EvalCases.load(root.appendingPathComponent("evals/triage.jsonl").path, workflow: triage.workflow, agents: triage.agents).get()
        #expect(tickets.count >= 40 && Set(tickets.compactMap { $0.routes["triage"] }) == ["billing", "technical", "general", "other"])
    }

    @Test func variantsParseAndSayWhatIsWrong() throws {
        let variant = try EvalVariant(parsing: "all-large:small=large, planner=large")
        #expect(variant.name == "all-large" && variant.swaps == ["small": "large", "planner": "large"])
        for bad in ["all-large", "as-configured:small=large", ":small=large", "x:small", "x:", "x:a=b,a=c", "sp ace:a=b"] {
            #expect(throws: EvalError.self, "\(bad)") { try EvalVariant(parsing: bad) }
        }
    }

    @Test func wilsonIntervalsMatchPublishedValues() {
        // Wilson score intervals at 95%, as computed by statsmodels' proportion_confint(method="wilson").
        let known: [(Int, Int, Double, Double)] = [
            (0, 10, 0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1),
            (97, 100, 0.9155, 0.9897), (210, 300, 0.6459, 0.7491),
        ]
        for (passed, total, low, high) in known {
            let interval = EvalStatistics.wilson95(passed: passed, total: total)
            #expect(abs(interval.low - low) < 0.00006 && abs(interval.high - high) < 0.00006, "\(passed)/\(total): \(interval)")
        }
        #expect(EvalStatistics.wilson95(passed: 0, total: 0) == (0, 1))
    }

    @Test func percentilesUseTheNearestRank() {
        let values = (1...100).map(Double.init).shuffled()
        #expect(EvalStatistics.percentile(values, 0.5) == 50)
        #expect(EvalStatistics.percentile(values, 0.95) == 95)
        #expect(EvalStatistics.percentile([7], 0.95) == 7)
        #expect(EvalStatistics.percentile([], 0.5) == 0)
    }

    /// `expect_route` against the shipped triage workflow: a bare label is the only route
    /// node's, an object names nodes; every mistake is one line naming the line and field.
    @Test func expectRouteResolvesToTheRouteNodeAndSaysWhatIsWrong() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let project = try SpecLoader.loadProject(
            workflow: root.appendingPathComponent("workflows/triage.json").path, config: root.appendingPathComponent("chorus.json").path
        ).get()
        let parse = { (lines: [String]) in
            EvalCases.parse(Array(lines.joined(separator: "\n").utf8), file: "evals/t.jsonl", workflow: project.workflow, agents: project.agents)
        }
        let good = try parse([
            #"{"id": "a", "inputs": {"ticket": "x"}, "expect_route": "billing"}"#,
            #"{"id": "b", "inputs": {"ticket": "x"}, "expect_route": {"triage": "other"}, "expect": {"contains": "x"}}"#,
        ]).get()
        #expect(good.map(\.routes) == [["triage": "billing"], ["triage": "other"]])
        #expect(good[0].expectations.isEmpty, "expect_route alone is a case")

        guard
            case .failure(let failure) = parse([
                #"{"id": "a", "inputs": {"ticket": "x"}, "expect_route": "refund"}"#,
                #"{"id": "b", "inputs": {"ticket": "x"}, "expect_route": {"billing": "billing"}}"#,
                #"{"id": "c", "inputs": {"ticket": "x"}}"#,
                #"{"id": "d", "inputs": {"ticket": "x"}, "expect_route": {"triage": "refund"}}"#,
                #"{"id": "e", "inputs": {"ticket": "x"}, "expect_route": 3}"#,
            ])
        else {
            Issue.record("accepted")
            return
        }
        let lines = failure.issues.map(\.description)
        for line in [
            "evals/t.jsonl:1: $.expect_route: 'refund' is not one of triage's labels (billing, technical, general, other)",
            "evals/t.jsonl:2: $.expect_route.billing: 'billing' is not a route node (route nodes: triage)",
            "evals/t.jsonl:3: $: expected expect, expect_route or both: a case must check something",
            "evals/t.jsonl:4: $.expect_route.triage: 'refund' is not one of triage's labels (billing, technical, general, other)",
        ] {
            #expect(lines.contains(line), "missing: \(line)\nin: \(lines)")
        }
        #expect(lines.contains { $0.hasPrefix("evals/t.jsonl:5: $.expect_route") }, "\(lines)")

        // A workflow with no route node has nothing to check.
        let tasks = try SpecLoader.loadProject(
            workflow: root.appendingPathComponent("workflows/eval-tasks.json").path, config: root.appendingPathComponent("chorus.json").path
        ).get()
        let none = EvalCases.parse(
            Array(#"{"id": "a", "inputs": {"task": "x"}, "expect_route": "billing"}"#.utf8), file: "evals/t.jsonl", workflow: tasks.workflow)
        guard case .failure(let problem) = none else {
            Issue.record("accepted")
            return
        }
        #expect(problem.issues.count == 1 && problem.issues.first?.message.hasSuffix("eval-tasks.json has no route node to check") == true)
    }

    @Test func aRouteGradeSaysWhatTheRouteChoseOrThatItChoseNothing() {
        let evalCase = EvalCase(id: "c", line: 1, inputs: [:], expectations: [], routes: ["triage": "billing", "tone": "calm"], tags: [])
        var chosen: [String: String?] = ["triage": "billing"]
        chosen["tone"] = .some(String?.none)
        let grades = evalCase.routeGrades(chosen: chosen)
        #expect(grades.map(\.passed) == [false, true])
        #expect(grades.map(\.route) == ["tone", "triage"] && grades[0].reason == "tone's answer held no label")
        let missing = evalCase.routeGrades(chosen: ["triage": .some("technical")])
        #expect(missing.map(\.reason) == ["tone chose nothing: it failed, was skipped or the run stopped first", "triage chose technical"])
        #expect(evalCase.routeGrades(chosen: nil).allSatisfy { !$0.passed && $0.reason?.contains("no longer in the trace") == true })
    }
}
