import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Synchronization

/// The outcome of a run, as `chorus run` reports it.
public struct RunSummary: Sendable {
    /// The run's id in the trace: what `resume`, `replay` and `recorded` take.
    public var runID: String
    /// succeeded, failed or interrupted.
    public var status: RunStatus
    /// The output node's result; a run a budget or deadline stopped may keep a partial one.
    public var output: JSONValue?
    /// Which step produced which part of the output.
    public var provenance: JSONValue?
    /// Why it failed, one line.
    public var error: String?
    /// Why it failed, as a stable code; nil when it succeeded.
    public var errorCode: RunFailureCode?
    /// Every step that failed or was not run (cancelled, or stopped by a configuration
    /// error or the deadline), in step order, with why: in a succeeded run, the fan-out
    /// items `min_success` tolerated.
    public var failedItems: [FailedItem]
    /// Tokens read over every call of the run.
    public var tokensIn: Int
    /// Tokens written over every call of the run.
    public var tokensOut: Int
    /// US dollars, from the models' prices in chorus.json.
    public var cost: Double
    /// Model requests made, retries and escalations included (a replay counts the calls it served).
    public var calls: Int
    /// Steps taken from the run this one resumes.
    public var reusedSteps = 0
    /// Wall time from start to finish.
    public var elapsed: Duration

    /// The `--json` form.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "run_id": .string(runID), "status": .string(status.rawValue),
            "usage": ["tokens_in": .number(Double(tokensIn)), "tokens_out": .number(Double(tokensOut)), "calls": .number(Double(calls))],
            "cost": .number((cost * 1_000_000).rounded() / 1_000_000),
            "elapsed_s": .number(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18),
        ]
        if let output { object["output"] = output }
        // A run a budget stopped keeps what its finished steps made: partial, and said so.
        if output != nil && status != .succeeded { object["partial"] = true }
        if let provenance { object["provenance"] = provenance }
        if let error { object["error"] = .string(error) }
        if let errorCode { object["error_code"] = .string(errorCode.description) }
        if !failedItems.isEmpty {
            object["failed_items"] = .array(failedItems.map { ["step": .string($0.step), "reason": .string($0.reason)] })
        }
        if reusedSteps > 0 { object["reused_steps"] = .number(Double(reusedSteps)) }
        return .object(object)
    }
}

/// A step that did not succeed, and why (one line).
public struct FailedItem: Sendable, Equatable {
    /// The step's path (`research/round-1/7`).
    public var step: String
    /// Why, one line.
    public var reason: String

    /// A failed step and its reason.
    public init(step: String, reason: String) {
        self.step = step
        self.reason = reason
    }
}

