import ChorusIO
import ChorusJSON
import ChorusTrace

/// Calls one agent for one step: renders its prompts, then tries its models in order
/// (small first), retrying transient failures with backoff and invalid answers per the
/// agent's policy, escalating to the next model when a model runs out of tries. Every
/// attempt is traced with its request, response, tokens, cost and latency.
struct AgentCaller {
    let context: RunContext

    /// One attempt's verdict.
    private enum Verdict {
        case accepted(JSONValue, ModelAnswer)
        case retry(String, retryAfter: Duration?)
        case invalid(String, ModelAnswer?)
        /// This model cannot answer this step: escalate.
        case fatal(String)
        /// This model cannot answer any step (401, unknown model): the run stops.
        case halt(String)
        case cancelled
    }

    /// Runs the step. `answered` runs as soon as the model calls are over, before the
    /// trace commit this waits for, so a caller can hand its parallelism slot on at once.
    func call(_ agent: AgentSpec, variables: [String: JSONValue], step: StepRecord,
              answered: @Sendable () async -> Void = {}) async -> StepOutcome {
        if let reused = context.origin.reuse[step.path] { return await reuse(reused, answered: answered) }
        var record = step
        context.trace.append(.step(record))
        var outcome = await attempt(agent, variables: variables, path: step.path)
        await answered()
        record.status = outcome.succeeded ? "succeeded" : (outcome.cancelled ? "cancelled" : "failed")
        record.endedAt = RunContext.now()
        record.outputJSON = outcome.output?.text
        record.error = outcome.error
        record.model = outcome.model
        record.attempts = outcome.attempts
        record.tokensIn = outcome.tokensIn
        record.tokensOut = outcome.tokensOut
        record.cost = outcome.cost
        context.trace.append(.step(record))
        context.event(outcome.succeeded ? "step_succeeded" : "step_failed", step: step.path,
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
        context.trace.append(.step(record))
        context.event("step_reused", step: record.path, ["from": .string(context.origin.parent ?? "")])
        context.progress.recordReused(tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: record.cost)
        await answered()
        var outcome = StepOutcome(output: record.outputJSON.flatMap { try? JSONValue(parsing: $0) }, model: record.model,
                                  attempts: record.attempts, tokensIn: record.tokensIn, tokensOut: record.tokensOut, cost: record.cost)
        if outcome.output == nil { outcome.error = "\(record.path): the reused step's output is unreadable" }
        return outcome
    }

    private func attempt(_ agent: AgentSpec, variables: [String: JSONValue], path: String) async -> StepOutcome {
        var outcome = StepOutcome()
        let messages: [ChatMessage]
        do {
            var list: [ChatMessage] = []
            if let system = agent.system { list.append(.init(role: .system, content: try TemplateContext.render(system, variables))) }
            list.append(.init(role: .user, content: try TemplateContext.render(agent.prompt, variables)))
            messages = list
        } catch {
            outcome.error = "\(agent.path): cannot render the prompt: \(error)"
            return outcome
        }
        do { try await context.global.acquire() } catch {
            outcome.cancelled = true
            outcome.error = "cancelled"
            return outcome
        }
        outcome = await callModels(agent, messages: messages, path: path, outcome: outcome)
        await context.global.release()
        return outcome
    }

    private func callModels(_ agent: AgentSpec, messages: [ChatMessage], path: String, outcome: StepOutcome) async -> StepOutcome {
        var outcome = outcome

        var rng = SystemRandomNumberGenerator()
        var lastError = "no model tried"
        let recorded = context.origin.isRecorded(path)
        // A fork's live part may swap models (`--model NAME=OTHER`); recorded calls keep theirs.
        let models = recorded ? agent.models : agent.models.map { context.origin.modelSwaps[$0] ?? $0 }
        for (modelIndex, modelName) in models.enumerated() {
            guard let spec = context.project.config.models[modelName], let limiter = context.limiters[modelName] else { continue }
            let endpoint = ModelEndpoint(spec: spec)
            let maxTokens = agent.maxTokens ?? spec.maxTokens
            let request = ChatRequest(model: spec.model, messages: messages, temperature: agent.temperature,
                                      maxTokens: maxTokens, outputSchema: agent.outputSchema, outputSchemaName: agent.name,
                                      outputMode: spec.structuredOutput, stream: spec.stream)
            let body = endpoint.body(for: request)
            let estimate = messages.reduce(0) { $0 + $1.content.utf8.count / 4 } + maxTokens
            for retry in 0...agent.retries {
                if Task.isCancelled { outcome.cancelled = true; outcome.error = "cancelled"; return outcome }
                _ = context.stopIfTheTraceFailed()
                if let reason = context.circuit.reason {
                    outcome.cancelled = true
                    outcome.error = "not run: \(reason)"
                    return outcome
                }
                outcome.attempts += 1
                let ticket: Int
                do { ticket = try await limiter.acquire(estimatedTokens: estimate) } catch {
                    outcome.cancelled = true
                    outcome.error = "cancelled"
                    return outcome
                }
                let started = ContinuousClock.now
                let startedAt = RunContext.now()
                let sent = await send(endpoint, body: body, agent: agent, maxTokens: maxTokens, timeout: agent.timeout,
                                      path: path, attempt: outcome.attempts)
                let latency = ContinuousClock.now - started
                let verdict = sent.verdict
                let answer: ModelAnswer? = switch verdict {
                case .accepted(_, let answer): answer
                case .invalid(_, let answer): answer
                default: nil
                }
                let tokensIn = answer?.tokensIn ?? 0
                let tokensOut = answer?.tokensOut ?? 0
                await limiter.release(ticket, actualTokens: tokensIn + tokensOut)
                // A replayed call costs nothing: no model was asked.
                let cost = recorded ? 0 : spec.cost(tokensIn: tokensIn, tokensOut: tokensOut)
                outcome.tokensIn += tokensIn
                outcome.tokensOut += tokensOut
                outcome.cost += cost
                context.progress.recordCall(tokensIn: tokensIn, tokensOut: tokensOut, cost: cost, retry: outcome.attempts > 1)
                var error: String?
                switch verdict {
                case .accepted: error = nil
                case .retry(let reason, _), .invalid(let reason, _), .fatal(let reason), .halt(let reason): error = reason
                case .cancelled: error = "cancelled"
                }
                context.trace.append(.modelCall(ModelCallRecord(
                    runID: context.runID, stepPath: path, attempt: outcome.attempts, model: modelName, providerModel: spec.model,
                    url: recorded ? "replay:\(context.origin.parent ?? "")" : spec.redactedEndpoint, requestHash: "", responseHash: nil,
                    httpStatus: sent.status, error: error, tokensIn: tokensIn, tokensOut: tokensOut, cost: cost,
                    latencyMs: latency.millisecondsDouble, startedAt: startedAt, finishReason: answer?.finishReason,
                    firstTokenMs: sent.firstTokenMs), request: body, response: sent.body))
                if let answer, answer.truncated {
                    outcome.truncated = true
                    context.event("answer_truncated", step: path, ["model": .string(modelName), "attempt": .number(Double(outcome.attempts)),
                                                                   "max_tokens": .number(Double(maxTokens))])
                }
                switch verdict {
                case .accepted(let value, _):
                    outcome.output = value
                    outcome.model = modelName
                    return outcome
                case .cancelled:
                    outcome.cancelled = true
                    outcome.error = "cancelled"
                    return outcome
                case .halt(let reason):
                    let line = "model '\(modelName)' (\(spec.model) at \(spec.redactedEndpoint)): \(reason)"
                    if context.circuit.open(line) {
                        context.event("circuit_opened", step: path, ["model": .string(modelName), "status": sent.status.map { .number(Double($0)) } ?? .null,
                                                                     "error": .string(reason)])
                    }
                    outcome.halted = true
                    outcome.error = "\(path): \(line)"
                    return outcome
                case .fatal(let reason):
                    lastError = "\(modelName): \(reason)"
                case .retry(let reason, let retryAfter):
                    lastError = "\(modelName): \(reason)"
                    if retry < agent.retries && !recorded {
                        let delay = context.retryPolicy.delay(retry: retry + 1, retryAfter: retryAfter, using: &rng)
                        do { try await context.loop.sleep(for: delay) } catch {
                            outcome.cancelled = true
                            outcome.error = "cancelled"
                            return outcome
                        }
                    }
                    continue
                case .invalid(let reason, let answer):
                    lastError = "\(modelName): \(reason)"
                    // The same prompt at the same max_tokens mostly runs into the limit again:
                    // a truncated answer hands the step to the next model at once (the last
                    // model uses its retries: sampling may still give a shorter answer).
                    if answer?.truncated == true && agent.outputSchema != nil && modelIndex + 1 < models.count { break }
                    continue
                }
                break  // fatal, or cut at max_tokens: this model cannot answer; escalate
            }
            if modelIndex + 1 < models.count {
                context.event("escalated", step: path, ["from": .string(modelName), "to": .string(models[modelIndex + 1]),
                                                        "reason": .string(lastError)])
            }
        }
        outcome.error = "\(path): \(lastError) (after \(outcome.attempts) attempt\(outcome.attempts == 1 ? "" : "s"))"
        return outcome
    }

    /// What one HTTP call gave: its verdict, and the status, body and first-token time to record.
    private struct Sent {
        var verdict: Verdict
        var status: Int? = nil
        var body: [UInt8]? = nil
        var firstTokenMs: Double? = nil
    }

    /// One HTTP call and its verdict.
    private func send(_ endpoint: ModelEndpoint, body: [UInt8], agent: AgentSpec, maxTokens: Int, timeout: Duration, path: String,
                      attempt: Int) async -> Sent {
        let status: Int
        let responseBody: [UInt8]
        let firstTokenMs: Double?
        switch await context.transport(for: path).exchange(endpoint, body: body, step: path, attempt: attempt, timeout: timeout) {
        case .cancelled:
            return Sent(verdict: .cancelled)
        case .failure(let failure):
            let verdict: Verdict = switch failure.kind {
            case .transient: .retry(failure.detail, retryAfter: failure.retryAfter)
            case .configuration: .halt(failure.detail)
            case .rejected: .fatal(failure.detail)
            }
            return Sent(verdict: verdict, status: failure.status, body: failure.body)
        case .response(let code, let body, let firstToken):
            status = code
            responseBody = body
            firstTokenMs = firstToken
        }
        func sent(_ verdict: Verdict) -> Sent { Sent(verdict: verdict, status: status, body: responseBody, firstTokenMs: firstTokenMs) }
        var answer: ModelAnswer
        do { answer = try ModelAnswerParser.parse(responseBody, provider: endpoint.spec.provider) } catch {
            return sent(.invalid(error.description, nil))
        }
        if answer.tokensIn == 0 && answer.tokensOut == 0 {
            // Some servers report no usage (llama-cpp-python's streams): estimate at four bytes
            // a token rather than record a free call.
            answer.tokensIn = body.count / 4
            answer.tokensOut = (answer.text.utf8.count + 3) / 4
        }
        guard let schema = agent.outputSchema else { return sent(.accepted(.string(answer.text), answer)) }
        if answer.truncated {
            // Cut mid-answer: say so, rather than "not JSON".
            return sent(.invalid("answer truncated at max_tokens (\(maxTokens); finish reason \(answer.finishReason ?? "")): "
                                 + "raise max_tokens for the agent or the model", answer))
        }
        let value: JSONValue
        do { value = try ModelAnswerParser.json(from: answer.text) } catch {
            return sent(.invalid(error.description, answer))
        }
        let violations = JSONSchemaValidator(schema: schema).validate(value)
        guard violations.isEmpty else {
            return sent(.invalid("answer fails the output schema: \(violations.prefix(3).map(\.description).joined(separator: "; "))", answer))
        }
        return sent(.accepted(value, answer))
    }
}
