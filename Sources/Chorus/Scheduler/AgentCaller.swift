import ChorusIO
import ChorusJSON
import ChorusTrace

/// Calls one agent for one step: renders its prompts, then tries its models in order
/// (small first), retrying transient failures with backoff and invalid answers per the
/// agent's policy, escalating to the next model when a model runs out of tries. Every
/// attempt is traced with its request, response, tokens, cost and latency.
struct AgentCaller {
    let context: RunContext

    /// Runs the step. `answered` runs as soon as the model calls are over, before the
    /// trace commit this waits for, so a caller can hand its parallelism slot on at once.
    func call(_ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord,
              answered: @Sendable () async -> Void = {}) async -> StepOutcome {
        if let reused = context.origin.reuse[step.path] { return await reuse(reused, answered: answered) }
        // A shared run's step goes to the step table for any worker to run (once approved).
        if let dispatcher = context.dispatcher, context.approvalGate(node: step.node, path: step.path) == nil {
            return await shared(agent, variables: variables, step: step, dispatcher: dispatcher, answered: answered)
        }
        return await run(agent, variables: variables, step: step, answered: answered)
    }

    /// Runs the step here: the one-process path, and a shared step's executor.
    func run(_ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord,
             answered: @Sendable () async -> Void = {}) async -> StepOutcome {
        let record = step
        context.trace.append(.step(record))
        var outcome: StepOutcome
        if let held = context.approvalGate(node: step.node, path: step.path) {
            outcome = StepOutcome()
            outcome.error = "\(step.path): \(held)"
            outcome.cancelled = !held.hasPrefix("denied")
        } else {
            outcome = await attempt(agent, variables: variables, path: step.path, node: step.node)
        }
        await answered()
        context.trace.append(.step(outcome.finishing(record)))
        context.event(outcome.succeeded ? .stepSucceeded : .stepFailed, step: step.path,
                      outcome.error.map { ["error": .string($0)] })
        // A step counts as complete once its trace is durable: a crash after this point
        // never loses it.
        await context.trace.flush()
        if context.stopIfTheTraceFailed() { outcome.halted = true }
        if !outcome.succeeded && outcome.error == nil { outcome.error = "no answer" }
        if !outcome.succeeded { context.failures.record(step.path, outcome.error ?? "no answer") }
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
        context.event(.stepReused, step: record.path, ["from": .string(context.origin.parent ?? "")])
        context.progress.recordReused(tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: record.cost)
        await answered()
        var outcome = StepOutcome(output: record.outputJSON.flatMap { try? JSONValue(parsing: $0) }, model: record.model,
                                  attempts: record.attempts, tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: record.cost)
        if outcome.output == nil { outcome.error = "\(record.path): the reused step's output is unreadable" }
        return outcome
    }

    private func attempt(_ agent: AgentSpec, variables: [String: JSONValue], path: String, node: String) async -> StepOutcome {
        var outcome = StepOutcome()
        var messages: [ChatMessage]
        do {
            var list: [ChatMessage] = []
            if let system = agent.system { list.append(.init(role: .system, content: try TemplateContext.render(system, variables))) }
            list.append(.init(role: .user, content: try TemplateContext.render(agent.prompt, variables)))
            messages = list
        } catch {
            outcome.error = "\(agent.path): cannot render the prompt: \(error)"
            return outcome
        }
        // Input guards, before any request exists: a denial sends nothing.
        if !agent.guards.input.isEmpty {
            for index in messages.indices {
                switch await Guards.applyOffLoop(agent.guards.input, to: messages[index].content,
                                                 record: { recordVerdict($0, $1, stage: "input", path: path) }) {
                case .success(let text): messages[index].content = text
                case .failure(let denial):
                    outcome.cancelled = Task.isCancelled
                    outcome.error = outcome.cancelled ? "cancelled" : "\(path): input \(denial)"
                    return outcome
                }
            }
        }
        do { try await context.global.acquire() } catch {
            outcome.cancelled = true
            outcome.error = "cancelled"
            return outcome
        }
        // Judge agents on the input, with this step's parallelism slot (never a second one).
        for name in Guards.judges(agent.guards.input) {
            let text = messages.map(\.content).joined(separator: "\n\n")
            let verdict = await judge(name, text: text, stage: "input", path: "\(path)#guard-input", node: node)
            if case .deny(let reason) = verdict {
                recordVerdict(Guard(kind: .agent(name)), verdict, stage: "input", path: path)
                outcome.error = "\(path): input agent guard '\(name)': \(reason)"
                await context.global.release()
                return outcome
            }
        }
        outcome = await callModels(agent, messages: messages, path: path, node: node, outcome: outcome)
        await context.global.release()
        return outcome
    }

