import ChorusIO
import ChorusJSON
import ChorusTrace

/// One step's model calls as they happen: the models it may ask, the conversation so far,
/// the request in flight and what the step has spent. `perform` carries out one action of
/// `ModelCall.StateMachine` and returns the event it ended in; the checks are in
/// `Checks/`, the tool round in `StepCall+Tools.swift`.
struct StepCall {
    let caller: AgentCaller
    let agent: AgentSpec
    let path: String
    let node: String
    /// False for a judge's calls, which run in the slot of the step that asked.
    let takesSlot: Bool
    /// Whether the step's calls are served from a recorded trace (a replay, a fork's
    /// recorded part): nothing is approved, reserved or charged for them.
    let recorded: Bool
    /// The models the step may ask, in order.
    let models: [Target]
    /// The rendered prompts (after the input guards' redactions).
    var prompts: [ChatMessage]
    /// The conversation so far: the prompts, then each tool round's assistant turn and
    /// results. A retry re-sends it; the next model starts from the prompts.
    var conversation: [ChatMessage]
    var offered: [OfferedTool] = []
    /// The tool calls the last answer asked for, with its text.
    var toolTurn: (content: String, calls: [ToolCall]) = ("", [])
    var call = CallInFlight()
    var output: JSONValue?
    var tokensIn = 0
    var tokensOut = 0
    var cost = USD.zero
    var truncated = false
    var holdsSlot = false
    var rng = SystemRandomNumberGenerator()

    var context: RunContext { caller.context }

    init(caller: AgentCaller, agent: AgentSpec, prompts: [ChatMessage], path: String, node: String, takesSlot: Bool) {
        self.caller = caller
        self.agent = agent
        self.prompts = prompts
        self.conversation = prompts
        self.path = path
        self.node = node
        self.takesSlot = takesSlot
        let context = caller.context
        recorded = context.origin.isRecorded(path)
        // A fork's live part, or an eval variant, may swap models (`--model NAME=OTHER`);
        // recorded calls keep theirs. A swap that makes a chain name one model twice
        // (`small=large` on [small, large]) leaves it once: escalating to the same model
        // asks the same question again.
        var seen = Set<String>()
        let names = recorded ? agent.models : agent.models.map { context.origin.modelSwaps[$0] ?? $0 }
        models = names.compactMap { name in
            guard let spec = context.project.config.models[name], let limiter = context.limits.limiters[name],
                seen.insert(name).inserted
            else { return nil }
            return Target(
                name: name, spec: spec, limiter: limiter, endpoint: ModelEndpoint(spec: spec),
                maxTokens: agent.maxTokens ?? spec.maxTokens)
        }
    }

    /// What the step's calls may do.
    var policy: ModelCall.Policy {
        ModelCall.Policy(
            models: models.count, retries: agent.retries, sleepsBeforeRetry: !recorded,
            escalatesOnTruncation: agent.outputSchema != nil, maxToolRounds: agent.maxToolRounds,
            maxWait: agent.timeout)
    }

    /// Carries out `action`; returns the event it ended in.
    mutating func perform(_ action: ModelCall.Action) async -> ModelCall.Event {
        switch action {
        case .check(let stage): return await check(stage)
        case .enter: return await enter()
        case .offerTools: return await offerTools()
        case .prepare(let model): prepare(models[model]); return .prepared
        case .acquire(let model): return await acquire(models[model])
        case .send(let model, let attempt): return await send(models[model], attempt: attempt)
        case .parse(let model): return parse(models[model])
        case .validate(let model): return await validate(models[model])
        case .record(let result, let model, let attempt): await record(result, models[model], attempt: attempt); return .recorded
        case .runTools(_, let attempt): return await runTools(attempt: attempt)
        case .sleep(let retry, let retryAfter): return await sleep(retry: retry, retryAfter: retryAfter)
        case .escalate(let from, let to, let reason): escalate(from: models[from], to: models[to], reason: reason); return .escalated
        // Never performed: the driver returns the outcome instead.
        case .finish: return .cancelled
        }
    }

    /// The step's parallelism slot (a judge's calls use the asking step's).
    private mutating func enter() async -> ModelCall.Event {
        guard takesSlot else { return .entered }
        do { try await context.limits.global.acquire() } catch { return .cancelled }
        holdsSlot = true
        return .entered
    }

    /// The request for `target`: the conversation so far, in its wire shape.
    private mutating func prepare(_ target: Target) {
        call = CallInFlight(
            body: target.endpoint.body(
                for: ChatRequest(
                    model: target.spec.model, messages: conversation, temperature: agent.temperature, maxTokens: target.maxTokens,
                    outputSchema: agent.requestOutputSchema ?? agent.outputSchema, outputSchemaName: agent.name, outputMode: target.spec.structuredOutput,
                    stream: target.spec.stream, tools: offered.map(\.definition))))
        call.size = CallSize(
            requestBytes: call.body.count, textBytes: conversation.reduce(0) { $0 + $1.content.utf8.count },
            maxTokens: target.maxTokens)
    }

