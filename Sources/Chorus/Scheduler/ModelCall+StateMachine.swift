/// One agent step's model calls: which model is asked, which try this is, which check the
/// step is at and what happens next — pure logic, no I/O. `AgentCaller` performs the
/// actions (checks, limiter, transport, tools, trace) and reports back the events.
///
/// A step passes these stages, in order: the input guards → the step's parallelism slot →
/// judge agents on the input → the data boundary (each model) → the tools offered; then per
/// request: the run's circuit → approval → budget reservation → the model's limiter → send
/// → parse (with the usage check) → output guards → validation → judge agents on the
/// answer → record. Every check answers with a `Verdict`, never a string to sniff.
enum ModelCall {
    /// What a step's calls may do, fixed when the step starts.
    struct Policy: Equatable {
        /// Models to try in order, small first.
        var models: Int
        /// Further tries per model after the first, for transient failures and invalid answers.
        var retries: Int
        /// Whether a transient failure waits (backoff, Retry-After) before the next try;
        /// false when replaying, where a recorded failure is served at once.
        var sleepsBeforeRetry = true
        /// Whether an answer cut at max_tokens goes to the next model at once instead of
        /// using this model's retries (the same prompt at the same limit mostly truncates again).
        var escalatesOnTruncation = false
        /// Model → tools → model rounds allowed before the answer must be final.
        var maxToolRounds = 0
        /// The longest wait a retry may take: the agent's timeout. A provider's Retry-After
        /// past it fails the model at once rather than holding the step (issue 17: with
        /// `Retry-After: 99999999`, agents with `timeout_s: 3` waited 120 s per retry).
        var maxWait: Duration? = nil
    }

    /// Where a step is: the model (index into the policy's models) and the retries used on it.
    struct Position: Equatable {
        var model: Int
        var retry: Int
    }

    /// A check the step passes through. Each lives in its own file (`AgentCaller+Checks…`).
    enum Stage: Equatable {
        /// The rendered prompts through the input guards (a redaction changes them).
        case inputGuards
        /// Judge agents on the input, with the step's parallelism slot.
        case inputJudges
        /// May this model receive the data labels this step carries?
        case boundary(model: Int)
        /// Is the run still making calls (no budget refusal, no refused provider, a writable trace)?
        case circuit
        /// A person's decision before this model is called (the model requires approval, or
        /// the call may cost more than the node allows without one).
        case approval(model: Int)
        /// The call's worst case reserved against the run's, the node's and the model's budgets.
        case budget(model: Int)
        /// The answer through the output guards (a redaction changes it).
        case outputGuards
        /// Judge agents on the answer of request `attempt`.
        case judges(attempt: Int)
        /// Tools that require approval, before the answer's tool calls run.
        case toolApproval
        /// A person's decision before escalating (`"approval": "on_escalation"`).
        case escalation(from: Int, to: Int, reason: String)
    }

    /// What a check decided.
    enum Verdict: Equatable {
        case allow
        /// Allowed, with something redacted (the checked text was changed in place); says what.
        case redact(String)
        /// Not allowed: on the input, the step fails; on an answer, the answer is invalid.
        case deny(String)
        /// A person must decide first: the step stops, held, and resumes after the decision.
        case hold(String)
        /// The run stops making calls (a budget, an open circuit): the step is not run.
        case refuse(String)
    }

    /// Why a request got no usable response.
    enum Failure: Equatable {
        /// Worth another try: a timeout, a 429 or 5xx, a broken stream.
        case transient(String, retryAfter: Duration?)
        /// This model cannot answer this request (a 400, say): the next model may.
        case rejected(String)
        /// This model cannot answer any request (401, unknown model): the run stops.
        case configuration(String)
    }

    /// What a response turned out to be once parsed and its usage checked.
    enum Parsed: Equatable {
        /// A final answer, to be checked; `truncated` when cut at max_tokens.
        case answer(truncated: Bool)
        /// The model asked for tools; their results go back to it.
        case toolCalls
        /// Not usable (malformed, usage a provider cannot have meant).
        case invalid(String, truncated: Bool)
    }

    /// What validating a final answer (its schema) found.
    enum Validation: Equatable {
        case valid
        case invalid(String)
    }

    /// What the trace records for one request.
    enum CallResult: Equatable {
        case answered
        case toolCalls
        case invalid(String)
        case failed(String)
        case cancelled
    }

