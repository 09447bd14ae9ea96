import ChorusJSON
import ChorusTrace

/// The research loop of a `lead` node: the lead plans subtasks, workers run them in
/// parallel, their findings stream into reconciliation, and the lead sees all findings
/// so far when it plans again — until it says done, plans nothing, or
/// `max_rounds`/`max_subtasks` is reached. With `"schedule": "rounds"` it plans after each
/// whole round; with `"as_completed"` as findings arrive (`AsCompletedLead`).
struct LeadLoop {
    let runner: WorkflowRunner
    let node: NodeSpec
    let spec: LeadSpec
    let upstream: [String: NodeResult]

    private var context: RunContext { runner.context }

    func run() async throws -> NodeResult {
        var variables = upstream.mapValues(\.value)
        variables["inputs"] = runner.inputs
        let worker = try runner.agent(spec.worker, node: node.id)
        let lead = try runner.agent(spec.lead, node: node.id)
        let (findings, failed) =
            switch spec.schedule {
            case .rounds: try await rounds(lead: lead, worker: worker, variables: variables)
            case .asCompleted: try await asCompleted(lead: lead, worker: worker, variables: variables)
            }
        var result = try await runner.reconcile(node, findings: findings, upstream: upstream)
        result.failedItems = failed
        return result
    }

    private func rounds(lead: AgentSpec, worker: AgentSpec, variables: [String: JSONValue]) async throws -> ([Finding], [String]) {
        var findings: [Finding] = []
        var failed: [String] = []
        var used = 0
        for round in 1...max(1, spec.maxRounds) {
            let remaining = spec.maxSubtasks - used
            if remaining <= 0 { break }
            let plan = try await self.plan(lead, round: round, remaining: remaining, findings: findings.map(\.value), saw: nil, variables: variables)
            let batch = Array(plan.subtasks.prefix(remaining))
            if batch.isEmpty { break }
            used += batch.count
            let results = try await runner.fanOut(
                node, agent: worker, items: batch, parent: StepPath(node: node.id, .round(round)),
                variables: variables, extra: ["round": .number(Double(round))])
            findings += results.succeeded
            failed += results.failed
            if plan.done { break }
        }
        return (findings, failed)
    }

    /// What ended, in the as_completed loop.
    private enum Ended: Sendable {
        case plan(round: Int, subtasks: [JSONValue], done: Bool)
        case subtask(AsCompletedLead.Subtask, StepOutcome)
    }

