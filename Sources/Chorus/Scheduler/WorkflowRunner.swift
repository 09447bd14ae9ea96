import ChorusIO
import ChorusJSON
import ChorusTrace

/// Where fan-out results land as they complete (on the loop thread), in item order.
private final class FanOutCollector: @unchecked Sendable {
    var slots: [Finding?]
    var failed: [(Int, String)] = []
    let group: StepPath
    let node: String
    let progress: RunProgress

    init(count: Int, group: StepPath, node: String, progress: RunProgress) {
        slots = Array(repeating: nil, count: count)
        self.group = group
        self.node = node
        self.progress = progress
    }

    func record(_ index: Int, _ outcome: StepOutcome) {
        progress.update(node) {
            $0.running -= 1
            if outcome.succeeded { $0.succeeded += 1 } else { $0.failed += 1 }
        }
        if let output = outcome.output {
            slots[index] = Finding(step: group.member(index).description, value: output)
        } else {
            failed.append((index, outcome.reason ?? "failed"))
        }
    }
}

/// A node's result: the value downstream sees and the findings it was made of.
struct NodeResult: Sendable {
    var value: JSONValue
    var findings: [Finding]
    var provenance: JSONValue?
    var failedItems: [String] = []
    /// Why the node did not run (its `when` was false, or every node it depends on was
    /// skipped); nil when it ran.
    var skipped: String?
    /// A route node's choice: the label its agent answered, and the case targets it skips.
    var route: (label: String?, skips: Set<String>)?
}

/// Why a node failed, one line naming the step.
struct NodeFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs a workflow graph on the event loop: independent nodes in parallel, each fan-out
/// item a task on the loop executor, results merged in step order (never completion
/// order) so a replay reproduces them.
struct WorkflowRunner {
    let context: RunContext
    let inputs: JSONValue

    private var workflow: WorkflowSpec { context.project.workflow }

    /// Runs every node; returns the output node's result or throws the first failure.
    func run() async throws -> NodeResult {
        var results: [String: NodeResult] = [:]
        // Each node's unfinished dependencies, counted down as they finish (Kahn's order):
        // a finished node looks only at the nodes that need it. Checking every pending node
        // against every result on each completion was cubic in the graph's size (200 chained
        // nodes: 15% of the run's CPU went to building sets).
        var waitingOn: [String: Int] = [:]
        var dependents: [String: [String]] = [:]
        for id in workflow.nodes.keys {
            let needs = context.project.dependencies[id, default: []]
            waitingOn[id] = needs.count
            for need in needs { dependents[need, default: []].append(id) }
        }
        try await withThrowingTaskGroup(of: (String, NodeResult).self) { group in
            func launch(_ ready: [String]) {
                for id in ready.sorted() {
                    guard let node = workflow.nodes[id] else { continue }
                    let upstream = results
                    group.addTask(executorPreference: context.loop) {
                        (id, try await runNode(node, upstream: upstream))
                    }
                }
            }
            launch(waitingOn.filter { $0.value == 0 }.map(\.key))
            while let (id, result) = try await group.next() {
                results[id] = result
                var ready: [String] = []
                for next in dependents[id, default: []] {
                    waitingOn[next, default: 1] -= 1
                    if waitingOn[next] == 0 { ready.append(next) }
                }
                launch(ready)
            }
        }
        guard let output = results[workflow.output] else { throw NodeFailure(description: "output node '\(workflow.output)' never ran") }
        if let reason = output.skipped {
            throw NodeFailure(description: "output node '\(workflow.output)' was skipped (\(reason)): the run has nothing to output")
        }
        return output
    }

    private func baseVariables(_ upstream: [String: NodeResult]) -> [String: JSONValue] {
        // A skipped node has no output: its name is missing, as for a node not upstream.
        var variables = upstream.filter { $0.value.skipped == nil }.mapValues(\.value)
        variables["inputs"] = inputs
        return variables
    }

    /// The agent `name`, which `node` names.
    func agent(_ name: String, node: String) throws -> AgentSpec {
        guard let agent = context.project.agents[name] else { throw NodeFailure(description: "\(node): no agent named '\(name)'") }
        return agent
    }