    /// Drives `ModelCall.StateMachine` for one step: performs each action it asks for and
    /// reports the result. A request goes through these stages, in order: render (done by
    /// the caller) → limiter → transport → parse → validate → account → trace.
    private func callModels(_ agent: AgentSpec, messages: [ChatMessage], path: String, node: String, outcome: StepOutcome) async -> StepOutcome {
        var outcome = outcome
        let recorded = context.origin.isRecorded(path)
        // A fork's live part, or an eval variant, may swap models (`--model NAME=OTHER`);
        // recorded calls keep theirs. A swap that makes a chain name one model twice
        // (`small=large` on [small, large]) leaves it once: escalating to the same model
        // asks the same question again.
        var seen = Set<String>()
        let names = (recorded ? agent.models : agent.models.map { context.origin.modelSwaps[$0] ?? $0 })
            .filter { context.project.config.models[$0] != nil && context.limiters[$0] != nil && seen.insert($0).inserted }
        var models = names.map { name in
            let spec = context.project.config.models[name]!
            return Target(name: name, spec: spec, limiter: context.limiters[name]!, endpoint: ModelEndpoint(spec: spec),
                          maxTokens: agent.maxTokens ?? spec.maxTokens)
        }
        // The data-boundary stage: a model that may not receive a label this step carries is
        // skipped (escalation never carries data past the boundary); none left, no call.
        let labels = context.nodeLabels[node] ?? [:]
        if !labels.isEmpty {
            var refusals: [String] = []
            models = models.filter { target in
                guard let refusal = DataBoundary.refusal(labels, model: target.spec) else { return true }
                let line = DataBoundary.describe(refusal, model: target.spec)
                refusals.append(line)
                context.event(.boundaryRefused, step: path, ["model": .string(target.name), "label": .string(refusal.label),
                                                                "from": .string(refusal.origin)])
                return false
            }
            if models.isEmpty {
                outcome.error = "\(path): " + refusals.joined(separator: "; ")
                return outcome
            }
        }
        var offered: [OfferedTool] = []
        if !agent.tools.isEmpty {
            switch await context.tools(for: path).offer(agent, tools: context.project.tools) {
            case .success(let tools):
                offered = tools
                if tools.contains(where: { $0.remoteName != nil }), context.firstOffer(of: agent.name) {
                    context.event(.toolsOffered, step: path, LiveTools.offeredDetail(agent: agent.name, tools))
                }
            case .failure(let failure):
                outcome.error = "\(path): \(failure)"
                return outcome
            }
        }
        var machine = ModelCall.StateMachine(policy: ModelCall.Policy(
            models: models.count, retries: agent.retries, sleepsBeforeRetry: !recorded,
            escalatesOnTruncation: agent.outputSchema != nil, maxToolRounds: offered.isEmpty ? 0 : agent.maxToolRounds,
            maxWait: agent.timeout))
        var rng = SystemRandomNumberGenerator()
        var call = CallInFlight()
        // The conversation so far: the rendered prompts, then each tool round's assistant
        // turn and results. A retry re-sends it; the next model starts from the prompts.
        var conversation = messages
        var toolTurn: (content: String, calls: [ToolCall]) = ("", [])
        var action = machine.start()
        while true {
            switch action {
            case .acquire(let index):
                if Task.isCancelled { action = machine.cancelled()!; continue }
                _ = context.stopIfTheTraceFailed()
                if let reason = context.circuit.reason { action = machine.stopped(reason); continue }
                let target = models[index]
                call = CallInFlight(body: target.endpoint.body(for: ChatRequest(
                    model: target.spec.model, messages: conversation, temperature: agent.temperature, maxTokens: target.maxTokens,
                    outputSchema: agent.outputSchema, outputSchemaName: agent.name, outputMode: target.spec.structuredOutput,
                    stream: target.spec.stream, tools: offered.map(\.definition))))
                call.size = CallSize(requestBytes: call.body.count, textBytes: conversation.reduce(0) { $0 + $1.content.utf8.count },
                                     maxTokens: target.maxTokens)
                // A model that requires approval waits for a person before its first call.
                if !recorded, target.spec.requiresApproval,
                   let held = context.approval(node: "model:\(target.name)", path: path, because: "model '\(target.name)' requires approval") {
                    return Self.held(outcome, attempts: machine.attempts, "\(path): \(held)")
                }
                // Approval over a cost: a call whose worst case costs more waits for a person.
                if !recorded, case .overMicroUSD(let limit)? = context.project.workflow.nodes[node]?.approval {
                    let worst = call.size.worstCase(at: target.spec).microUSD
                    if worst > limit, let held = context.approval(node: node, path: path, because:
                        "a call to '\(target.name)' may cost $\(BudgetLedger.dollars(worst)), over $\(BudgetLedger.dollars(limit))") {
                        return Self.held(outcome, attempts: machine.attempts, "\(path): \(held)")
                    }
                }
                // The budget stage, before a byte leaves: the worst case is reserved against the
                // run's, the node's and the model's budgets, or the call is refused.
                if !recorded, let refusal = await reserve(&call, ledgers: context.ledgers(node: node, model: target.name), target: target) {
                    if Task.isCancelled { action = machine.cancelled()!; continue }
                    context.refuseForBudget(refusal)
                    action = machine.stopped(refusal)
                    continue
                }
                do { call.ticket = try await target.limiter.acquire(estimatedTokens: call.size.expectedTokens) } catch {
                    for (ledger, reserved) in call.reserved { await ledger.settle(reserved, actual: nil, madeCall: false) }
                    call.reserved = []
                    action = machine.cancelled()!
                    continue
                }
                action = machine.admitted()
            case .send(let index, let attempt):
                let target = models[index]
                let started = ContinuousClock.now
                call.startedAt = RunContext.now()
                let exchange = await context.transport(for: path).exchange(target.endpoint, body: call.body, step: path,
                                                                            attempt: attempt, timeout: agent.timeout)
                call.latency = ContinuousClock.now - started
                switch exchange {
                case .cancelled:
                    await account(&call, &outcome, target, path: path, attempt: attempt, recorded: recorded, outcome: .cancelled, error: "cancelled")
                    action = machine.cancelled()!
                case .failure(let failure):
                    call.status = failure.status
                    call.response = failure.body
                    await account(&call, &outcome, target, path: path, attempt: attempt, recorded: recorded, outcome: .failed, error: failure.detail)
                    let kind: ModelCall.Failure = switch failure.kind {
                    case .transient: .transient(failure.detail, retryAfter: failure.retryAfter)
                    case .configuration: .configuration(failure.detail)
                    case .rejected: .rejected(failure.detail)
                    }
                    action = machine.failed(kind)
                case .response(let status, let body, let firstTokenMs):
                    call.status = status
                    call.response = body
                    call.firstTokenMs = firstTokenMs
                    action = machine.responded()
                }
            case .validate:
                guard case .validating(let position) = machine.state else { return outcome }
                let target = models[position.model]
                var checked = await check(call.response ?? [], request: call.body, agent: agent, target: target, offered: offered, path: path)
                call.answer = checked.answer
                let verdict: ModelCall.Verdict
                let callOutcome: CallOutcome
                var error: String?
                if let answer = checked.answer, let calls = Self.toolCalls(in: answer, agent: agent, target: target, offered: offered) {
                    toolTurn = (answer.content, calls)
                    checked.result = .failure(CheckFailure("asked for \(calls.count) tool call\(calls.count == 1 ? "" : "s")"))
                }
                // Judge agents on the output, before the answer is accepted.
                if case .success = checked.result, toolTurn.calls.isEmpty, let answer = checked.answer {
                    for name in Guards.judges(agent.guards.output) {
                        let verdict = await judge(name, text: answer.text, stage: "output",
                                                  path: "\(path)#guard-output-\(machine.attempts)", node: node)
                        if case .deny(let reason) = verdict {
                            recordVerdict(Guard(kind: .agent(name)), verdict, stage: "output", path: path)
                            checked.result = .failure(CheckFailure("output agent guard '\(name)': \(reason)"))
                            break
                        }
                    }
                }
                switch checked.result {
                case .failure where !toolTurn.calls.isEmpty:
                    verdict = .toolCalls
                    callOutcome = .toolCalls
                case .success(let value):
                    verdict = .accepted
                    callOutcome = .answered
                    outcome.output = value
                case .failure(let failure):
                    verdict = .invalid(failure.description, truncated: checked.answer?.truncated ?? false)
                    callOutcome = .invalid
                    error = failure.description
                }
                await account(&call, &outcome, target, path: path, attempt: machine.attempts, recorded: recorded,
                              outcome: callOutcome, error: error)
                if let answer = checked.answer, answer.truncated {
                    outcome.truncated = true
                    context.event(.answerTruncated, step: path, ["model": .string(target.name), "attempt": .number(Double(machine.attempts)),
                                                                   "max_tokens": .number(Double(target.maxTokens))])
                }
                action = machine.validated(verdict)
            case .runTools:
                // A tool that requires approval waits for a person before it runs.
                if !recorded {
                    for call in toolTurn.calls {
                        guard let tool = offered.first(where: { $0.definition.name == call.name }), tool.spec.requiresApproval,
                              let held = context.approval(node: "tool:\(tool.spec.name)", path: path,
                                                          because: "tool '\(tool.spec.name)' requires approval") else { continue }
                        return Self.held(outcome, attempts: machine.attempts, "\(path): \(held)")
                    }
                }
                let results = await runTools(toolTurn.calls, offered: offered, path: path, attempt: machine.attempts)
                conversation.append(.assistant(toolTurn.content, toolCalls: toolTurn.calls))
                for (call, result) in zip(toolTurn.calls, results) {
                    conversation.append(.toolResult(call.id, content: result.output, isError: result.isError))
                }
                toolTurn = ("", [])
                action = machine.toolsFinished()
            case .sleep(let retry, let retryAfter):
                let delay = context.retryPolicy.delay(retry: retry, retryAfter: retryAfter, using: &rng)
                do { try await context.loop.sleep(for: delay) } catch {
                    action = machine.cancelled()!
                    continue
                }
                action = machine.slept()
            case .escalate(let from, let to, let reason):
                // Approval on escalation: the step stops before the larger model; once approved,
                // a resume runs it again and it escalates without asking.
                if !recorded, context.project.workflow.nodes[node]?.approval == .onEscalation,
                   let held = context.approval(node: node, path: path, because: "escalating from '\(models[from].name)' to '\(models[to].name)'") {
                    context.event(.escalationHeld, step: path, ["from": .string(models[from].name), "to": .string(models[to].name),
                                                                  "reason": .string("\(models[from].name): \(reason)")])
                    return Self.held(outcome, attempts: machine.attempts, "\(path): \(held)")
                }
                context.event(.escalated, step: path, ["from": .string(models[from].name), "to": .string(models[to].name),
                                                        "reason": .string("\(models[from].name): \(reason)")])
                conversation = messages
                toolTurn = ("", [])
                action = machine.escalated()
            case .finish(let finish):
                outcome.attempts = machine.attempts
                switch finish {
                case .succeeded(let index):
                    outcome.model = models[index].name
                case .cancelled:
                    outcome.output = nil
                    outcome.cancelled = true
                    outcome.error = "cancelled"
                case .notRun(let reason):
                    outcome.output = nil
                    outcome.cancelled = true
                    outcome.error = "not run: \(reason)"
                case .halted(let index, let reason):
                    outcome.output = nil
                    let target = models[index]
                    let line = "model '\(target.name)' (\(target.spec.model) at \(target.spec.redactedEndpoint)): \(reason)"
                    if context.circuit.open(.refused(line)) {
                        context.event(.circuitOpened, step: path, ["model": .string(target.name),
                                                                     "status": call.status.map { .number(Double($0)) } ?? .null,
                                                                     "error": .string(reason)])
                    }
                    outcome.halted = true
                    outcome.error = "\(path): \(line)"
                case .failed(let index, let reason):
                    outcome.output = nil
                    let last = index.map { "\(models[$0].name): \(reason)" } ?? reason
                    outcome.error = "\(path): \(last) (after \(outcome.attempts) attempt\(outcome.attempts == 1 ? "" : "s"))"
                }
                return outcome
            }
        }
    }