    /// How the step's calls ended.
    enum Finish: Equatable {
        case succeeded(model: Int)
        /// Every model ran out of tries; the last one's reason (nil when there was no model).
        case failed(model: Int?, reason: String)
        /// A check ended the step before a model could answer it (an input guard, the data
        /// boundary, a denied approval, the tools that could not be offered): the reason as is.
        case denied(String)
        /// A person must decide before the step goes on.
        case held(String)
        /// A configuration failure: the run stops.
        case halted(model: Int, reason: String)
        case cancelled
        /// The run stopped (its circuit opened, a budget refused) before this step's next call.
        case notRun(String)
    }

    /// What the driver reports back.
    enum Event: Equatable {
        /// A `check` action's verdict.
        case checked(Verdict)
        /// The step has its parallelism slot.
        case entered
        /// The agent's tools are offered (how many; 0 for an agent without tools).
        case offered(tools: Int)
        /// The tools could not be offered (an MCP server that does not start, say).
        case offerFailed(String)
        /// The request is built.
        case prepared
        /// The limiter let the request go.
        case admitted
        case responded
        case failed(Failure)
        case parsed(Parsed)
        case validated(Validation)
        /// The request is in the trace.
        case recorded
        case toolsFinished
        case slept
        /// The escalation is recorded; the next model starts afresh.
        case escalated
        /// The step's task was cancelled.
        case cancelled
    }

    /// What the driver does next.
    enum Action: Equatable {
        /// Run a check, then report `checked(verdict)` (or `cancelled`).
        case check(Stage)
        /// Take the step's parallelism slot, then report `entered` (or `cancelled`).
        case enter
        /// Offer the agent's tools, then report `offered` or `offerFailed`.
        case offerTools
        /// Build the request for the model (the conversation so far), then report `prepared`.
        case prepare(model: Int)
        /// Wait for the model's limiter, then report `admitted` or `cancelled`.
        case acquire(model: Int)
        /// Send the request (attempt counts every request of the step, from 1), then
        /// report `responded`, `failed` or `cancelled`.
        case send(model: Int, attempt: Int)
        /// Parse the model's response and check its usage, then report `parsed`.
        case parse(model: Int)
        /// Check the final answer against the agent's schema, then report `validated`.
        case validate(model: Int)
        /// Account for request `attempt` to the model (limiter, budgets, cost) and trace it,
        /// then report `recorded`.
        case record(CallResult, model: Int, attempt: Int)
        /// Run the tool calls the answer to request `attempt` asked for (concurrently), then
        /// report `toolsFinished`.
        case runTools(round: Int, attempt: Int)
        /// Wait before retry `retry` (backoff, or the provider's Retry-After), then report `slept`.
        case sleep(retry: Int, retryAfter: Duration?)
        /// Record that the step moves to the next model, then report `escalated`.
        case escalate(from: Int, to: Int, reason: String)
        /// The step's calls are over.
        case finish(Finish)
    }

    struct StateMachine {
        /// The checks before a request, in order.
        enum Gate: Equatable { case circuit, approval, budget }

        /// What a recorded request leads to.
        enum Next: Equatable {
            case accept
            case runTools
            case retry(String)
            case fail(Failure)
            case cancel
        }

        enum State: Equatable {
            case queued
            case checkingInput
            case entering
            case judgingInput
            case checkingBoundary(model: Int)
            case offering
            case preparing(Position)
            case gating(Position, Gate)
            case acquiring(Position)
            case sending(Position)
            case parsing(Position)
            case checkingOutput(Position)
            case validating(Position)
            case judging(Position)
            case recording(Position, then: Next)
            case approvingTools(Position)
            case awaitingTools(Position)
            case retrying(Position)
            case approvingEscalation(from: Int, to: Int, reason: String)
            case escalating(from: Int, to: Int)
            case done(Finish)
        }

        private(set) var policy: Policy
        private(set) var state: State = .queued
        /// Requests sent so far in this step, over every model.
        private(set) var attempts = 0
        /// Tool rounds in the current model's conversation.
        private(set) var toolRounds = 0
        /// Models the data boundary refused for this step: never asked, never escalated to.
        private(set) var refused: Set<Int> = []
        private var refusals: [String] = []
        /// Whether the answer being checked was cut at max_tokens.
        private var truncated = false

        init(policy: Policy) {
            self.policy = policy
        }

        /// The position of the request in flight or being checked, if there is one.
        var position: Position? {
            switch state {
            case .preparing(let position), .gating(let position, _), .acquiring(let position), .sending(let position), .parsing(let position),
                .checkingOutput(let position), .validating(let position), .judging(let position), .recording(let position, _),
                .approvingTools(let position), .awaitingTools(let position), .retrying(let position):
                position
            default: nil
            }
        }

