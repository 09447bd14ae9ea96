import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Synchronization

/// An eval ready to run: the project, its cases, the variants and how to run them, all
/// checked (swapped models exist, judges load, the reuse point parses) before any call.
public struct EvalPlan: Sendable {
    /// The workflow and its agents, models and tools.
    public var project: Project
    /// The dataset's cases, in file order.
    public var cases: [EvalCase]
    /// The dataset file as given, and the SHA-256 of its bytes.
    public var casesPath: String
    /// SHA-256 of the dataset's bytes: a re-grade checks the file has not changed.
    public var casesDigest: String
    /// `as-configured` first, then the `--variant`s in order.
    public var variants: [EvalVariant]
    /// Cases in flight at once (each runs its variants one after another).
    public var parallelCases: Int
    /// Model calls in flight at most, per run.
    public var maxParallel: Int
    /// With `--reuse-plan`: where each variant's fork of the as-configured run turns live.
    public var reusePoint: String?
    /// Judge agents the expectations name, loaded.
    var judges: [String: AgentSpec]
    /// What waits for a person in the workflow (nodes, `model:NAME`, `tool:NAME`), each
    /// approved by the eval for every run (`--approve`): an eval cannot wait for a person.
    public var approvals: [String: ApprovalDecision] = [:]

    /// Checks everything an eval needs before it starts; the error says what is wrong.
    public init(
        project: Project, cases: [EvalCase], casesPath: String, variants: [EvalVariant], parallelCases: Int,
        maxParallel: Int, reusePlan: Bool, liveFrom: String? = nil, approve: [String] = [], regrading: Bool = false
    ) throws(EvalError) {
        self.project = project
        // A re-grade makes no call and waits for nobody: its runs' decisions are recorded.
        if !regrading {
            let gates = Self.gates(of: project, swaps: variants.flatMap { $0.swaps.values })
            for name in approve where !gates.contains(name) {
                throw EvalError(
                    "--approve \(name): nothing waits for approval there (it waits at: \(gates.isEmpty ? "nothing" : gates.joined(separator: ", ")))")
            }
            let unapproved = gates.filter { !approve.contains($0) }
            if !unapproved.isEmpty {
                throw EvalError(
                    "\(project.workflow.path) waits for a person at \(unapproved.joined(separator: ", ")): an eval cannot wait; "
                        + unapproved.map { "--approve \($0)" }.joined(separator: " ") + " runs every case approved (recorded as approved by chorus eval)")
            }
            for name in Set(approve) { approvals[name] = ApprovalDecision(node: name, approved: true, by: "chorus eval", note: "approved for the eval") }
        }
        self.cases = cases
        self.casesPath = casesPath
        guard let bytes = FileManager.default.contents(atPath: casesPath) else { throw EvalError("\(casesPath): cannot be read") }
        casesDigest = TraceStore.hash(Array(bytes))
        var names = Set([EvalVariant.asConfigured.name])
        let known = project.config.models.keys.sorted().joined(separator: ", ")
        for variant in variants {
            guard names.insert(variant.name).inserted else { throw EvalError("--variant \(variant.name): two variants have this name") }
            for (from, to) in variant.swaps.sorted(by: { $0.key < $1.key }) where project.config.models[from] == nil || project.config.models[to] == nil {
                throw EvalError("--variant \(variant.name): \(from)=\(to): both must be models in \(project.config.path); models: \(known)")
            }
        }
        self.variants = [.asConfigured] + variants
        self.parallelCases = parallelCases
        self.maxParallel = maxParallel
        if reusePlan || liveFrom != nil {
            let point: String
            if let liveFrom { point = liveFrom } else { point = try Self.defaultReusePoint(project.workflow) }
            do { _ = try LivePoint(point, project: project) } catch { throw EvalError(error.description) }
            reusePoint = point
        }
        judges = try Self.judges(for: cases, project: project)
    }