    /// A model the step may ask, with what its requests need.
    private struct Target {
        let name: String
        let spec: ModelSpec
        let limiter: ModelLimiter
        let endpoint: ModelEndpoint
        let maxTokens: Int
    }

    /// The request in flight and what came back for it.
    private struct CallInFlight {
        var body: [UInt8] = []
        var size = CallSize(requestBytes: 0, textBytes: 0, maxTokens: 0)
        var ticket = 0
        var startedAt = 0.0
        var latency: Duration = .zero
        var status: Int?
        var response: [UInt8]?
        var firstTokenMs: Double?
        var answer: ModelAnswer?
        /// What each budget holds for this call until it is settled.
        var reserved: [(BudgetLedger, BudgetLedger.Amount)] = []
    }

    /// The account and trace stages: frees the limiter slot (with the tokens really used),
    /// counts tokens and cost, and records the call with its request and response.
    private func account(_ call: inout CallInFlight, _ outcome: inout StepOutcome, _ target: Target, path: String,
                         attempt: Int, recorded: Bool, outcome callOutcome: CallOutcome, error: String?) async {
        let tokensIn = call.answer?.tokensIn ?? 0
        let tokensOut = call.answer?.tokensOut ?? 0
        await target.limiter.release(call.ticket, actualTokens: tokensIn + tokensOut)
        let actual = BudgetLedger.Amount(microUSD: target.spec.microUSD(tokensIn: tokensIn, tokensOut: tokensOut), tokens: tokensIn + tokensOut)
        for (ledger, reserved) in call.reserved { await ledger.settle(reserved, actual: actual, madeCall: true) }
        call.reserved = []
        // A replayed call costs nothing: no model was asked.
        let cost = recorded ? 0 : target.spec.cost(tokensIn: tokensIn, tokensOut: tokensOut)
        outcome.tokensIn += tokensIn
        outcome.tokensOut += tokensOut
        outcome.cost += cost
        context.progress.recordCall(tokensIn: tokensIn, tokensOut: tokensOut, cost: cost, retry: attempt > 1)
        context.trace.append(.modelCall(ModelCallRecord(
            runID: context.runID, stepPath: path, attempt: attempt, model: target.name, providerModel: target.spec.model,
            url: recorded ? "replay:\(context.origin.parent ?? "")" : target.spec.redactedEndpoint, requestHash: "", responseHash: nil,
            httpStatus: call.status, error: error, tokensIn: tokensIn, tokensOut: tokensOut, cost: cost,
            latencyMs: call.latency.millisecondsDouble, startedAt: call.startedAt, finishReason: call.answer?.finishReason,
            firstTokenMs: call.firstTokenMs, outcome: callOutcome), request: call.body, response: call.response))
    }