    private func asCompleted(lead: AgentSpec, worker: AgentSpec, variables: [String: JSONValue]) async throws -> ([Finding], [String]) {
        let limits = AsCompletedLead.Limits(
            maxRounds: max(1, spec.maxRounds), maxSubtasks: spec.maxSubtasks, maxParallel: node.maxParallel ?? Int.max,
            replanAfter: spec.replanAfter, cancelOnDone: spec.onDone == .cancel)
        let (script, reproduced) = recording()
        var machine = AsCompletedLead(node: node.id, limits: limits, script: script, reproduced: reproduced)
        var values: [String: JSONValue] = [:]
        var failed: [String] = []
        var failures: [String: String] = [:]
        var cancelled: [String] = []
        var ran = 0
        try await withThrowingTaskGroup(of: Ended.self) { group in
            func perform(_ actions: [AsCompletedLead.Action]) {
                for action in actions {
                    switch action {
                    case .callLead(let round, let seen):
                        let findings = seen.compactMap { values[$0] }
                        let remaining = spec.maxSubtasks - machine.planned
                        group.addTask(executorPreference: context.loop) {
                            let plan = try await self.plan(lead, round: round, remaining: remaining, findings: findings, saw: seen, variables: variables)
                            return .plan(round: round, subtasks: plan.subtasks, done: plan.done)
                        }
                    case .start(let subtask):
                        context.progress.update(node.id) { $0.running += 1 }
                        let path = machine.path(of: subtask)
                        group.addTask(executorPreference: context.loop) {
                            .subtask(subtask, await work(worker, subtask, path: path, variables: variables))
                        }
                    case .cancelRunning:
                        // Only subtasks are in flight now (the lead's answer just came), and
                        // nothing is added after: the plan is done.
                        group.cancelAll()
                    }
                }
            }
            perform(machine.start())
            while let ended = try await group.next() {
                switch ended {
                case .plan(let round, let subtasks, let done):
                    let (planned, dropped) = (machine.planned, machine.dropped)
                    let actions = machine.leadAnswered(round: round, subtasks: subtasks, done: done)
                    context.progress.update(node.id) { $0.total += (machine.planned - planned) - (machine.dropped - dropped) }
                    perform(actions)
                case .subtask(let subtask, let outcome):
                    let path = machine.path(of: subtask)
                    // Only a cancellation is not a failure here: a held or refused (not run)
                    // subtask counts against min_success, as in a round.
                    let wasCancelled = if case .cancelled = outcome.end { true } else { false }
                    context.progress.update(node.id) {
                        $0.running -= 1
                        if outcome.succeeded { $0.succeeded += 1 } else if wasCancelled { $0.total -= 1 } else { $0.failed += 1 }
                    }
                    if outcome.halted { throw NodeFailure(description: outcome.error ?? "\(path) failed") }
                    let ending: AsCompletedLead.Ending
                    if let output = outcome.output {
                        values[path] = output
                        ending = .succeeded
                    } else if wasCancelled {
                        cancelled.append(path)
                        ending = .cancelled
                    } else {
                        failed.append(path)
                        failures[path] = outcome.reason ?? "failed"
                        ending = .failed
                    }
                    if !outcome.cancelled { ran += 1 }
                    perform(machine.subtaskEnded(path, ending))
                }
            }
        }
        // Subtasks the lead's done cancelled are recorded as cancelled, not listed as failed.
        context.failures.forget(Set(cancelled))
        // Reconciled in step order (round, then index), never arrival order.
        let order: (String, String) -> Bool = { a, b in
            guard let x = StepPath(a)?.place, let y = StepPath(b)?.place,
                case .worker(let r1, let i1) = x, case .worker(let r2, let i2) = y
            else { return a < b }
            return (r1, i1) < (r2, i2)
        }
        let findings = values.keys.sorted(by: order).compactMap { path in values[path].map { Finding(step: path, value: $0) } }
        let required = node.minSuccess.required(of: ran)
        if findings.count < required {
            let sample = failed.sorted(by: order).prefix(3).map { "\($0): \(failures[$0] ?? "failed")" }.joined(separator: "; ")
            throw NodeFailure(description: "\(node.id): \(findings.count) of \(ran) subtasks succeeded, min_success needs \(required); failed: \(sample)")
        }
        return (findings, failed.sorted(by: order))
    }

    /// One subtask. In a replay, a subtask recorded as cancelled (the lead said done with
    /// `on_done: cancel`) or never started (the plan was dropped, or the node failed first)
    /// ends cancelled here without a call, as it did then: which ones were still running or
    /// queued depended on the recording's timing, not on anything a replay can reproduce.
    private func work(_ worker: AgentSpec, _ subtask: AsCompletedLead.Subtask, path: String, variables: [String: JSONValue]) async -> StepOutcome {
        var step = StepRecord(
            runID: context.runID, path: path, node: node.id, kind: .item, itemIndex: subtask.index, agent: worker.name,
            startedAt: RunContext.now())
        if context.origin.isRecorded(path), (context.origin.recordedStatus[path] ?? .cancelled) == .cancelled {
            let outcome = StepOutcome(.cancelled)
            if context.origin.recordedStatus[path] != nil {
                context.trace.append(.step(outcome.finishing(step)))
                context.event(.stepFailed(error: outcome.error), step: path)
            }
            return outcome
        }
        var vars = variables
        vars["round"] = .number(Double(subtask.round))
        vars["item"] = subtask.item
        vars["subtask"] = subtask.item
        vars["index"] = .number(Double(subtask.index))
        step.itemIndex = subtask.index
        return await AgentCaller(context: context).call(worker, variables: vars, step: step)
    }

