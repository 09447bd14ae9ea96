import ChorusJSON
import ChorusTrace

/// A `judge` expectation: an agent reads the output (and the case) and answers
/// `{"pass": bool, "score": 0..1, "reason": "…"}`. The judge is a run of its own — a
/// one-node workflow around the agent, traced like any run and linked from the grade — so
/// `chorus eval --replay` can replay it with no call.
///
/// The agent's templates see `{{inputs.output}}` (the output as text), `{{inputs.case}}`
/// (the case's inputs: `{{inputs.case.question}}`), `{{inputs.case_id}}` and
/// `{{inputs.criteria}}` (the expectation's `criteria`, or empty).
struct EvalJudge {
    let shell: EvalShell
    let agent: AgentSpec

    /// The one-node project the judge runs as, for the evaluated project `evaluated`. The
    /// judge reads the case's inputs and the output derived from them, so its inputs carry
    /// their data labels: `case` every label of the workflow's inputs, `output` those of its
    /// output node. The data boundary then holds for the judge as for any step.
    static func project(_ agent: AgentSpec, judging evaluated: Project) -> Project {
        let caseLabels = Set(evaluated.workflow.inputs.values.flatMap(\.labels)).sorted()
        let outputLabels = (DataBoundary.labels(evaluated)[evaluated.workflow.output] ?? [:]).keys.sorted()
        func input(_ type: String, _ labels: [String]) -> JSONValue {
            labels.isEmpty ? ["type": .string(type)] : ["type": .string(type), "labels": .array(labels.map { .string($0) })]
        }
        let workflow = WorkflowSpec(
            path: "judge:\(agent.name)",
            json: [
                "name": .string("judge-\(agent.name)"),
                "inputs": [
                    "output": input("string", outputLabels), "criteria": input("string", []), "case_id": input("string", []),
                    "case": input("object", caseLabels),
                ],
                "nodes": ["judge": ["kind": "agent", "agent": .string(agent.name)]],
                "output": "judge",
            ], agentsDirectory: evaluated.workflow.agentsDirectory)
        return Project(config: evaluated.config, workflow: workflow, agents: [agent.name: agent], dependencies: ["judge": []])
    }

    /// Why `agent` may not judge `evaluated`'s cases: every one of its models is refused a
    /// label the case or the output carries (one line per model); nil when one may.
    static func boundaryProblem(_ agent: AgentSpec, judging evaluated: Project) -> String? {
        let judgeProject = project(agent, judging: evaluated)
        let labels = DataBoundary.labels(judgeProject)["judge"] ?? [:]
        var refusals: [String] = []
        for name in agent.models {
            guard let model = evaluated.config.models[name] else { continue }
            guard let refusal = DataBoundary.refusal(labels, model: model) else { return nil }
            refusals.append(DataBoundary.describe(refusal, model: model))
        }
        return refusals.isEmpty ? nil : refusals.joined(separator: "; ")
    }

    static func inputs(output: JSONValue, criteria: String?, evalCase: EvalCase) -> JSONValue {
        [
            "output": .string(output.stringValue ?? output.text), "criteria": .string(criteria ?? ""),
            "case_id": .string(evalCase.id), "case": evalCase.inputs,
        ]
    }

    func grade(
        _ expectation: EvalExpectation, output: JSONValue?, minScore: Double, criteria: String?, evalCase: EvalCase,
        context: JSONValue
    ) async -> Grade {
        guard let output else { return Grade(expectation: expectation.summary, passed: false, reason: "no output") }
        let project = Self.project(agent, judging: shell.plan.project)
        var origin = RunOrigin()
        origin.evalContext = context
        let summary = await Orchestrator.run(
            project, inputs: Self.inputs(output: output, criteria: criteria, evalCase: evalCase),
            trace: shell.trace, transport: LiveTransport(client: shell.client), recordedTransport: nil,
            tools: LiveTools(client: shell.client, loop: shell.loop), recordedTools: nil, origin: origin,
            loop: shell.loop, maxParallel: 4, progress: RunProgress(), runID: Orchestrator.newRunID())
        return Self.verdict(expectation, summary: summary, minScore: minScore)
    }

    /// The grade a judge run's outcome gives.
    static func verdict(_ expectation: EvalExpectation, summary: RunSummary, minScore: Double) -> Grade {
        guard summary.status == .succeeded, let answer = summary.output else {
            return Grade(
                expectation: expectation.summary, passed: false, reason: "the judge failed: \(summary.error ?? summary.status.rawValue)",
                judgeRunID: summary.runID)
        }
        let value = answer.objectValue != nil ? answer : (try? ModelAnswerParser.json(from: answer.stringValue ?? "")) ?? .null
        guard let pass = value["pass"]?.boolValue else {
            return Grade(
                expectation: expectation.summary, passed: false, reason: "the judge's answer has no boolean \"pass\"",
                judgeRunID: summary.runID)
        }
        let score = min(1, max(0, value["score"]?.numberValue ?? (pass ? 1 : 0)))
        let reason = value["reason"]?.stringValue.map(EvalExpectation.clip)
        return Grade(
            expectation: expectation.summary, passed: pass && score >= minScore, score: score,
            reason: pass && score < minScore ? "score \(score) is under \(minScore)" + (reason.map { ": \($0)" } ?? "") : reason,
            judgeRunID: summary.runID)
    }
}
