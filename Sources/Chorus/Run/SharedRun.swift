import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Synchronization

/// How a run shares its steps with the workers of every machine (`chorus worker`): its
/// key in the step table, the queue, and this process's name for leases.
public struct StepSharing: Sendable {
    /// The run's key in the step table: the id of its first run.
    public var runKey: String
    /// The step table (PostgreSQL's, from the trace database's coordination).
    public var queue: any SharedStepQueue
    /// Who leases (host:pid:random), for the step table and the trace.
    public var owner: String
    /// How long a lease holds unless renewed: a worker that died gives its steps back after this.
    public var leaseSeconds: Double

    /// Sharing for the run `runKey`, leased as `owner`.
    public init(runKey: String, queue: any SharedStepQueue, owner: String, leaseSeconds: Double = 30) {
        self.runKey = runKey
        self.queue = queue
        self.owner = owner
        self.leaseSeconds = leaseSeconds
    }

    /// Opens the run's budgets as rows (the run's, each node's and each model's that sets
    /// one): a coordinator starting the run, or taking it over (what was spent stays).
    func openBudgets(
        _ project: Project, run limits: Budget, spent: (microUSD: Int64, tokens: Int, calls: Int),
        in budgets: any SharedBudgets
    ) throws {
        var all: [(String, Budget, (Int64, Int, Int))] = []
        if limits.isLimited { all.append(("run", limits, spent)) }
        for (id, node) in project.workflow.nodes where node.budget.isLimited { all.append(("node/\(id)", node.budget, (0, 0, 0))) }
        for (name, model) in project.config.models where model.budget.isLimited { all.append(("model/\(name)", model.budget, (0, 0, 0))) }
        for (scope, budget, spent) in all {
            try budgets.open(
                key: "\(runKey)/\(scope)", limitMicroUSD: budget.microUSD, limitTokens: budget.tokens, limitCalls: budget.calls,
                spent: spent)
        }
    }
}

/// Where a shared run's budgets are: rows under the run's key.
struct SharedBudgetRows: Sendable {
    let budgets: any SharedBudgets
    let runKey: String
    let holder: String

    func ledger(_ scope: String) -> BudgetLedger.Shared {
        BudgetLedger.Shared(budgets: budgets, key: "\(runKey)/\(scope)", holder: holder)
    }
}

/// The coordinator's side of a shared run: each agent step becomes a row of the step
/// table (enqueued in batches), and results come back by polling for done rows. The
/// planning stays here, in the scheduler; what it knows is in the database (the trace and
/// the step table), so a coordinator that takes over (a resume) continues from there.
final class StepDispatcher: Sendable {
    let sharing: StepSharing
    private let loop: EventLoop
    private struct State {
        var waiting: [String: CheckedContinuation<FinishedSharedStep?, Never>] = [:]
        var arrived: [String: FinishedSharedStep] = [:]
        var toEnqueue: [SharedStep] = []
        var flushing = false
        var polling = false
        var failure: String?
    }
    private let state = Mutex(State())

    init(sharing: StepSharing, loop: EventLoop) {
        self.sharing = sharing
        self.loop = loop
    }

    /// Why the step table could not be reached, once it could not.
    var failure: String? { state.withLock { $0.failure } }