        /// The step begins: its input is checked first.
        mutating func start() -> Action {
            guard case .queued = state else { illegal("start") }
            guard policy.models > 0 else { return finish(.failed(model: nil, reason: "no model tried")) }
            state = .checkingInput
            return .check(.inputGuards)
        }

        /// Takes the next event; returns the next action.
        mutating func next(_ event: Event) -> Action {
            if case .cancelled = event { return cancel() }
            switch (state, event) {
            case (.checkingInput, .checked(let verdict)):
                guard verdict.passes else { return stop(verdict) }
                state = .entering
                return .enter
            case (.entering, .entered):
                state = .judgingInput
                return .check(.inputJudges)
            case (.judgingInput, .checked(let verdict)):
                guard verdict.passes else { return stop(verdict) }
                state = .checkingBoundary(model: 0)
                return .check(.boundary(model: 0))
            case (.checkingBoundary(let model), .checked(let verdict)):
                switch verdict {
                case .allow, .redact: break
                case .deny(let reason):
                    refused.insert(model)
                    refusals.append(reason)
                case .hold, .refuse: return stop(verdict)
                }
                if model + 1 < policy.models {
                    state = .checkingBoundary(model: model + 1)
                    return .check(.boundary(model: model + 1))
                }
                guard refused.count < policy.models else { return finish(.denied(refusals.joined(separator: "; "))) }
                state = .offering
                return .offerTools
            case (.offering, .offered(let tools)):
                if tools == 0 { policy.maxToolRounds = 0 }
                return admit(Position(model: firstModel(after: -1) ?? 0, retry: 0))
            case (.offering, .offerFailed(let reason)):
                return finish(.denied(reason))
            case (.preparing(let position), .prepared):
                state = .gating(position, .circuit)
                return .check(.circuit)
            case (.gating(let position, let gate), .checked(let verdict)):
                guard verdict.passes else { return stop(verdict) }
                switch gate {
                case .circuit:
                    state = .gating(position, .approval)
                    return .check(.approval(model: position.model))
                case .approval:
                    state = .gating(position, .budget)
                    return .check(.budget(model: position.model))
                case .budget:
                    state = .acquiring(position)
                    return .acquire(model: position.model)
                }
            case (.acquiring(let position), .admitted):
                attempts += 1
                state = .sending(position)
                return .send(model: position.model, attempt: attempts)
            case (.sending(let position), .responded):
                state = .parsing(position)
                return .parse(model: position.model)
            case (.sending(let position), .failed(let failure)):
                let reason =
                    switch failure {
                    case .transient(let reason, _), .rejected(let reason), .configuration(let reason): reason
                    }
                return record(position, .failed(reason), then: .fail(failure))
            case (.parsing(let position), .parsed(let parsed)):
                switch parsed {
                case .answer(let truncated):
                    self.truncated = truncated
                    state = .checkingOutput(position)
                    return .check(.outputGuards)
                case .toolCalls:
                    truncated = false
                    return record(position, .toolCalls, then: .runTools)
                case .invalid(let reason, let truncated):
                    self.truncated = truncated
                    return record(position, .invalid(reason), then: .retry(reason))
                }
            case (.checkingOutput(let position), .checked(let verdict)):
                if case .deny(let reason) = verdict { return record(position, .invalid(reason), then: .retry(reason)) }
                guard verdict.passes else { return stop(verdict) }
                state = .validating(position)
                return .validate(model: position.model)
            case (.validating(let position), .validated(.valid)):
                state = .judging(position)
                return .check(.judges(attempt: attempts))
            case (.validating(let position), .validated(.invalid(let reason))):
                return record(position, .invalid(reason), then: .retry(reason))
            case (.judging(let position), .checked(let verdict)):
                if case .deny(let reason) = verdict { return record(position, .invalid(reason), then: .retry(reason)) }
                guard verdict.passes else { return stop(verdict) }
                return record(position, .answered, then: .accept)
            case (.recording(let position, let next), .recorded):
                return recorded(position, next)
            case (.approvingTools(let position), .checked(let verdict)):
                guard verdict.passes else { return stop(verdict) }
                state = .awaitingTools(position)
                return .runTools(round: toolRounds, attempt: attempts)
            case (.awaitingTools(let position), .toolsFinished):
                return admit(position)
            case (.retrying(let position), .slept):
                return admit(Position(model: position.model, retry: position.retry + 1))
            case (.approvingEscalation(let from, let to, let reason), .checked(let verdict)):
                guard verdict.passes else { return stop(verdict) }
                state = .escalating(from: from, to: to)
                return .escalate(from: from, to: to, reason: reason)
            case (.escalating(_, let to), .escalated):
                toolRounds = 0
                return admit(Position(model: to, retry: 0))
            default:
                illegal("\(event)")
            }
        }