    /// The parse and validate stages: the answer in a response body, and the step's output
    /// if the answer passes the agent's checks (else why not).
    private func check(_ responseBody: [UInt8], request: [UInt8], agent: AgentSpec, target: Target,
                       offered: [OfferedTool], path: String) async -> (answer: ModelAnswer?, result: Result<JSONValue, CheckFailure>) {
        var answer: ModelAnswer
        do { answer = try ModelAnswerParser.parse(responseBody, provider: target.spec.provider) } catch {
            return (nil, .failure(CheckFailure(error.description)))
        }
        if !offered.isEmpty {
            // With tools offered, the answer is the answer tool's input (tool mode) or the text.
            let answerTool = Self.answerToolName(agent: agent, target: target)
            answer.text = answer.toolCalls.first { $0.name == answerTool }?.input.text ?? answer.content
        }
        // The usage stage: what the call is charged, never more than was reserved for it.
        let usage = ReportedUsage(reportedIn: answer.tokensIn, reportedOut: answer.tokensOut, requestBytes: request.count,
                                  answerBytes: max(answer.text.utf8.count, answer.content.utf8.count), maxTokens: target.maxTokens)
        if let note = usage.fault ?? usage.capped {
            context.event(.usageCapped, step: path, ["model": .string(target.name), "reported_in": .number(Double(answer.tokensIn)),
                                                       "reported_out": .number(Double(answer.tokensOut)),
                                                       "charged_in": .number(Double(usage.tokensIn)),
                                                       "charged_out": .number(Double(usage.tokensOut)), "reason": .string(note)])
        }
        answer.tokensIn = usage.tokensIn
        answer.tokensOut = usage.tokensOut
        if let fault = usage.fault { return (answer, .failure(CheckFailure(fault))) }
        // Output guards, before the answer is accepted: a denial is an invalid answer
        // (retried, then escalated, like a schema failure); a redaction changes the answer.
        if !agent.guards.output.isEmpty && (offered.isEmpty || Self.toolCalls(in: answer, agent: agent, target: target, offered: offered) == nil) {
            switch await Guards.applyOffLoop(agent.guards.output, to: answer.text,
                                             record: { recordVerdict($0, $1, stage: "output", path: path) }) {
            case .success(let text): answer.text = text
            case .failure(let denial): return (answer, .failure(CheckFailure("output \(denial)")))
            }
        }
        guard let schema = agent.outputSchema else { return (answer, .success(.string(answer.text))) }
        if answer.truncated {
            // Cut mid-answer: say so, rather than "not JSON".
            return (answer, .failure(CheckFailure("answer truncated at max_tokens (\(target.maxTokens); finish reason "
                                                  + "\(answer.finishReason ?? "")): raise max_tokens for the agent or the model")))
        }
        let value: JSONValue
        do { value = try ModelAnswerParser.json(from: answer.text) } catch {
            return (answer, .failure(CheckFailure(error.description)))
        }
        // A schema with patterns runs regexes (each up to its time budget): off the loop.
        let violations = agent.outputSchemaMatchesPatterns
            ? (try? await OffLoop.compute { JSONSchemaValidator(schema: schema).validate(value) }) ?? [SchemaViolation(path: "$", message: "cancelled")]
            : JSONSchemaValidator(schema: schema).validate(value)
        guard violations.isEmpty else {
            return (answer, .failure(CheckFailure("answer fails the output schema: "
                                                  + violations.prefix(3).map(\.description).joined(separator: "; "))))
        }
        return (answer, .success(value))
    }