/// Runs a loaded project end to end: opens a run in the trace, executes the graph on the
/// loop, records the result. Cancelling the calling task interrupts the run: no new calls
/// start, calls in flight are cancelled, the run is marked interrupted and the trace flushed.
package enum Orchestrator {
    /// A new sortable run id: UTC start time plus 24 random bits.
    package static func newRunID() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let stamp = formatter.string(from: Date())
        // An eval starts hundreds of runs a second in one process: never the same id twice
        // (a second run under an id would overwrite the first's row).
        while true {
            let id = stamp + "-" + String(format: "%06x", UInt32.random(in: 0..<(1 << 24)))
            if issuedIDs.withLock({ $0.insert(id).inserted }) { return id }
        }
    }

    private static let issuedIDs = Mutex<Set<String>>([])

    /// Runs `project` with `inputs`, calling models through `client`; every step goes to `trace`.
    /// With a `deadline`, a run still going when it passes stops as Ctrl-C stops it, and
    /// fails saying so (the finished steps stay in the trace; `chorus resume` continues it).
    package static func run(
        _ project: Project, inputs: JSONValue, trace: TraceWriter, client: HTTPClient, loop: EventLoop,
        maxParallel: Int, progress: RunProgress, runID: String = newRunID(), deadline: Duration? = nil,
        budget: Budget = Budget(), sharing: StepSharing? = nil
    ) async -> RunSummary {
        await run(
            project, inputs: inputs, trace: trace, transport: LiveTransport(client: client), recordedTransport: nil,
            tools: LiveTools(client: client, loop: loop), recordedTools: nil, origin: .fresh, budget: budget, loop: loop,
            maxParallel: maxParallel, progress: progress, runID: runID, deadline: deadline, sharing: sharing)
    }

    static func run(
        _ project: Project, inputs: JSONValue, trace: TraceWriter, transport: any ModelTransport,
        recordedTransport: (any ModelTransport)?, tools: any ToolTransport, recordedTools: (any ToolTransport)?,
        origin: RunOrigin, budget: Budget = Budget(), loop: EventLoop, maxParallel: Int,
        progress: RunProgress, runID: String, deadline: Duration? = nil, sharing: StepSharing? = nil
    ) async -> RunSummary {
        let started = ContinuousClock.now
        var run = RunRecord(
            id: runID, workflow: project.workflow.name, workflowPath: project.workflow.path,
            inputsJSON: inputs.text, startedAt: RunContext.now())
        run.parentRunID = origin.parent
        run.relation = origin.relation
        run.configPath = project.config.path
        trace.append(.run(run))
        // The file's budget, overridden by the command line's; a resume starts from what its
        // parent (and, through the parent's totals, its ancestors) already spent.
        let limits = project.workflow.budget.overridden(by: budget)
        // On PostgreSQL, limits and budgets hold across every process on the database.
        let coordination = trace.backend?.location.openCoordination()
        // A shared run: its agent steps go to the step table, and an executor here runs its share of them.
        var shared: (dispatcher: StepDispatcher, executor: StepExecutor)?
        var sharingNote: String?
        if let sharing, let backend = trace.backend {
            do {
                let spent = origin.spent
                try await OffLoop.run {
                    if let budgets = coordination?.budgets { try sharing.openBudgets(project, run: limits, spent: spent, in: budgets) }
                    try sharing.queue.open(
                        runKey: sharing.runKey, runID: runID, workflowPath: project.workflow.path,
                        configPath: project.config.path, budgetJSON: limits.isLimited ? limits.json.text : nil)
                }
                shared = (
                    StepDispatcher(sharing: sharing, loop: loop),
                    StepExecutor(
                        sharing: sharing, project: project, runID: runID, backend: backend, coordination: coordination, transport: transport,
                        tools: tools, ownsTools: false, loop: loop, maxParallel: maxParallel, approvals: origin.approvals,
                        budget: limits)
                )
            } catch {
                sharingNote = "steps not shared: the step table could not be reached (\(error)); every step runs here"
            }
        }
        // A shared run's budgets are rows every worker spends from (the coordinator's own steps too).
        let rows =
            shared == nil
            ? nil
            : sharing.flatMap { sharing in
                coordination.map { SharedBudgetRows(budgets: $0.budgets, runKey: sharing.runKey, holder: sharing.owner) }
            }
        let ledger = limits.isLimited ? BudgetLedger(budget: limits, loop: loop, alreadySpent: origin.spent, shared: rows?.ledger("run")) : nil
        let context = RunContext(
            loop: loop, transport: transport, recordedTransport: recordedTransport, tools: tools,
            recordedTools: recordedTools, origin: origin, trace: trace,
            runID: runID, project: project, maxParallel: maxParallel, progress: progress, ledger: ledger,
            dispatcher: shared?.dispatcher, coordination: coordination, sharedBudgets: rows)
        var startDetail: [String: JSONValue] = ["workflow": .string(project.workflow.name), "inputs": inputs]
        if limits.isLimited { startDetail["budget"] = limits.json }
        let nodeBudgets = project.workflow.nodes.filter { $0.value.budget.isLimited }.mapValues(\.budget.json)
        if !nodeBudgets.isEmpty { startDetail["node_budgets"] = .object(nodeBudgets) }
        let modelBudgets = project.config.models.filter { $0.value.budget.isLimited }.mapValues(\.budget.json)
        if !modelBudgets.isEmpty { startDetail["model_budgets"] = .object(modelBudgets) }
        if !origin.modelSwaps.isEmpty { startDetail["model_swaps"] = .object(origin.modelSwaps.mapValues { .string($0) }) }
        if let eval = origin.evalContext { startDetail["eval"] = eval }
        let evalApproved = origin.approvals.values.filter { $0.by == "chorus eval" }.map(\.node).sorted()
        if !evalApproved.isEmpty { startDetail["approved_by_eval"] = .array(evalApproved.map { .string($0) }) }
        if let unverified = origin.unverified { startDetail["unverified_source"] = .string(unverified) }
        startDetail["pricing"] = Counterfactual.pricing(project, swaps: origin.modelSwaps)
        // The data labels each node's requests carry, kept with the run: a fine-tuning export
        // drawn from the trace later leaves labelled answers out without the files at hand.
        // Every node is listed, so one missing reads as unknown rather than clean.
        startDetail[FineTuneExport.labelsKey] = .object(context.nodeLabels.mapValues { JSONValue.array($0.keys.sorted().map { .string($0) }) })
        if let parent = origin.parent, let relation = origin.relation {
            startDetail["parent"] = .string(parent)
            startDetail["relation"] = .string(relation.rawValue)
        }
        if let sharing {
            startDetail["shared"] =
                shared != nil
                ? .object(["key": .string(sharing.runKey), "coordinator": .string(sharing.owner)])
                : .object(["key": .string(sharing.runKey), "off": .string(sharingNote ?? "")])
        }
        context.event(.runStarted(.object(startDetail)))
        if let sharingNote { progress.log(sharingNote) }
        let workDone = OnceFlag()
        let executorTask = shared.map { shared in
            Task(executorPreference: loop) { await shared.executor.run { !workDone.isSet } }
        }
        var summary = RunSummary(runID: runID, status: .failed, failedItems: [], tokensIn: 0, tokensOut: 0, cost: 0, calls: 0, elapsed: .zero)
        let work = Task(executorPreference: loop) {
            try await WorkflowRunner(context: context, inputs: inputs).run()
        }
        let expired = OnceFlag()
        let timer = deadline.map { limit in
            Task(executorPreference: loop) {
                guard (try? await loop.sleep(for: limit)) != nil else { return }
                expired.set()
                work.cancel()
            }
        }
        defer { timer?.cancel() }
        var completed = false
        var thrown = ""
        var interrupted = false
        do {
            let result = try await work.valueCancellingWithCaller()
            // A signal during a wait (for budget room, a limiter, a slot) lets the steps end
            // as not run: the run was interrupted, whatever min_success made of them.
            // (A signal after every step finished leaves a complete run complete.)
            if Task.isCancelled && !expired.isSet && !context.failures.sorted.isEmpty { throw CancellationError() }
            completed = true
            summary.output = result.value
            summary.provenance = result.provenance
            run.outputJSON = result.value.text
        } catch {
            interrupted = !expired.isSet && (Task.isCancelled || error is CancellationError)
            thrown = "\(error)"
            // A write that failed after the last step raises its stop here.
            _ = context.stopIfTheTraceFailed()
        }
        let failedSteps = context.failures.sorted.count
        if let stop = RunStop.ending(
            completed: completed, raised: context.circuit.stop, expired: expired.isSet ? deadline : nil,
            interrupted: interrupted, waiting: context.approvals.waiting,
            failedSteps: failedSteps, error: thrown)
        {
            summary.status = stop.status
            summary.errorCode = stop.code
            summary.error = stop.message(runID: runID, completed: completed, failedSteps: failedSteps)
            run.error = summary.error
            run.outputJSON = nil
            // A budget's partial output is the run's output; a paused run has none yet.
            if case .approval = stop { summary.output = nil }
        } else {
            summary.status = .succeeded
        }
        workDone.set()
        await executorTask?.value
        if let sharing, shared != nil {
            let status = summary.status.rawValue
            // Done even when the run was cancelled (Ctrl-C): executors elsewhere stop leasing its steps.
            _ = try? await OffLoop.runToCompletion { try sharing.queue.close(runKey: sharing.runKey, status: status) }
        }
        await tools.finish()
        await recordedTools?.finish()
        summary.failedItems = context.failures.sorted
        let totals = progress.snapshot()
        summary.tokensIn = totals.tokensIn
        summary.tokensOut = totals.tokensOut
        summary.cost = totals.cost
        summary.calls = totals.calls
        summary.reusedSteps = totals.reusedSteps
        summary.elapsed = ContinuousClock.now - started
        run.status = summary.status
        run.endedAt = RunContext.now()
        run.tokensIn = totals.tokensIn
        run.tokensOut = totals.tokensOut
        run.cost = totals.cost
        trace.append(.run(run))
        context.event(.runEnded(summary.status, error: summary.error, code: summary.errorCode?.description))
        await trace.flush()
        return summary
    }
}