    /// Enqueues `step` and waits for its result; nil when cancelled or the table failed.
    func run(_ step: SharedStep) async -> FinishedSharedStep? {
        let path = step.path
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<FinishedSharedStep?, Never>) in
                let (flush, poll, early) = state.withLock { s -> (Bool, Bool, FinishedSharedStep??) in
                    if let arrived = s.arrived.removeValue(forKey: path) { return (false, false, .some(arrived)) }
                    if s.failure != nil { return (false, false, .some(nil)) }
                    s.waiting[path] = continuation
                    s.toEnqueue.append(step)
                    let flush = !s.flushing
                    s.flushing = true
                    let poll = !s.polling
                    s.polling = true
                    return (flush, poll, nil)
                }
                if let early { continuation.resume(returning: early); return }
                if flush { Task(executorPreference: loop) { await self.flushEnqueued() } }
                if poll { Task(executorPreference: loop) { await self.poll() } }
            }
        } onCancel: {
            let continuation = state.withLock { $0.waiting.removeValue(forKey: path) }
            continuation?.resume(returning: nil)
        }
    }

    /// Sends what was enqueued since the last flush in one statement (a fan-out of 2,000
    /// items is a few round trips, not 2,000).
    private func flushEnqueued() async {
        await Task.yield()  // let the rest of a fan-out's items join this batch
        while true {
            let batch = state.withLock { s -> [SharedStep] in
                let batch = s.toEnqueue
                s.toEnqueue.removeAll()
                if batch.isEmpty { s.flushing = false }
                return batch
            }
            if batch.isEmpty { return }
            let (queue, key) = (sharing.queue, sharing.runKey)
            do {
                let done = try await OffLoop.run { try queue.enqueue(runKey: key, batch, now: Date().timeIntervalSince1970) }
                deliver(done)
            } catch {
                fail("\(error)")
                return
            }
        }
    }

    /// Collects done steps while any are awaited: every 5 ms while results come, backing
    /// off to 50 ms while none do.
    private func poll() async {
        var backoff = Backoff(upTo: .milliseconds(50))
        while true {
            let idle = state.withLock { s in
                if s.waiting.isEmpty { s.polling = false }
                return s.waiting.isEmpty
            }
            if idle { return }
            do { try await loop.sleep(for: backoff.pause) } catch {
                state.withLock { $0.polling = false }
                return
            }
            let (queue, key) = (sharing.queue, sharing.runKey)
            do {
                let done = try await OffLoop.run { try queue.collect(runKey: key) }
                deliver(done)
                if done.isEmpty { backoff.grow() } else { backoff.reset() }
            } catch {
                fail("\(error)")
                state.withLock { $0.polling = false }
                return
            }
        }
    }

    private func deliver(_ done: [FinishedSharedStep]) {
        for finished in done {
            let continuation = state.withLock { s -> CheckedContinuation<FinishedSharedStep?, Never>? in
                if let waiter = s.waiting.removeValue(forKey: finished.path) { return waiter }
                s.arrived[finished.path] = finished
                return nil
            }
            continuation?.resume(returning: finished)
        }
    }

    private func fail(_ reason: String) {
        let waiters = state.withLock { s in
            s.failure = s.failure ?? reason
            let all = Array(s.waiting.values)
            s.waiting.removeAll()
            return all
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }
}