    private func runNode(_ node: NodeSpec, upstream: [String: NodeResult]) async throws -> NodeResult {
        // Loading the project reports a missing property; a workflow built in code may still lack one.
        guard let work = node.work else { throw NodeFailure(description: "\(node.id): " + node.missing.joined(separator: "; ")) }
        if let reason = skipReason(node, upstream) { return skip(node, because: reason) }
        context.event(.nodeStarted, step: node.id)
        context.progress.log("node \(node.id) (\(node.kind.rawValue)) started")
        var result: NodeResult
        switch work {
        case .agent(let name):
            let agent = try agent(name, node: node.id)
            context.progress.update(node.id) {
                $0.total = 1; $0.running = 1
            }
            let outcome = await AgentCaller(context: context).call(
                agent, variables: baseVariables(upstream),
                step: StepRecord(runID: context.runID, path: node.id, node: node.id, kind: .agent, agent: name, startedAt: RunContext.now()))
            context.progress.update(node.id) {
                $0.running = 0; if outcome.succeeded { $0.succeeded = 1 } else { $0.failed = 1 }
            }
            guard let output = outcome.output else { throw NodeFailure(description: outcome.error ?? "\(node.id) failed") }
            result = NodeResult(value: output, findings: [Finding(step: node.id, value: output)])
        case .foreach(let name, let over):
            let items = try resolveArray(over, upstream: upstream, node: node.id)
            let findings = try await fanOut(
                node, agent: try agent(name, node: node.id), items: items, parent: StepPath(node: node.id, .items),
                variables: baseVariables(upstream), extra: [:])
            result = try await reconcile(node, findings: findings, upstream: upstream)
        case .lead(let spec):
            result = try await LeadLoop(runner: self, node: node, spec: spec, upstream: upstream).run()
        case .route(let spec):
            result = try await route(node, spec, upstream: upstream)
        case .reconcile(let from):
            // Over branches: those that ran, in the order `from` names them.
            let ran = from.filter { upstream[$0]?.skipped == nil }
            let findings = try ran.flatMap { source -> [Finding] in
                guard let part = upstream[source] else { throw NodeFailure(description: "\(node.id): node '\(source)' has no output") }
                return from.count == 1 && part.value.arrayValue != nil ? part.findings : [Finding(step: source, value: part.value)]
            }
            result = try await reconcile(node, findings: findings, upstream: upstream)
        }
        context.progress.update(node.id) { $0.finished = true }
        context.trace.append(.step(nodeRecord(node, result)))
        // Once in the trace, only the output node's provenance is read again (the run's
        // summary); a fan-out's is an object per item, 250 bytes each, held to the run's end.
        if node.id != workflow.output { result.provenance = nil }
        context.event(.nodeSucceeded, step: node.id)
        context.progress.log("node \(node.id) finished")
        return result
    }

    /// Why `node` is skipped, if it is: every node it depends on was skipped, or its `when`
    /// is false over what ran upstream.
    private func skipReason(_ node: NodeSpec, _ upstream: [String: NodeResult]) -> String? {
        let needs = context.project.dependencies[node.id, default: []]
        for need in needs.sorted() {
            if let route = upstream[need]?.route, route.skips.contains(node.id) {
                return "route \(need) chose " + (route.label.map { "'\($0)'" } ?? "no label")
            }
            // A route that did not run chose nothing: none of its cases runs.
            if upstream[need]?.skipped != nil, context.project.workflow.nodes[need]?.routeSpec?.targets.contains(node.id) == true {
                return "route \(need) was skipped"
            }
        }
        // What a node reads its items or parts from: with all of it skipped, nothing to do.
        if let over = node.over, let source = over.split(separator: ".").first.map(String.init), upstream[source]?.skipped != nil {
            return "the node it iterates over was skipped (\(source))"
        }
        if !node.from.isEmpty, node.from.allSatisfy({ upstream[$0]?.skipped != nil }) {
            return "every node it reconciles was skipped (\(node.from.joined(separator: ", ")))"
        }
        // The nodes a `when` reads are its to judge ("run this if that was skipped").
        let others = needs.subtracting(node.when?.roots ?? [])
        let skipped = others.filter { upstream[$0]?.skipped != nil }
        if !others.isEmpty, skipped.count == others.count {
            return "every node it depends on was skipped (\(skipped.sorted().joined(separator: ", ")))"
        }
        if let when = node.when, !when.holds(in: baseVariables(upstream)) { return "when \(when.text) is false" }
        return nil
    }