    /// The model's limiter, with the call's expected size.
    private mutating func acquire(_ target: Target) async -> ModelCall.Event {
        do { call.ticket = try await target.limiter.acquire(estimatedTokens: call.size.expectedTokens) } catch { return .cancelled }
        return .admitted
    }

    /// The transport stage.
    private mutating func send(_ target: Target, attempt: Int) async -> ModelCall.Event {
        let started = ContinuousClock.now
        call.startedAt = RunContext.now()
        let exchange = await context.transport(for: path).exchange(
            target.endpoint, body: call.body, step: path,
            attempt: attempt, timeout: agent.timeout)
        call.latency = ContinuousClock.now - started
        switch exchange {
        case .cancelled:
            return .cancelled
        case .failure(let failure):
            call.status = failure.status
            call.response = failure.body
            let kind: ModelCall.Failure =
                switch failure.kind {
                case .transient: .transient(failure.detail, retryAfter: failure.retryAfter)
                case .configuration: .configuration(failure.detail)
                case .rejected: .rejected(failure.detail)
                }
            return .failed(kind)
        case .response(let status, let body, let firstTokenMs):
            call.status = status
            call.response = body
            call.firstTokenMs = firstTokenMs
            return .responded
        }
    }

    /// The parse and usage stages: the answer in the response body, charged at most what
    /// was reserved for it; a tool-call answer or a final one to check.
    private mutating func parse(_ target: Target) -> ModelCall.Event {
        var answer: ModelAnswer
        do { answer = try ModelAnswerParser.parse(call.response ?? [], provider: target.spec.provider) } catch {
            return .parsed(.invalid(error.description, truncated: false))
        }
        if !offered.isEmpty {
            // With tools offered, the answer is the answer tool's input (tool mode) or the text.
            let answerTool = answerToolName(target)
            answer.text = answer.toolCalls.first { $0.name == answerTool }?.input.text ?? answer.content
        }
        let usage = ReportedUsage(
            reportedIn: answer.tokensIn, reportedOut: answer.tokensOut, requestBytes: call.body.count,
            answerBytes: max(answer.text.utf8.count, answer.content.utf8.count), maxTokens: target.maxTokens)
        if let note = usage.fault ?? usage.capped {
            context.event(
                .usageCapped(
                    .init(
                        model: target.name, reportedIn: answer.tokensIn, reportedOut: answer.tokensOut,
                        chargedIn: usage.tokensIn, chargedOut: usage.tokensOut, reason: note)), step: path)
        }
        answer.tokensIn = usage.tokensIn
        answer.tokensOut = usage.tokensOut
        call.answer = answer
        if let fault = usage.fault { return .parsed(.invalid(fault, truncated: answer.truncated)) }
        if let calls = toolCalls(in: answer, target) {
            toolTurn = (answer.content, calls)
            return .parsed(.toolCalls)
        }
        return .parsed(.answer(truncated: answer.truncated))
    }

    /// The validation stage: a final answer against the agent's output schema.
    private mutating func validate(_ target: Target) async -> ModelCall.Event {
        guard let answer = call.answer else { return .validated(.invalid("no answer")) }
        guard let schema = agent.outputSchema else {
            call.output = .string(answer.text)
            return .validated(.valid)
        }
        if answer.truncated {
            // Cut mid-answer: say so, rather than "not JSON".
            return .validated(
                .invalid(
                    "answer truncated at max_tokens (\(target.maxTokens); finish reason "
                        + "\(answer.finishReason ?? "")): raise max_tokens for the agent or the model"))
        }
        let value: JSONValue
        do { value = try ModelAnswerParser.json(from: answer.text) } catch { return .validated(.invalid(error.description)) }
        // A schema with patterns runs regexes (each up to its time budget): off the loop.
        let violations =
            agent.outputSchemaMatchesPatterns
            ? (try? await OffLoop.compute { JSONSchemaValidator(schema: schema).validate(value) }) ?? [SchemaViolation(path: "$", message: "cancelled")]
            : JSONSchemaValidator(schema: schema).validate(value)
        guard violations.isEmpty else {
            return .validated(.invalid("answer fails the output schema: " + violations.prefix(3).map(\.description).joined(separator: "; ")))
        }
        call.output = value
        return .validated(.valid)
    }

