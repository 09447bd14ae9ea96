import ChorusJSON
import ChorusTrace

/// The research loop of a `lead` node: the lead plans subtasks, workers run them in
/// parallel, their findings stream into reconciliation, and the lead sees all findings
/// so far when it plans the next round — until it says done, plans nothing, or
/// `max_rounds`/`max_subtasks` is reached.
struct LeadLoop {
    let runner: WorkflowRunner
    let node: NodeSpec
    let spec: LeadSpec
    let upstream: [String: NodeResult]

    private var context: RunContext { runner.context }

    func run() async throws -> NodeResult {
        var findings: [Finding] = []
        var failed: [String] = []
        var used = 0
        var variables = upstream.mapValues(\.value)
        variables["inputs"] = runner.inputs
        let worker = try runner.agent(spec.worker, node: node.id)
        var lead = try runner.agent(spec.lead, node: node.id)
        let schema = lead.outputSchema
        for round in 1...max(1, spec.maxRounds) {
            let remaining = spec.maxSubtasks - used
            if remaining <= 0 { break }
            var planVariables = variables
            planVariables["round"] = .number(Double(round))
            planVariables["max_subtasks"] = .number(Double(remaining))
            planVariables["findings"] = .array(findings.map { .string($0.value.stringValue ?? $0.value.text) })
            if lead.names("findings_json") {
                planVariables["findings_json"] = .string(JSONValue.array(findings.map(\.value)).text)
            }
            let planPath = StepPath(node: node.id, .plan(round: round)).description
            context.progress.update(node.id) {
                $0.total += 1; $0.running += 1
            }
            lead.outputSchema = schema.map { Self.capping($0, subtasks: remaining) }
            let plan = await AgentCaller(context: context).call(
                lead, variables: planVariables,
                step: StepRecord(runID: context.runID, path: planPath, node: node.id, kind: .plan, agent: spec.lead, startedAt: RunContext.now()))
            context.progress.update(node.id) {
                $0.running -= 1; if plan.succeeded { $0.succeeded += 1 } else { $0.failed += 1 }
            }
            guard let planned = plan.output else { throw NodeFailure(description: plan.error ?? "\(planPath) failed") }
            let parsed = planned.stringValue.flatMap { try? ModelAnswerParser.json(from: $0) } ?? planned
            guard let subtasks = parsed["subtasks"]?.arrayValue else {
                throw NodeFailure(description: "\(planPath): expected the lead's answer to hold a 'subtasks' array, found \(parsed.typeName)")
            }
            let batch = Array(subtasks.prefix(remaining))
            if batch.isEmpty { break }
            used += batch.count
            context.event(.roundPlanned(subtasks: batch.count), step: planPath)
            let results = try await runner.fanOut(
                node, agent: worker, items: batch, parent: StepPath(node: node.id, .round(round)),
                variables: variables, extra: ["round": .number(Double(round))])
            findings += results.succeeded
            failed += results.failed
            if parsed["done"]?.boolValue == true { break }
        }
        var result = try await runner.reconcile(node, findings: findings, upstream: upstream)
        result.failedItems = failed
        return result
    }

    /// The lead's schema with `maxItems` on its `subtasks` array no larger than `limit`, so
    /// `max_subtasks` binds the model (a schema-constrained server enforces it while
    /// generating) instead of being only a number in the prompt.
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
