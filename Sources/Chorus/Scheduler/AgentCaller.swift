import ChorusIO
import ChorusJSON
import ChorusTrace

/// Calls one agent for one step: renders its prompts, then tries its models in order
/// (small first), retrying transient failures with backoff and invalid answers per the
/// agent's policy, escalating to the next model when a model runs out of tries. Every
/// attempt is traced with its request, response, tokens, cost and latency. The order of
/// things is `ModelCall.StateMachine`'s; `StepCall` performs each action and check.
struct AgentCaller {
    let context: RunContext

    /// Runs the step. `answered` runs as soon as the model calls are over, before the
    /// trace commit this waits for, so a caller can hand its parallelism slot on at once.
    func call(
        _ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord,
        answered: @Sendable () async -> Void = {}
    ) async -> StepOutcome {
        if let reused = context.origin.reuse[step.path] { return await reuse(reused, answered: answered) }
        // A shared run's step goes to the step table for any worker to run (once approved).
        if let dispatcher = context.dispatcher, context.approvalGate(node: step.node, path: step.path).passes {
            return await shared(agent, variables: variables, step: step, dispatcher: dispatcher, answered: answered)
        }
        return await run(agent, variables: variables, step: step, answered: answered)
    }

    /// Runs the step here: the one-process path, and a shared step's executor.
    func run(
        _ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord,
        answered: @Sendable () async -> Void = {}
    ) async -> StepOutcome {
        context.trace.append(.step(step))
        var outcome =
            switch context.approvalGate(node: step.node, path: step.path) {
            case .allow, .redact: await attempt(agent, variables: variables, path: step.path, node: step.node)
            case .hold(let reason): StepOutcome(.held(StepError(path: step.path, reason: reason)))
            case .deny(let reason), .refuse(let reason): StepOutcome.failed(step.path, reason)
            }
        await answered()
        context.trace.append(.step(outcome.finishing(step)))
        context.event(outcome.succeeded ? .stepSucceeded : .stepFailed(error: outcome.error), step: step.path)
        // A step counts as complete once its trace is durable: a crash after this point
        // never loses it.
        await context.trace.flush()
        if context.stopIfTheTraceFailed() { outcome.halted = true }
        if let reason = outcome.reason { context.failures.record(step.path, reason) }
        return outcome
    }

    /// A resumed run's step that finished in the run it resumes: its record and calls are
    /// copied into this run's trace (bodies are content-addressed, so nothing is stored twice)
    /// and its output is used as is. No model is called.
    private func reuse(_ reused: ReusedStep, answered: @Sendable () async -> Void) async -> StepOutcome {
        var record = reused.step
        record.runID = context.runID
        for var call in reused.calls {
            call.runID = context.runID
            context.trace.append(.copiedModelCall(call))
        }
        for var call in reused.toolCalls {
            call.runID = context.runID
            context.trace.append(.copiedToolCall(call))
        }
        context.trace.append(.step(record))
        context.event(.stepReused(from: context.origin.parent ?? ""), step: record.path)
        context.progress.recordReused(tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: USD(dollars: record.cost))
        await answered()
        let end: StepOutcome.End =
            record.outputJSON.flatMap { try? JSONValue(parsing: $0) }.map { .succeeded($0) }
            ?? .failed(StepError(path: record.path, reason: "the reused step's output is unreadable"))
        return StepOutcome(
            end, model: record.model, attempts: record.attempts, tokensIn: record.tokensIn, tokensOut: record.tokensOut,
            cost: USD(dollars: record.cost))
    }

    /// Renders the prompts, then calls the models.
    private func attempt(_ agent: AgentSpec, variables: [String: JSONValue], path: String, node: String) async -> StepOutcome {
        var messages: [ChatMessage] = []
        do {
            if let system = agent.system { messages.append(.init(role: .system, content: try TemplateContext.render(system, variables))) }
            messages.append(.init(role: .user, content: try TemplateContext.render(agent.prompt, variables)))
        } catch {
            return .failed(path, "\(agent.path): cannot render the prompt: \(error)")
        }
        return await callModels(agent, messages: messages, path: path, node: node)
    }

    /// Drives `ModelCall.StateMachine` for one step: `StepCall` performs each action it asks
    /// for and reports the event, until the machine finishes. A judge's calls run inside the
    /// step that asked (`takesSlot: false`: with its parallelism slot, never a second one).
    func callModels(
        _ agent: AgentSpec, messages: [ChatMessage], path: String, node: String,
        takesSlot: Bool = true
    ) async -> StepOutcome {
        var step = StepCall(caller: self, agent: agent, prompts: messages, path: path, node: node, takesSlot: takesSlot)
        var machine = ModelCall.StateMachine(policy: step.policy)
        var action = machine.start()
        while true {
            if case .finish(let finish) = action { return await step.finish(finish, attempts: machine.attempts) }
            action = machine.next(await step.perform(action))
        }
    }

    /// Asks the judge agent `name` about `text`; its model calls are a step row of their own
    /// at `path` (so the steps' costs add up to the run's).
    func judge(_ name: String, text: String, stage: String, path: String, node: String) async -> Guard.Verdict {
        guard let judge = context.project.agents[name] else { return .deny("no judge agent '\(name)'") }
        let variables: [String: JSONValue] = ["text": .string(text), "stage": .string(stage)]
        var messages: [ChatMessage] = []
        do {
            if let system = judge.system { messages.append(.init(role: .system, content: try TemplateContext.render(system, variables))) }
            messages.append(.init(role: .user, content: try TemplateContext.render(judge.prompt, variables)))
        } catch {
            return .deny("cannot render the judge's prompt: \(error)")
        }
        var plain = judge
        plain.guards = Guards(json: nil)  // a judge is not judged in turn
        let record = StepRecord(runID: context.runID, path: path, node: node, kind: .judge, agent: name, startedAt: RunContext.now())
        context.trace.append(.step(record))
        let outcome = await callModels(plain, messages: messages, path: path, node: node, takesSlot: false)
        context.trace.append(.step(outcome.finishing(record)))
        guard let output = outcome.output else { return .deny("the judge gave no answer: \(outcome.error ?? "")") }
        let value = output.objectValue != nil ? output : (try? ModelAnswerParser.json(from: output.stringValue ?? ""))
        return Guards.judgement(value)
    }
}