    /// The judge agents `cases` name, loaded and checked: each loads, calls no tools, names
    /// models of the project, and has a model that may see what it judges (the case and the
    /// output carry the workflow's data labels; a judge none of whose models accepts them
    /// would either be refused at every case or, worse, be sent them).
    public static func judges(for cases: [EvalCase], project: Project) throws(EvalError) -> [String: AgentSpec] {
        let known = project.config.models.keys.sorted().joined(separator: ", ")
        var judges: [String: AgentSpec] = [:]
        for name in Set(cases.flatMap { $0.expectations.compactMap(\.judgeAgent) }).sorted() {
            let path = URL(fileURLWithPath: project.workflow.agentsDirectory).appendingPathComponent("\(name).json").path
            switch SpecLoader.loadAgent(path) {
            case .failure(let failure): throw EvalError("judge \(name): " + failure.issues.map(\.description).joined(separator: "; "))
            case .success(let agent):
                guard agent.tools.isEmpty else { throw EvalError("judge \(name) (\(path)): a judge may not call tools") }
                for model in agent.models where project.config.models[model] == nil {
                    throw EvalError("judge \(name) (\(path)): model '\(model)' is not in \(project.config.path); models: \(known)")
                }
                if let problem = EvalJudge.boundaryProblem(agent, judging: project) {
                    throw EvalError("judge \(name) (\(path)) may not see what it judges: \(problem)")
                }
                judges[name] = agent
            }
        }
        return judges
    }

    /// Everything in `project` that waits for a person: nodes with an approval rule, and
    /// `model:NAME` / `tool:NAME` for models and tools that require approval and are used
    /// (by the agents, or by a variant that swaps one in).
    static func gates(of project: Project, swaps: [String] = []) -> [String] {
        var gates = project.workflow.nodes.filter { $0.value.approval != nil }.map(\.key)
        let used = Set(project.agents.values.flatMap(\.models) + swaps)
        gates += project.config.models.filter { $0.value.requiresApproval && used.contains($0.key) }.map { "model:\($0.key)" }
        gates += project.tools.filter { $0.value.requiresApproval }.map { "tool:\($0.key)" }
        return gates.sorted()
    }

    /// Where a fork reuses the plan: the first lead node's round-1 workers (its plan is
    /// recorded), else the first foreach node's items (what they fan out over is).
    static func defaultReusePoint(_ workflow: WorkflowSpec) throws(EvalError) -> String {
        let ids = workflow.nodes.keys.sorted()
        if let lead = ids.first(where: { workflow.nodes[$0]?.kind == .lead }) { return StepPath(node: lead, .round(1)).description }
        if let fanOut = ids.first(where: { workflow.nodes[$0]?.kind == .foreach }) { return StepPath(node: fanOut, .items).description }
        throw EvalError("--reuse-plan: \(workflow.path) has no lead or foreach node, so no plan to reuse; --live-from NODE names another point")
    }
}

extension EvalExpectation {
    var judgeAgent: String? {
        if case .judge(let agent, _, _) = check { return agent }
        return nil
    }
}

/// Counts of an eval in progress, for the CLI's display. Read from any thread.
public final class EvalProgress: Sendable {
    private let state = Mutex<(done: Int, passed: [String: Int], finished: [String: Int])>((0, [:], [:]))
    /// Runs to make: cases × variants.
    public let total: Int

    /// Progress of `total` runs, none done.
    public init(total: Int) { self.total = total }

    func record(_ result: EvalResultRecord) {
        state.withLock {
            $0.done += 1
            $0.finished[result.variant, default: 0] += 1
            if result.passed { $0.passed[result.variant, default: 0] += 1 }
        }
    }

    /// Results in so far, and per variant how many finished and passed.
    public func snapshot() -> (done: Int, finished: [String: Int], passed: [String: Int]) {
        state.withLock { ($0.done, $0.finished, $0.passed) }
    }
}