/// A flag set once, read from any thread (the deadline passed; the run's work ended).
private final class OnceFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}

extension Duration {
    /// `90s`, `2m`, `1h30m`, `250ms`: how a deadline is written and shown.
    public var shortText: String {
        let ms = Int64(components.seconds) * 1000 + components.attoseconds / 1_000_000_000_000_000
        if ms % 1000 != 0 || ms < 1000 { return "\(ms)ms" }
        var seconds = ms / 1000
        var text = ""
        if seconds >= 3600 { text += "\(seconds / 3600)h"; seconds %= 3600 }
        if seconds >= 60 { text += "\(seconds / 60)m"; seconds %= 60 }
        if seconds > 0 || text.isEmpty { text += "\(seconds)s" }
        return text
    }

    /// Parses `90s`, `2m`, `1h30m`, `250ms` or a plain number of seconds; nil for anything else
    /// (and for values past a year, which no run should wait for).
    public init?(shortText text: String) {
        var rest = Substring(text)
        var total: Double = 0
        if let plain = Double(rest) { total = plain; rest = "" }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            guard let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            switch unit {
            case "ms": total += number / 1000
            case "s": total += number
            case "m": total += number * 60
            case "h": total += number * 3600
            default: return nil
            }
        }
        guard total.isFinite, total > 0, total <= 366 * 86_400 else { return nil }
        self = .milliseconds(Int64(total * 1000))
    }
}

extension Task where Failure == Error {
    /// The task's value; cancelling the awaiting task cancels this one.
    func valueCancellingWithCaller() async throws -> Success {
        try await withTaskCancellationHandler {
            try await value
        } onCancel: {
            cancel()
        }
    }
}