    // MARK: guards

    /// Asks the judge agent `name` about `text`; its model calls are traced under `path`.
    private func judge(_ name: String, text: String, stage: String, path: String, node: String) async -> Guard.Verdict {
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
        // The judge's calls are a step row of their own, so the steps' costs add up to the run's.
        let record = StepRecord(runID: context.runID, path: path, node: node, kind: "judge", agent: name, startedAt: RunContext.now())
        context.trace.append(.step(record))
        let outcome = await callModels(plain, messages: messages, path: path, node: node, outcome: StepOutcome())
        context.trace.append(.step(outcome.finishing(record)))
        guard let output = outcome.output else { return .deny("the judge gave no answer: \(outcome.error ?? "")") }
        let value = output.objectValue != nil ? output : (try? ModelAnswerParser.json(from: output.stringValue ?? ""))
        return Guards.judgement(value)
    }

    /// A guard's verdict as a trace event (sealed by the audit chain like every event).
    private func recordVerdict(_ guardrail: Guard, _ verdict: Guard.Verdict, stage: String, path: String) {
        var detail: [String: JSONValue] = ["stage": .string(stage), "guard": .string(guardrail.name)]
        switch verdict {
        case .allow: return
        case .redacted(_, let what): detail["verdict"] = "redacted"; detail["what"] = .string(what)
        case .deny(let reason): detail["verdict"] = "denied"; detail["reason"] = .string(reason)
        }
        context.event(.guardVerdict, step: path, .object(detail))
    }