/// Runs shared steps leased from the step table, in any process: the coordinator runs one
/// for its own run, and `chorus worker` starts one (`chorus steps`) for each run another
/// worker coordinates. Each step runs through the same `AgentCaller` as in a one-process
/// run (guards, data boundary, limits shared through the database, escalation, tools);
/// its records are staged, not chained, and handed to the coordinator with the result.
package final class StepExecutor: Sendable {
    private let sharing: StepSharing
    private let context: RunContext
    private let staging: StagedSteps
    private let maxParallel: Int
    private struct State {
        var held: Set<String> = []
        var stopping = false
        var executed = 0
        var lastActivity = ContinuousClock.now
        /// Results waiting to be completed, in one statement for all of them.
        var completing: [(path: String, json: String, continuation: CheckedContinuation<Bool, Never>)] = []
        var flushing = false
        /// Steps cut short by stopping, to hand back.
        var handBack: [String] = []
        var handedBack = 0
    }
    private let state = Mutex(State())
    /// Signalled when a step ends: a full executor leases again at once.
    private let roomFreed: Wakeup

    /// Whether `run` finishes the tools when it ends (not when the coordinator shares its own).
    private let ownsTools: Bool

    /// An executor of `runID`'s steps (the run `sharing.runKey` names now). Its records go
    /// to `backend` through a staging session.
    package convenience init(
        sharing: StepSharing, project: Project, runID: String, backend: any TraceBackend, client: HTTPClient,
        loop: EventLoop, maxParallel: Int, approvals: [String: ApprovalDecision] = [:], budget: Budget = Budget()
    ) {
        self.init(
            sharing: sharing, project: project, runID: runID, backend: backend, coordination: backend.location.openCoordination(),
            transport: LiveTransport(client: client),
            tools: LiveTools(client: client, loop: loop), ownsTools: true, loop: loop, maxParallel: maxParallel, approvals: approvals,
            budget: budget)
    }

    init(
        sharing: StepSharing, project: Project, runID: String, backend: any TraceBackend, coordination: (any Coordination)?,
        transport: any ModelTransport,
        tools: any ToolTransport, ownsTools: Bool, loop: EventLoop, maxParallel: Int, approvals: [String: ApprovalDecision],
        budget: Budget
    ) {
        self.ownsTools = ownsTools
        roomFreed = Wakeup(loop: loop)
        let staging = StagedSteps()
        let writer = TraceWriter(backend: backend) { try backend.makeWriteSession(staging: staging) }
        var origin = RunOrigin()
        origin.approvals = approvals
        self.staging = staging
        // A connection of its own: the coordinator's dispatcher polls on the one it was given.
        var own = sharing
        own.queue = coordination?.stepQueue() ?? sharing.queue
        self.sharing = own
        self.maxParallel = maxParallel
        // The run's budgets are the coordinator's rows: every executor spends from them.
        let rows = coordination.map { SharedBudgetRows(budgets: $0.budgets, runKey: sharing.runKey, holder: sharing.owner) }
        let ledger = budget.isLimited ? BudgetLedger(budget: budget, loop: loop, shared: rows?.ledger("run")) : nil
        context = RunContext(
            loop: loop, transport: transport, recordedTransport: nil,
            tools: tools, recordedTools: nil, origin: origin, trace: writer,
            runID: runID, project: project, maxParallel: maxParallel, progress: RunProgress(), ledger: ledger,
            coordination: coordination, sharedBudgets: rows)
    }

    /// Approvals recorded on `runID` and its ancestors, for an executor of it.
    package static func approvals(of runID: String, store: any TraceBackend) -> [String: ApprovalDecision] {
        (try? ApprovalDecision.lineage(of: runID, store: store)) ?? [:]
    }

    /// Steps this executor finished.
    package var executed: Int { state.withLock { $0.executed } }
    /// Steps it handed back when it stopped.
    package var handedBack: Int { state.withLock { $0.handedBack } }

    /// How long it has held no step and leased none.
    package var idleFor: Duration {
        state.withLock { $0.held.isEmpty ? ContinuousClock.now - $0.lastActivity : .zero }
    }

    /// Leases and runs steps until `keepGoing` says stop (checked between leases) or the
    /// task is cancelled; then hands back what it holds, finishes its tools and closes its
    /// writer. Steps finishing while it stops are still completed.
    package func run(keepGoing: @escaping @Sendable () async -> Bool) async {
        let (queue, key, owner, seconds) = (sharing.queue, sharing.runKey, sharing.owner, sharing.leaseSeconds)
        var lastRenewal = ContinuousClock.now
        var backoff = Backoff(upTo: .milliseconds(50))
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled, await keepGoing() {
                let room = maxParallel - state.withLock { $0.held.count }
                var leased: [SharedStep] = []
                if room > 0 {
                    // Leases the stop abandons are handed back (else they would wait out their lapse).
                    leased =
                        (try? await OffLoop.run(
                            {
                                try queue.lease(runKey: key, owner: owner, limit: min(room, 64), seconds: seconds, now: Date().timeIntervalSince1970)
                            }, undo: { steps in try? queue.giveBack(runKey: key, paths: steps.map(\.path), owner: owner) })) ?? []
                }
                if Task.isCancelled {
                    state.withLock { $0.handBack += leased.map(\.path) }
                    break
                }
                for step in leased {
                    state.withLock {
                        $0.held.insert(step.path); $0.lastActivity = .now
                    }
                    group.addTask(executorPreference: context.loop) { await self.execute(step) }
                }
                if ContinuousClock.now - lastRenewal >= .milliseconds(Int64(seconds * 1000 / 3)) {
                    lastRenewal = .now
                    let paths = state.withLock { Array($0.held) }
                    _ = try? await OffLoop.run { try queue.renew(runKey: key, paths: paths, owner: owner, seconds: seconds, now: Date().timeIntervalSince1970) }
                }
                if room <= 0 {
                    // Full: wait for a step to end (or 50 ms, for renewals and the stop check).
                    // Waiting out the table's back-off instead held a full executor idle for up
                    // to 50 ms a step: 1,075 steps/s where 100 calls of 50 ms allow 2,000.
                    await roomFreed.wait(upTo: .milliseconds(50))
                } else if leased.isEmpty {
                    // Nothing to lease: back off, 5 ms doubling to 50 ms.
                    guard (try? await context.loop.sleep(for: backoff.pause)) != nil else { break }
                    backoff.grow()
                } else {
                    backoff.reset()
                }
            }
            // Stopping: no new leases; steps in flight are cancelled and handed back.
            state.withLock { $0.stopping = true }
            group.cancelAll()
        }
        let left = state.withLock { state in
            let left = Array(state.held) + state.handBack
            state.handedBack = left.count
            return left
        }
        // Off the loop, and done even when the caller was cancelled (a SIGTERM'd `chorus steps`
        // exits right after): the steps go back to the table now, not when their leases lapse.
        _ = try? await OffLoop.runToCompletion { try queue.giveBack(runKey: key, paths: left, owner: owner) }
        if ownsTools { await context.tools.live.finish() }
        await OffLoopClose.close(context.trace)
    }

    private func execute(_ task: SharedStep) async {
        defer {
            state.withLock {
                $0.held.remove(task.path); $0.lastActivity = .now
            }
            roomFreed.signal()
        }
        let step = StepRecord(
            runID: context.runID, path: task.path, node: task.node, kind: task.kind, itemIndex: task.itemIndex,
            agent: task.agent, startedAt: RunContext.now())
        var bundle: StepBundle
        if let agent = context.project.agents[task.agent], case .object(let variables)? = try? JSONValue(parsing: task.variablesJSON) {
            let outcome = await AgentCaller(context: context).run(agent, variables: variables, step: step)
            bundle = staging.take(task.path)
            bundle.halted = outcome.halted
            bundle.truncated = outcome.truncated
            bundle.cancelled = outcome.cancelled
            bundle.budgetRefusal = context.budgetRefusal
            (bundle.end, bundle.reason) =
                switch outcome.end {
                case .succeeded: (nil, nil)
                case .failed(let error): ("failed", error.reason)
                case .held(let error): ("held", error.reason)
                case .cancelled: ("cancelled", nil)
                case .notRun(let reason): ("not_run", reason)
                }
            // A step cut short by this executor stopping is handed back, not finished.
            if outcome.cancelled && (Task.isCancelled || state.withLock({ $0.stopping })) {
                state.withLock { $0.handBack.append(task.path) }
                return
            }
        } else {
            // The coordinator's project names an agent this one lacks (different files).
            var failed = step
            failed.status = .failed
            failed.endedAt = step.startedAt
            failed.error = "\(task.path): this worker's project has no agent '\(task.agent)' or cannot read the step's variables"
            bundle = StepBundle()
            bundle.steps = [failed]
        }
        guard let data = try? JSONEncoder().encode(bundle) else { return }
        if await complete(task.path, String(decoding: data, as: UTF8.self)) { state.withLock { $0.executed += 1 } }
    }

    /// Completes a step with the others finishing about now, in one statement (one round
    /// trip a step was the executor's busiest use of its connection). False when its lease
    /// was lost meanwhile.
    private func complete(_ path: String, _ json: String) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let first = state.withLock { s -> Bool in
                s.completing.append((path, json, continuation))
                defer { s.flushing = true }
                return !s.flushing
            }
            if first { Task(executorPreference: context.loop) { await self.flushCompletions() } }
        }
    }

    private func flushCompletions() async {
        await Task.yield()  // let the steps ending in this turn of the loop join
        let (queue, key, owner) = (sharing.queue, sharing.runKey, sharing.owner)
        while true {
            let batch = state.withLock { s in
                let batch = s.completing
                s.completing.removeAll()
                if batch.isEmpty { s.flushing = false }
                return batch
            }
            if batch.isEmpty { return }
            let results = batch.map { (path: $0.path, resultJSON: $0.json) }
            let done = (try? await OffLoop.run { try queue.complete(runKey: key, owner: owner, results: results, now: Date().timeIntervalSince1970) }) ?? []
            for item in batch { item.continuation.resume(returning: done.contains(item.path)) }
        }
    }
}