    /// A route node: its agent picks a label (the `on` field of its answer), and the case
    /// targets that label does not list are skipped by it. The answer is the node's output.
    private func route(_ node: NodeSpec, _ spec: RouteSpec, upstream: [String: NodeResult]) async throws -> NodeResult {
        let router = try agent(spec.agent, node: node.id)
        context.progress.update(node.id) {
            $0.total = 1; $0.running = 1
        }
        let outcome = await AgentCaller(context: context).call(
            router, variables: baseVariables(upstream),
            step: StepRecord(runID: context.runID, path: node.id, node: node.id, kind: .route, agent: spec.agent, startedAt: RunContext.now()))
        context.progress.update(node.id) {
            $0.running = 0; if outcome.succeeded { $0.succeeded = 1 } else { $0.failed = 1 }
        }
        guard let output = outcome.output else { throw NodeFailure(description: outcome.error ?? "\(node.id) failed") }
        let answer = output.stringValue.flatMap { try? ModelAnswerParser.json(from: $0) } ?? output
        let label = answer[spec.on]?.stringValue
        if spec.fallback == nil, label.flatMap({ spec.cases[$0] }) == nil {
            let found = answer[spec.on].map { $0.text } ?? "nothing"
            throw NodeFailure(description: "\(node.id): the answer's '\(spec.on)' is \(found), which no case lists, and the route has no default")
        }
        let runs = spec.chosen(label)
        context.event(.routeChosen(label: label, nodes: runs), step: node.id)
        var result = NodeResult(value: output, findings: [Finding(step: node.id, value: output)])
        result.route = (label, Set(spec.targets).subtracting(runs))
        return result
    }

    /// Records `node` as skipped (a step row of status skipped, saying why) and returns its
    /// result: no output, no findings, nothing counted as failed.
    private func skip(_ node: NodeSpec, because reason: String) -> NodeResult {
        var record = StepRecord(runID: context.runID, path: node.id, node: node.id, kind: StepKind(node.kind), startedAt: RunContext.now())
        record.status = .skipped
        record.endedAt = record.startedAt
        record.provenanceJSON = JSONValue.object(["skipped": .string(reason)]).text
        context.trace.append(.step(record))
        context.event(.nodeSkipped(reason: reason), step: node.id)
        context.progress.update(node.id) {
            $0.finished = true; $0.skipped = true
        }
        context.progress.log("node \(node.id) skipped: \(reason)")
        return NodeResult(value: .null, findings: [], skipped: reason)
    }

    private func nodeRecord(_ node: NodeSpec, _ result: NodeResult) -> StepRecord {
        var record = StepRecord(
            runID: context.runID, path: StepPath.result(of: node.id).description, node: node.id, kind: StepKind(node.kind), startedAt: RunContext.now())
        record.status = .succeeded
        record.endedAt = record.startedAt
        record.outputJSON = result.value.text
        var provenance = result.provenance ?? .array(result.findings.map { .object(["step": .string($0.step)]) })
        if !result.failedItems.isEmpty, case .array(let parts) = provenance {
            provenance = .object(["parts": .array(parts), "failed": .array(result.failedItems.map { .string($0) })])
        }
        record.provenanceJSON = provenance.text
        return record
    }

    func resolveArray(_ reference: String, upstream: [String: NodeResult], node: String) throws -> [JSONValue] {
        let parts = reference.split(separator: ".").map(String.init)
        var value = upstream[parts[0]]?.value ?? .null
        for key in parts.dropFirst() { value = value[key] ?? .null }
        guard let array = value.arrayValue else {
            throw NodeFailure(description: "\(node): 'over: \(reference)' is \(value.typeName), expected an array")
        }
        return array
    }