    /// The recorded views this run follows, by lead call: those whose answers come from the
    /// recording (replay, the recorded part of a fork) or were reused (resume), and a
    /// fork's first live lead call when the fork starts there (it re-plans from what the
    /// recorded call saw). And the calls whose answers come from the recording, whose
    /// `done` the replay reproduces subtask by subtask (`work`).
    private func recording() -> (script: [Int: [String]], reproduced: Set<Int>) {
        var script: [Int: [String]] = [:]
        var reproduced = Set<Int>()
        for round in 1...max(1, spec.maxRounds) {
            let path = StepPath(node: node.id, .plan(round: round)).description
            guard let view = context.origin.leadViews[path] else { continue }
            if context.origin.isRecorded(path) { reproduced.insert(round) }
            if context.origin.isRecorded(path) || context.origin.reuse[path] != nil || context.origin.startsLive(at: path) {
                script[round] = view
            }
        }
        return (script, reproduced)
    }

    /// One lead call: plans `round` with `findings` in its prompt. `saw` (as_completed) is
    /// recorded on the call's step: the finding steps its prompt held, in order.
    private func plan(
        _ lead: AgentSpec, round: Int, remaining: Int, findings: [JSONValue], saw: [String]?, variables: [String: JSONValue]
    ) async throws -> (subtasks: [JSONValue], done: Bool) {
        var planVariables = variables
        planVariables["round"] = .number(Double(round))
        planVariables["max_subtasks"] = .number(Double(remaining))
        planVariables["findings"] = .array(findings.map { .string($0.stringValue ?? $0.text) })
        if lead.names("findings_json") { planVariables["findings_json"] = .string(JSONValue.array(findings).text) }
        let planPath = StepPath(node: node.id, .plan(round: round)).description
        context.progress.update(node.id) {
            $0.total += 1; $0.running += 1
        }
        var lead = lead
        lead.requestOutputSchema = lead.outputSchema.map { Self.capping($0, subtasks: remaining) }
        var step = StepRecord(runID: context.runID, path: planPath, node: node.id, kind: .plan, agent: spec.lead, startedAt: RunContext.now())
        if let saw { step.provenanceJSON = JSONValue.object(["saw": .array(saw.map { .string($0) })]).text }
        let plan = await AgentCaller(context: context).call(lead, variables: planVariables, step: step)
        context.progress.update(node.id) {
            $0.running -= 1; if plan.succeeded { $0.succeeded += 1 } else { $0.failed += 1 }
        }
        guard let planned = plan.output else { throw NodeFailure(description: plan.error ?? "\(planPath) failed") }
        let parsed = planned.stringValue.flatMap { try? ModelAnswerParser.json(from: $0) } ?? planned
        guard let subtasks = parsed["subtasks"]?.arrayValue else {
            throw NodeFailure(description: "\(planPath): expected the lead's answer to hold a 'subtasks' array, found \(parsed.typeName)")
        }
        let kept = min(subtasks.count, max(0, remaining))
        if subtasks.count > kept { context.event(.planTruncated(planned: subtasks.count, kept: kept), step: planPath) }
        if kept > 0 { context.event(.roundPlanned(subtasks: kept), step: planPath) }
        return (subtasks, parsed["done"]?.boolValue == true)
    }

    /// The lead's schema with `maxItems` on its `subtasks` array no larger than `limit`, so
    /// `max_subtasks` binds the model (a schema-constrained server enforces it while
    /// generating) instead of being only a number in the prompt. Sent, not enforced: a
    /// longer plan is cut to the limit (`plan_truncated`) rather than failed.
    static func capping(_ schema: JSONValue, subtasks limit: Int) -> JSONValue {
        guard var root = schema.objectValue, var properties = root["properties"]?.objectValue,
            var subtasks = properties["subtasks"]?.objectValue
        else { return schema }
        let current = subtasks["maxItems"]?.intValue ?? limit
        subtasks["maxItems"] = .number(Double(max(0, min(current, limit))))
        properties["subtasks"] = .object(subtasks)
        root["properties"] = .object(properties)
        return .object(root)
    }
}