/// A wake-up one task waits for, with a time limit: a signal with no waiter is kept for
/// the next wait (so none is lost); a late timer only causes one early return.
final class Wakeup: Sendable {
    private let loop: EventLoop
    private let state = Mutex<(waiter: CheckedContinuation<Void, Never>?, pending: Bool)>((nil, false))

    init(loop: EventLoop) { self.loop = loop }

    func wait(upTo limit: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.pending { state.pending = false; return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume(); return }
            loop.execute { [self] in Timer.schedule(on: loop, after: limit) { [self] in signal() } }
        }
    }

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else { state.pending = true; return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}

/// Closes a trace writer without blocking the loop (close waits for its last commit).
enum OffLoopClose {
    static func close(_ writer: TraceWriter) async {
        _ = try? await OffLoop.run { writer.close() }
    }
}

extension AgentCaller {
    /// The variables `agent`'s prompts name: all a step needs to render them elsewhere (a
    /// fan-out item's variables hold every upstream output; sending them all would make
    /// the step table quadratic in the fan-out).
    static func namedVariables(_ agent: AgentSpec, _ variables: [String: JSONValue]) -> JSONValue {
        var roots = Set<String>()
        for template in [agent.system, agent.prompt].compactMap({ $0 }) {
            if let (_, names, _) = try? TemplateCache.shared.lookup(template) { roots.formUnion(names) }
        }
        return .object(variables.filter { roots.contains($0.key) })
    }