    // MARK: approval

    /// The step stops where a person must decide: not run (waiting) or failed (denied).
    private static func held(_ outcome: StepOutcome, attempts: Int, _ message: String) -> StepOutcome {
        var outcome = outcome
        outcome.attempts = attempts
        outcome.output = nil
        outcome.error = message
        outcome.cancelled = !message.contains(": denied by ")
        return outcome
    }

    // MARK: budgets

    /// Reserves the call's worst case against each of `ledgers`, in order; on a refusal the
    /// holds already taken are given back. Returns why it was refused, or nil.
    private func reserve(_ call: inout CallInFlight, ledgers: [BudgetLedger], target: Target) async -> String? {
        guard !ledgers.isEmpty else { return nil }
        let worst = call.size.worstCase(at: target.spec)
        for ledger in ledgers {
            if let held = await ledger.reserve(worst) {
                call.reserved.append((ledger, held))
                continue
            }
            for (held, amount) in call.reserved { await held.settle(amount, actual: nil, madeCall: false) }
            call.reserved = []
            let which = ledger === context.ledger ? "" : ledger === context.modelLedgers[target.name] ? "model '\(target.name)': " : "this node: "
            return which + (await ledger.exhausted(worst))
        }
        return nil
    }

    // MARK: tools

    /// The name of the forced answer tool in `tool` structured-output mode, else nil.
    private static func answerToolName(agent: AgentSpec, target: Target) -> String? {
        target.spec.structuredOutput == .tool && agent.outputSchema != nil ? OpenAIChatRequestBody.sanitizedName(agent.name) : nil
    }