/// Runs an eval: every case under every variant, each a traced run linked to the eval,
/// graded as it finishes; the results go to the trace as they come.
public enum Evaluator {
    /// Runs `plan` as eval `evalID`. Cancelling the calling task stops starting runs,
    /// interrupts those in flight and marks the eval interrupted; what finished is kept.
    public static func run(
        _ plan: EvalPlan, evalID: String, store: any TraceBackend, trace: TraceWriter, client: HTTPClient,
        loop: EventLoop, progress: EvalProgress
    ) async -> EvalReport {
        var record = EvalRecord(
            id: evalID, workflow: plan.project.workflow.name, workflowPath: plan.project.workflow.path,
            casesPath: plan.casesPath, casesDigest: plan.casesDigest, configPath: plan.project.config.path,
            variantsJSON: JSONValue.array(plan.variants.map(\.json)).text,
            optionsJSON: JSONValue.object([
                "reuse_plan": plan.reusePoint.map { .string($0) } ?? .null,
                "parallel_cases": .number(Double(plan.parallelCases)),
                "max_parallel": .number(Double(plan.maxParallel)),
            ]).text,
            startedAt: RunContext.now())
        trace.append(.eval(record))
        let shell = EvalShell(plan: plan, evalID: evalID, store: store, trace: trace, client: client, loop: loop)
        // Bounded parallelism across cases: a new case starts as one finishes.
        let results = await withTaskGroup(of: [EvalResultRecord].self) { group in
            var next = 0
            func startNext() {
                guard next < plan.cases.count, !Task.isCancelled else { return }
                let index = next
                next += 1
                group.addTask(executorPreference: loop) {
                    let rows = await shell.runCase(index)
                    rows.forEach(progress.record)
                    return rows
                }
            }
            for _ in 0..<max(1, plan.parallelCases) { startNext() }
            var all: [EvalResultRecord] = []
            while let rows = await group.next() {
                all += rows
                startNext()
            }
            return all
        }
        record.status = Task.isCancelled ? "interrupted" : "finished"
        record.endedAt = RunContext.now()
        trace.append(.eval(record))
        await trace.flush()
        let ran = Set(results.map(\.caseID))
        return EvalReport(eval: record, variants: plan.variants, results: results, caseOrder: plan.cases.map(\.id).filter(ran.contains))
    }
}

/// What running one case needs; the I/O side of the eval.
struct EvalShell: Sendable {
    let plan: EvalPlan
    let evalID: String
    let store: any TraceBackend
    let trace: TraceWriter
    let client: HTTPClient
    let loop: EventLoop

    /// The case's runs, one per variant in order (as-configured first, the base of the
    /// others' forks under --reuse-plan), each graded and appended to the trace.
    func runCase(_ index: Int) async -> [EvalResultRecord] {
        let evalCase = plan.cases[index]
        var results: [EvalResultRecord] = []
        var baseRunID: String?
        for variant in plan.variants {
            if Task.isCancelled { break }
            let context: JSONValue = ["id": .string(evalID), "case": .string(evalCase.id), "variant": .string(variant.name)]
            let summary: RunSummary
            if let point = plan.reusePoint, let base = baseRunID {
                do {
                    await trace.flush()
                    let fork = Replayer.Fork(liveFrom: point, modelSwaps: variant.swaps, client: client)
                    summary = try await Replayer.replay(
                        base, store: store, project: plan.project, trace: trace, loop: loop, progress: RunProgress(),
                        fork: fork, maxParallel: plan.maxParallel, evalContext: context,
                        approvals: plan.approvals
                    ).summary
                } catch {
                    results.append(failed(evalCase, index: index, variant: variant, error: "--reuse-plan: cannot fork run \(base): \(error)"))
                    continue
                }
            } else {
                var origin = RunOrigin()
                origin.modelSwaps = variant.swaps
                origin.evalContext = context
                origin.approvals = plan.approvals
                summary = await Orchestrator.run(
                    plan.project, inputs: evalCase.inputs, trace: trace, transport: LiveTransport(client: client),
                    recordedTransport: nil, tools: LiveTools(client: client, loop: loop), recordedTools: nil,
                    origin: origin, loop: loop, maxParallel: plan.maxParallel, progress: RunProgress(),
                    runID: Orchestrator.newRunID())
            }
            // A run stopped by Ctrl-C says nothing about the variant: it is left out, not failed.
            if summary.status == .interrupted && Task.isCancelled { break }
            if variant == .asConfigured { baseRunID = summary.runID }
            let result = await grade(evalCase, index: index, variant: variant, summary: summary, context: context)
            trace.append(.evalResult(result))
            results.append(result)
        }
        return results
    }