    /// A step of a shared run: enqueued for any worker's executor; its records, once done,
    /// are copied into this run's trace (bodies are already stored) and sealed by its
    /// chain, with a `step_shared` event naming the worker that ran it.
    func shared(
        _ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord, dispatcher: StepDispatcher,
        answered: @Sendable () async -> Void
    ) async -> StepOutcome {
        let task = SharedStep(
            path: step.path, node: step.node, kind: step.kind, itemIndex: step.itemIndex, agent: agent.name,
            variablesJSON: Self.namedVariables(agent, variables).text)
        guard let finished = await dispatcher.run(task) else {
            await answered()
            var outcome = StepOutcome(.cancelled)
            if let failure = dispatcher.failure {
                outcome = .failed(step.path, "the shared step table could not be reached: \(failure)")
                outcome.halted =
                    context.circuit.open(.refused("the shared step table could not be reached: \(failure)"))
                    || context.circuit.reason != nil
            }
            context.failures.record(step.path, outcome.reason ?? "cancelled")
            return outcome
        }
        guard let bundle = try? JSONDecoder().decode(StepBundle.self, from: Data(finished.resultJSON.utf8)),
            var record = bundle.steps.first(where: { $0.path == step.path })
        else {
            await answered()
            let outcome = StepOutcome.failed(step.path, "the result \(finished.doneBy) recorded cannot be read")
            context.failures.record(step.path, outcome.reason ?? "")
            return outcome
        }
        for var call in bundle.calls {
            call.runID = context.runID
            context.progress.recordCall(tokensIn: call.tokensIn, tokensOut: call.tokensOut, cost: USD(dollars: call.cost), retry: call.attempt > 1)
            context.trace.append(.copiedModelCall(call))
        }
        if !bundle.tools.isEmpty { context.progress.recordToolCalls(bundle.tools.count) }
        for var call in bundle.tools {
            call.runID = context.runID
            context.trace.append(.copiedToolCall(call))
        }
        for var sub in bundle.steps where sub.path != step.path {
            sub.runID = context.runID
            context.trace.append(.step(sub))
        }
        record.runID = context.runID
        // What the coordinator put on the step (an as_completed lead call's view) is not
        // the executor's to know.
        record.provenanceJSON = record.provenanceJSON ?? step.provenanceJSON
        context.trace.append(.step(record))
        for event in bundle.events {
            context.trace.append(.event(runID: context.runID, kind: event.kind, stepPath: event.stepPath, detailJSON: event.detailJSON, at: event.at))
        }
        context.event(.stepShared(worker: finished.doneBy, leases: finished.leases), step: step.path)
        await answered()
        await context.trace.flush()
        var outcome = StepOutcome(
            Self.end(of: record, bundle), model: record.model, attempts: record.attempts,
            tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: USD(dollars: record.cost))
        outcome.truncated = bundle.truncated
        if let refusal = bundle.budgetRefusal {
            context.refuseForBudget(refusal)
            outcome.halted = true
        } else if bundle.halted, let error = outcome.error {
            // The executor's stop switch opened (a provider refusing the key, say): the run stops as it would in one process.
            if context.circuit.open(.refused(error)) { context.progress.log(error) }
            outcome.halted = true
        }
        if context.stopIfTheTraceFailed() { outcome.halted = true }
        if let reason = outcome.reason { context.failures.record(step.path, reason) }
        return outcome
    }

    /// How a shared step ended, from its record and what its executor said of it.
    private static func end(of record: StepRecord, _ bundle: StepBundle) -> StepOutcome.End {
        let path = record.path
        if record.status == .succeeded {
            return record.outputJSON.flatMap { try? JSONValue(parsing: $0) }.map { .succeeded($0) }
                ?? .failed(StepError(path: path, reason: "the shared step's output is unreadable"))
        }
        // An executor older than `end`/`reason` stored only the record's line, which starts
        // with the path: said once, not twice.
        let line = record.error ?? "no answer"
        let reason = bundle.reason ?? (line.hasPrefix(path + ": ") ? String(line.dropFirst(path.count + 2)) : line)
        switch bundle.end {
        case "held": return .held(StepError(path: path, reason: reason))
        case "cancelled": return .cancelled
        case "not_run": return .notRun(reason)
        case "failed": return .failed(StepError(path: path, reason: reason))
        default: return bundle.cancelled || record.status == .cancelled ? .cancelled : .failed(StepError(path: path, reason: reason))
        }
    }
}