    /// Runs `agent` once per item (at most `max_parallel` at once); results stream in as
    /// they complete and are ordered by item index. Enforces `min_success`.
    func fanOut(
        _ node: NodeSpec, agent: AgentSpec, items: [JSONValue], parent: StepPath, variables: [String: JSONValue],
        extra: [String: JSONValue]
    ) async throws -> (succeeded: [Finding], failed: [String]) {
        let limit = LoopSemaphore(permits: node.maxParallel ?? items.count, loop: context.loop)
        context.progress.update(node.id) { $0.total += items.count }
        let collector = FanOutCollector(count: items.count, group: parent, node: node.id, progress: context.progress)
        let prefix = parent.groupText
        // A discarding group frees each child as it finishes. A plain task group keeps every
        // finished child (and its task allocator slabs, about 13 KB) until its result is
        // read: massif put 80% of a 3,000-item run's heap there.
        try await withThrowingDiscardingTaskGroup { group in
            for (index, item) in items.enumerated() {
                try await limit.acquire()
                var vars = variables.merging(extra) { $1 }
                vars["item"] = item
                vars["subtask"] = item
                vars["index"] = .number(Double(index))
                let step = StepRecord(
                    runID: context.runID, path: parent.member(index).description, node: node.id, kind: .item,
                    itemIndex: index, agent: agent.name, startedAt: RunContext.now())
                context.progress.update(node.id) { $0.running += 1 }
                group.addTask(executorPreference: context.loop) {
                    let outcome = await AgentCaller(context: context).call(agent, variables: vars, step: step) {
                        await limit.release()
                    }
                    collector.record(index, outcome)
                    // A configuration error ends the fan-out now: the group cancels the rest.
                    if outcome.halted { throw NodeFailure(description: outcome.error ?? "\(parent.member(index)) failed") }
                }
            }
        }
        let (slots, failed) = (collector.slots, collector.failed)
        let succeeded = slots.compactMap { $0 }
        let required = node.minSuccess.required(of: items.count)
        if succeeded.count < required {
            let sample = failed.sorted { $0.0 < $1.0 }.prefix(3).map { "\(parent.member($0.0)): \($0.1)" }.joined(separator: "; ")
            throw NodeFailure(description: "\(prefix): \(succeeded.count) of \(items.count) items succeeded, min_success needs \(required); failed: \(sample)")
        }
        return (succeeded, failed.sorted { $0.0 < $1.0 }.map { parent.member($0.0).description })
    }

    private func reconcile(_ node: NodeSpec, findings: (succeeded: [Finding], failed: [String]), upstream: [String: NodeResult]) async throws -> NodeResult {
        var result = try await reconcile(node, findings: findings.succeeded, upstream: upstream)
        result.failedItems = findings.failed
        return result
    }

    func reconcile(_ node: NodeSpec, findings: [Finding], upstream: [String: NodeResult]) async throws -> NodeResult {
        if node.reconcile.strategy == .agent {
            guard let name = node.reconcile.agent else {
                throw NodeFailure(description: "\(node.id): missing required property 'agent' (strategy agent needs a synthesiser)")
            }
            let synthesiser = try agent(name, node: node.id)
            var variables = baseVariables(upstream)
            variables["findings"] = .array(findings.map { .string($0.value.stringValue ?? $0.value.text) })
            if synthesiser.names("findings_json") {
                variables["findings_json"] = .string(JSONValue.array(findings.map(\.value)).text)
            }
            context.progress.update(node.id) {
                $0.total += 1; $0.running += 1
            }
            let path = StepPath(node: node.id, node.kind == .reconcile ? .node : .synthesis).description
            let outcome = await AgentCaller(context: context).call(
                synthesiser, variables: variables,
                step: StepRecord(runID: context.runID, path: path, node: node.id, kind: .reconcile, agent: name, startedAt: RunContext.now()))
            context.progress.update(node.id) {
                $0.running -= 1; if outcome.succeeded { $0.succeeded += 1 } else { $0.failed += 1 }
            }
            guard let output = outcome.output else { throw NodeFailure(description: outcome.error ?? "\(path) failed") }
            let provenance = JSONValue.array(findings.enumerated().map { .object(["part": .number(Double($0.offset)), "step": .string($0.element.step)]) })
            return NodeResult(value: output, findings: findings, provenance: provenance)
        }
        do {
            let reconciled = try Reconciler.reconcile(findings, node.reconcile)
            return NodeResult(value: reconciled.value, findings: findings, provenance: reconciled.provenance)
        } catch {
            throw NodeFailure(description: "\(node.id): \(error.description)")
        }
    }
}

extension AgentSpec {
    /// Whether this agent's templates name `variable`: a large variable no template reads
    /// (`findings_json`, a second copy of every finding) is not made. A template that does
    /// not compile fails its call anyway; it is said to name everything.
    func names(_ variable: String) -> Bool {
        [system, prompt].compactMap { $0 }.contains { template in
            (try? TemplateCache.shared.lookup(template))?.1.contains(variable) ?? true
        }
    }
}

extension StepKind {
    /// A node's result row is of its node's kind.
    init(_ kind: NodeKind) {
        switch kind {
        case .agent: self = .agent
        case .foreach: self = .foreach
        case .lead: self = .lead
        case .reconcile: self = .reconcile
        case .route: self = .route
        }
    }
}