    private func failed(_ evalCase: EvalCase, index: Int, variant: EvalVariant, error: String) -> EvalResultRecord {
        let result = EvalResultRecord(
            evalID: evalID, variant: variant.name, caseID: evalCase.id, caseIndex: index, runID: nil,
            runStatus: RunStatus.failed.rawValue, passed: false, score: 0, gradesJSON: "[]", error: error,
            cost: 0, tokensIn: 0, tokensOut: 0, calls: 0, latencyMs: 0, modelSteps: 0, escalatedSteps: 0)
        trace.append(.evalResult(result))
        return result
    }

    /// Grades a finished run and measures it from its trace: steps that called a model,
    /// those that escalated, and (in a fork) the reused plan's calls at their recorded price.
    private func grade(_ evalCase: EvalCase, index: Int, variant: EvalVariant, summary: RunSummary, context: JSONValue) async -> EvalResultRecord {
        await trace.flush()
        let runID = summary.runID
        let measured = try? await OffLoop.run { () throws -> (steps: Int, escalated: Int, reusedCost: Double, routes: [String: String?]) in
            let calls = try store.modelCalls(ofRun: runID)
            let events = try store.events(ofRun: runID)
            let escalated = Set(events.filter { $0.isKind(.escalated) }.compactMap(\.stepPath))
            let reused = calls.filter { $0.url.hasPrefix("replay:") }.map { call in
                plan.project.config.models[call.model]?.cost(tokensIn: call.tokensIn, tokensOut: call.tokensOut).dollars ?? 0
            }
            return (Set(calls.map(\.stepPath)).count, escalated.count, reused.reduce(0, +), events.chosenRoutes)
        }
        let output = summary.status == .succeeded ? summary.output : nil
        var grades: [Grade] = []
        for expectation in evalCase.expectations {
            if let grade = await expectation.gradeOffLoop(output) {
                grades.append(grade)
            } else if case .judge(let agent, let minScore, let criteria) = expectation.check, let judge = plan.judges[agent] {
                grades.append(
                    await EvalJudge(shell: self, agent: judge).grade(
                        expectation, output: output, minScore: minScore,
                        criteria: criteria, evalCase: evalCase, context: context))
            }
        }
        // A route is graded whatever became of the run: it may have chosen before a later step failed.
        grades += evalCase.routeGrades(chosen: measured?.routes ?? [:])
        let passed = summary.status == .succeeded && grades.allSatisfy(\.passed)
        let score = summary.status == .succeeded && !grades.isEmpty ? grades.map(\.score).reduce(0, +) / Double(grades.count) : (passed ? 1 : 0)
        return EvalResultRecord(
            evalID: evalID, variant: variant.name, caseID: evalCase.id, caseIndex: index, runID: runID, runStatus: summary.status.rawValue,
            passed: passed, score: score, gradesJSON: JSONValue.array(grades.map(\.json)).text, error: summary.error,
            cost: summary.cost + (measured?.reusedCost ?? 0), tokensIn: summary.tokensIn, tokensOut: summary.tokensOut, calls: summary.calls,
            latencyMs: summary.elapsed.millisecondsDouble, modelSteps: measured?.steps ?? 0, escalatedSteps: measured?.escalated ?? 0)
    }
}