    /// The tool calls `answer` asks Chorus to run, or nil when it is a final answer.
    private static func toolCalls(in answer: ModelAnswer, agent: AgentSpec, target: Target, offered: [OfferedTool]) -> [ToolCall]? {
        guard !offered.isEmpty else { return nil }
        let answerTool = answerToolName(agent: agent, target: target)
        let calls = answer.toolCalls.filter { $0.name != answerTool }
        return calls.isEmpty ? nil : calls
    }

    /// Runs one answer's tool calls concurrently and records each; the results come back in
    /// the calls' order. An unknown tool or an input that fails the tool's schema is an
    /// error result the model sees, and nothing runs.
    private func runTools(_ calls: [ToolCall], offered: [OfferedTool], path: String, attempt: Int) async -> [ToolOutcome] {
        let tools = context.tools(for: path)
        let byName = Dictionary(offered.map { ($0.definition.name, $0) }, uniquingKeysWith: { first, _ in first })
        let results = await withTaskGroup(of: (Int, ToolOutcome, Double, Duration).self) { group in
            for (index, call) in calls.enumerated() {
                group.addTask {
                    let startedAt = RunContext.now()
                    let started = ContinuousClock.now
                    let outcome: ToolOutcome
                    if let tool = byName[call.name] {
                        if let problem = await Self.inputProblem(call.input, schema: tool.definition.inputSchema) {
                            outcome = .failure(problem)
                        } else if let finished = context.takeFinishedToolCall(step: path, tool: call.name, input: call.input) {
                            outcome = finished
                        } else {
                            outcome = await tools.run(tool, input: call.input, step: path, attempt: attempt, index: index)
                        }
                    } else {
                        outcome = .failure("no tool named '\(call.name)'; the tools are: "
                                           + byName.keys.sorted().joined(separator: ", "))
                    }
                    return (index, outcome, startedAt, ContinuousClock.now - started)
                }
            }
            var results: [(Int, ToolOutcome, Double, Duration)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        for (index, outcome, startedAt, latency) in results {
            let call = calls[index]
            context.trace.append(.toolCall(ToolCallRecord(
                runID: context.runID, stepPath: path, attempt: attempt, callIndex: index, callID: call.id, tool: call.name,
                kind: byName[call.name]?.kind ?? "unknown", isError: outcome.isError, exitStatus: outcome.exitStatus,
                error: outcome.error, latencyMs: latency.millisecondsDouble, startedAt: startedAt),
                input: call.input.serialized(), output: Array(outcome.output.utf8)))
        }
        context.progress.recordToolCalls(results.count)
        return results.map(\.1)
    }

    /// Why `input` may not go to a tool whose input schema is `schema`, or nil.
    private static func inputProblem(_ input: JSONValue, schema: JSONValue) async -> String? {
        if case .string = input { return "the tool's arguments are not a JSON object: \(input.text.prefix(200))" }
        // An MCP server's schema may carry any pattern: one with patterns is checked off the loop.
        let violations = JSONSchemaValidator.matchesPatterns(schema)
            ? (try? await OffLoop.compute { JSONSchemaValidator(schema: schema).validate(input) }) ?? [SchemaViolation(path: "$", message: "cancelled")]
            : JSONSchemaValidator(schema: schema).validate(input)
        guard !violations.isEmpty else { return nil }
        return "the input fails the tool's input schema: " + violations.prefix(3).map(\.description).joined(separator: "; ")
    }
}

extension StepOutcome {
    /// `record` as this outcome ends it: status, output, error, model, tokens and cost.
    func finishing(_ record: StepRecord) -> StepRecord {
        var record = record
        record.status = succeeded ? .succeeded : (cancelled ? .cancelled : .failed)
        record.endedAt = RunContext.now()
        record.outputJSON = output?.text
        record.error = error
        record.model = model
        record.attempts = attempts
        record.tokensIn = tokensIn
        record.tokensOut = tokensOut
        record.cost = cost
        return record
    }
}

/// Why an answer did not pass the checks, in words for the trace.
private struct CheckFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