        // MARK: helpers

        /// A request's outcome is in the trace: go on as it decided.
        private mutating func recorded(_ position: Position, _ next: Next) -> Action {
            switch next {
            case .accept:
                return finish(.succeeded(model: position.model))
            case .cancel:
                return finish(.cancelled)
            case .runTools:
                guard toolRounds < policy.maxToolRounds else {
                    // Asking again would ask for tools again: the next model may do better.
                    return exhausted(
                        position,
                        policy.maxToolRounds == 0
                            ? "asked for tools, but the agent has none"
                            : "still asking for tools after max_tool_rounds (\(policy.maxToolRounds))")
                }
                toolRounds += 1
                state = .approvingTools(position)
                return .check(.toolApproval)
            case .retry(let reason):
                if truncated && policy.escalatesOnTruncation && firstModel(after: position.model) != nil {
                    return exhausted(position, reason)
                }
                guard position.retry < policy.retries else { return exhausted(position, reason) }
                return admit(Position(model: position.model, retry: position.retry + 1))
            case .fail(.transient(let reason, let retryAfter)):
                guard position.retry < policy.retries else { return exhausted(position, reason) }
                if policy.sleepsBeforeRetry, let retryAfter, let limit = policy.maxWait, retryAfter > limit {
                    return exhausted(
                        position,
                        "\(reason); the provider asked to wait \(retryAfter.shortText) (Retry-After), "
                            + "longer than the step's \(limit.shortText) timeout")
                }
                if policy.sleepsBeforeRetry {
                    state = .retrying(position)
                    return .sleep(retry: position.retry + 1, retryAfter: retryAfter)
                }
                return admit(Position(model: position.model, retry: position.retry + 1))
            case .fail(.rejected(let reason)):
                return exhausted(position, reason)
            case .fail(.configuration(let reason)):
                return finish(.halted(model: position.model, reason: reason))
            }
        }

        private mutating func record(_ position: Position, _ result: CallResult, then next: Next) -> Action {
            state = .recording(position, then: next)
            return .record(result, model: position.model, attempt: attempts)
        }

        /// The request is built, then checked from the first gate.
        private mutating func admit(_ position: Position) -> Action {
            state = .preparing(position)
            return .prepare(model: position.model)
        }

        /// The first model after `index` the data boundary did not refuse.
        private func firstModel(after index: Int) -> Int? {
            ((index + 1)..<max(index + 1, policy.models)).first { !refused.contains($0) }
        }

        /// `position`'s model has no tries left: the next model (once approved), or the end.
        private mutating func exhausted(_ position: Position, _ reason: String) -> Action {
            guard let to = firstModel(after: position.model) else { return finish(.failed(model: position.model, reason: reason)) }
            state = .approvingEscalation(from: position.model, to: to, reason: reason)
            return .check(.escalation(from: position.model, to: to, reason: reason))
        }

        /// A check that did not pass ends the step.
        private mutating func stop(_ verdict: Verdict) -> Action {
            switch verdict {
            case .allow, .redact: illegal("stop(\(verdict))")
            case .deny(let reason): return finish(.denied(reason))
            case .hold(let reason): return finish(.held(reason))
            case .refuse(let reason): return finish(.notRun(reason))
            }
        }

        /// Cancellation: a request on the wire is recorded first; otherwise the step ends.
        private mutating func cancel() -> Action {
            switch state {
            case .done: illegal("cancelled after the step finished")
            case .sending(let position): return record(position, .cancelled, then: .cancel)
            default: return finish(.cancelled)
            }
        }

        private mutating func finish(_ finish: Finish) -> Action {
            state = .done(finish)
            return .finish(finish)
        }

        /// An event the current state cannot take: a bug in the driver, never input.
        private func illegal(_ event: String) -> Never {
            preconditionFailure("ModelCall.StateMachine: \(event) in state \(state)")
        }
    }
}

extension ModelCall.Verdict {
    /// Whether the step goes on.
    var passes: Bool {
        switch self {
        case .allow, .redact: true
        case .deny, .hold, .refuse: false
        }
    }
}
