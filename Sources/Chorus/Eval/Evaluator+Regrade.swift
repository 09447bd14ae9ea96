import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

extension Evaluator {
    /// Re-grades a recorded eval with the dataset as it is now, making no model call: each
    /// case's recorded output is graded again, and a judge's verdict comes from replaying
    /// its recorded run (a judge whose agent or inputs changed cannot be replayed, and its
    /// grade fails saying so). Cases no longer in the dataset are left out; new ones have
    /// no run to grade. The re-grade is an eval of its own, linked to its source.
    public static func regrade(
        _ source: EvalRecord, plan: EvalPlan, evalID: String, store: any TraceBackend, trace: TraceWriter,
        loop: EventLoop
    ) async throws -> EvalReport {
        let recorded = try await OffLoop.run { try store.evalResults(of: source.id) }
        var record = EvalRecord(
            id: evalID, workflow: source.workflow, workflowPath: source.workflowPath, casesPath: plan.casesPath,
            casesDigest: plan.casesDigest, configPath: plan.project.config.path, variantsJSON: source.variantsJSON,
            optionsJSON: JSONValue.object(["regrade_of": .string(source.id)]).text, startedAt: RunContext.now(),
            sourceEvalID: source.id)
        trace.append(.eval(record))
        let cases = Dictionary(plan.cases.enumerated().map { ($0.element.id, ($0.offset, $0.element)) }, uniquingKeysWith: { a, _ in a })
        var results: [EvalResultRecord] = []
        for old in recorded {
            guard let (index, evalCase) = cases[old.caseID] else { continue }
            if Task.isCancelled { break }
            let run = try await OffLoop.run { try old.runID.flatMap { try store.run(matching: $0) } }
            let output = run?.status == .succeeded ? run?.outputJSON.flatMap { try? JSONValue(parsing: $0) } : nil
            let oldGrades = ((try? JSONValue(parsing: old.gradesJSON))?.arrayValue ?? []).compactMap(Grade.init(json:))
            var grades: [Grade] = []
            for expectation in evalCase.expectations {
                if run == nil {
                    grades.append(Grade(expectation: expectation.summary, passed: false, reason: "the run is no longer in the trace (pruned?)"))
                } else if let grade = await expectation.gradeOffLoop(output) {
                    grades.append(grade)
                } else if case .judge(let name, let minScore, _) = expectation.check {
                    grades.append(
                        await replayJudge(
                            expectation, agent: plan.judges[name], minScore: minScore, output: output,
                            recorded: oldGrades.first { $0.expectation == expectation.summary || $0.expectation == Self.legacySummary(expectation) }?
                                .judgeRunID,
                            plan: plan, store: store, trace: trace, loop: loop))
                }
            }
            if !evalCase.routes.isEmpty {
                let runID = old.runID ?? ""
                let events = run == nil ? nil : try? await OffLoop.run { try store.events(ofRun: runID) }
                grades += evalCase.routeGrades(chosen: events?.chosenRoutes)
            }
            var result = old
            result.evalID = evalID
            result.caseIndex = index
            result.passed = run?.status == .succeeded && grades.allSatisfy(\.passed)
            result.score = run?.status != .succeeded ? 0 : grades.isEmpty ? 1 : grades.map(\.score).reduce(0, +) / Double(grades.count)
            result.gradesJSON = JSONValue.array(grades.map(\.json)).text
            trace.append(.evalResult(result))
            results.append(result)
        }
        record.status = Task.isCancelled ? "interrupted" : "finished"
        record.endedAt = RunContext.now()
        trace.append(.eval(record))
        await trace.flush()
        let variants = ((try? JSONValue(parsing: source.variantsJSON))?.arrayValue ?? []).compactMap(EvalVariant.init(json:))
        return EvalReport(
            eval: record, variants: variants, results: results, caseOrder: plan.cases.map(\.id).filter { id in results.contains { $0.caseID == id } })
    }

    /// How a judge expectation was worded before "must pass it" (evals recorded then still re-grade).
    static func legacySummary(_ expectation: EvalExpectation) -> String? {
        guard case .judge(let agent, let minScore, _) = expectation.check else { return nil }
        return "judge \(agent) passes it" + (minScore > 0 ? " with score ≥ \(EvalExpectation.format(minScore))" : "")
    }

    private static func replayJudge(
        _ expectation: EvalExpectation, agent: AgentSpec?, minScore: Double, output: JSONValue?, recorded: String?,
        plan: EvalPlan, store: any TraceBackend, trace: TraceWriter, loop: EventLoop
    ) async -> Grade {
        guard output != nil else { return Grade(expectation: expectation.summary, passed: false, reason: "no output") }
        guard let agent, let recorded else {
            return Grade(
                expectation: expectation.summary, passed: false,
                reason: "no recorded verdict of this judge on this case: chorus eval (not --replay) grades it with a model call")
        }
        let project = EvalJudge.project(agent, judging: plan.project)
        do {
            let report = try await Replayer.replay(recorded, store: store, project: project, trace: trace, loop: loop, progress: RunProgress())
            if let divergence = report.divergence {
                return Grade(
                    expectation: expectation.summary, passed: false,
                    reason: "the judge changed since run \(recorded) (\(divergence.reason)): chorus eval grades with it anew",
                    judgeRunID: report.summary.runID)
            }
            return EvalJudge.verdict(expectation, summary: report.summary, minScore: minScore)
        } catch {
            return Grade(expectation: expectation.summary, passed: false, reason: "cannot replay judge run \(recorded): \(error)")
        }
    }
}