    /// The account and trace stages: frees the limiter slot (with the tokens really used),
    /// settles the budgets, counts tokens and cost, and records the call with its request
    /// and response.
    private mutating func record(_ result: ModelCall.CallResult, _ target: Target, attempt: Int) async {
        let tokensIn = call.answer?.tokensIn ?? 0
        let tokensOut = call.answer?.tokensOut ?? 0
        await target.limiter.release(call.ticket, actualTokens: tokensIn + tokensOut)
        let price = target.spec.cost(tokensIn: tokensIn, tokensOut: tokensOut)
        let actual = BudgetLedger.Amount(microUSD: price.microRoundedUp, tokens: tokensIn + tokensOut)
        for (ledger, reserved) in call.reserved { await ledger.settle(reserved, actual: actual, madeCall: true) }
        call.reserved = []
        // A replayed call costs nothing: no model was asked.
        let cost = recorded ? .zero : price
        self.tokensIn += tokensIn
        self.tokensOut += tokensOut
        self.cost += cost
        context.progress.recordCall(tokensIn: tokensIn, tokensOut: tokensOut, cost: cost, retry: attempt > 1)
        let (outcome, error): (CallOutcome, String?) =
            switch result {
            case .answered: (.answered, nil)
            case .toolCalls: (.toolCalls, nil)
            case .invalid(let reason): (.invalid, reason)
            case .failed(let reason): (.failed, reason)
            case .cancelled: (.cancelled, "cancelled")
            }
        if case .answered = result { output = call.output }
        context.trace.append(
            .modelCall(
                ModelCallRecord(
                    runID: context.runID, stepPath: path, attempt: attempt, model: target.name, providerModel: target.spec.model,
                    url: recorded ? "replay:\(context.origin.parent ?? "")" : target.spec.redactedEndpoint, requestHash: "", responseHash: nil,
                    httpStatus: call.status, error: error, tokensIn: tokensIn, tokensOut: tokensOut, cost: cost.dollars,
                    latencyMs: call.latency.millisecondsDouble, startedAt: call.startedAt, finishReason: call.answer?.finishReason,
                    firstTokenMs: call.firstTokenMs, outcome: outcome), request: call.body, response: call.response))
        if let answer = call.answer, answer.truncated {
            truncated = true
            context.event(.answerTruncated(model: target.name, attempt: attempt, maxTokens: target.maxTokens), step: path)
        }
    }

    /// The wait before a retry: backoff with jitter, or the provider's Retry-After.
    private mutating func sleep(retry: Int, retryAfter: Duration?) async -> ModelCall.Event {
        let delay = context.limits.retryPolicy.delay(retry: retry, retryAfter: retryAfter, using: &rng)
        do { try await context.loop.sleep(for: delay) } catch { return .cancelled }
        return .slept
    }

    /// The step moves to the next model, which starts from the prompts.
    private mutating func escalate(from: Target, to: Target, reason: String) {
        context.event(.escalated(from: from.name, to: to.name, reason: "\(from.name): \(reason)"), step: path)
        conversation = prompts
        toolTurn = ("", [])
    }

    /// The step's calls are over: what is still held is given back (a reservation for a call
    /// never made, the parallelism slot) and the outcome made.
    mutating func finish(_ finish: ModelCall.Finish, attempts: Int) async -> StepOutcome {
        for (ledger, reserved) in call.reserved { await ledger.settle(reserved, actual: nil, madeCall: false) }
        call.reserved = []
        if holdsSlot { await context.limits.global.release() }
        holdsSlot = false
        var outcome = StepOutcome(.cancelled, attempts: attempts, tokensIn: tokensIn, tokensOut: tokensOut, cost: cost)
        outcome.truncated = truncated
        switch finish {
        case .succeeded(let index):
            outcome.end = output.map { .succeeded($0) } ?? .failed(StepError(path: path, reason: "no answer"))
            outcome.model = models[index].name
        case .cancelled:
            outcome.end = .cancelled
        case .notRun(let reason):
            outcome.end = .notRun(reason)
        case .held(let reason):
            outcome.end = .held(StepError(path: path, reason: reason))
        case .denied(let reason):
            outcome.end = .failed(StepError(path: path, reason: reason))
        case .halted(let index, let reason):
            let target = models[index]
            let line = "model '\(target.name)' (\(target.spec.model) at \(target.spec.redactedEndpoint)): \(reason)"
            if context.circuit.open(.refused(line)) {
                context.event(.circuitOpened(model: target.name, status: call.status, error: reason), step: path)
            }
            outcome.halted = true
            outcome.end = .failed(StepError(path: path, reason: line))
        case .failed(let index, let reason):
            let last = index.map { "\(models[$0].name): \(reason)" } ?? reason
            outcome.end = .failed(StepError(path: path, reason: "\(last) (after \(attempts) attempt\(attempts == 1 ? "" : "s"))"))
        }
        return outcome
    }
}

/// A model the step may ask, with what its requests need.
struct Target {
    let name: String
    let spec: ModelSpec
    let limiter: ModelLimiter
    let endpoint: ModelEndpoint
    let maxTokens: Int
}

/// The request in flight and what came back for it.
struct CallInFlight {
    var body: [UInt8] = []
    var size = CallSize(requestBytes: 0, textBytes: 0, maxTokens: 0)
    var ticket = 0
    var startedAt = 0.0
    var latency: Duration = .zero
    var status: Int?
    var response: [UInt8]?
    var firstTokenMs: Double?
    var answer: ModelAnswer?
    /// The answer's value once it passed validation.
    var output: JSONValue?
    /// What each budget holds for this call until it is settled.
    var reserved: [(BudgetLedger, BudgetLedger.Amount)] = []
}
