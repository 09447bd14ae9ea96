/// One agent step's model calls: which model is asked, which try this is, and what
/// happens next — pure logic, no I/O. `AgentCaller` performs the actions (limiter,
/// transport, tools, trace) and reports back the events.
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

    /// Why a request got no usable response.
    enum Failure: Equatable {
        /// Worth another try: a timeout, a 429 or 5xx, a broken stream.
        case transient(String, retryAfter: Duration?)
        /// This model cannot answer this request (a 400, say): the next model may.
        case rejected(String)
        /// This model cannot answer any request (401, unknown model): the run stops.
        case configuration(String)
    }

    /// What an answer turned out to be once parsed and checked.
    enum Verdict: Equatable {
        /// A final answer that passed every check.
        case accepted
        /// The model asked for tools; their results go back to it.
        case toolCalls
        /// Not usable (malformed, fails the schema); `truncated` when cut at max_tokens.
        case invalid(String, truncated: Bool)
    }

    /// How the step's calls ended.
    enum Finish: Equatable {
        case succeeded(model: Int)
        /// Every model ran out of tries; the last one's reason (nil when there was no model).
        case failed(model: Int?, reason: String)
        /// A configuration failure: the run stops.
        case halted(model: Int, reason: String)
        case cancelled
        /// The run stopped (its circuit opened) before this step's next call.
        case notRun(String)
    }

    /// What the driver does next.
    enum Action: Equatable {
        /// Wait for the model's limiter, then report `admitted`, `cancelled` or `stopped`.
        case acquire(model: Int)
        /// Send the request (attempt counts every request of the step, from 1), then
        /// report `responded`, `failed` or `cancelled`.
        case send(model: Int, attempt: Int)
        /// Parse and check the response, then report `validated`.
        case validate
        /// Run the tool calls the answer asked for (concurrently), then report `toolsFinished`.
        case runTools(round: Int)
        /// Wait before retry `retry` (backoff, or the provider's Retry-After), then report `slept`.
        case sleep(retry: Int, retryAfter: Duration?)
        /// Record that the step moves to the next model, then report `escalated`.
        case escalate(from: Int, to: Int, reason: String)
        /// The step's calls are over.
        case finish(Finish)
    }

    struct StateMachine {
        enum State: Equatable {
            case queued
            case admitting(Position)
            case sending(Position)
            case validating(Position)
            case awaitingTools(Position)
            case retrying(Position)
            case escalating(from: Int, to: Int)
            case done(Finish)
        }

        let policy: Policy
        private(set) var state: State = .queued
        /// Requests sent so far in this step, over every model.
        private(set) var attempts = 0
        /// Tool rounds in the current model's conversation.
        private(set) var toolRounds = 0

        init(policy: Policy) {
            self.policy = policy
        }

        /// The step begins: ask the first model.
        mutating func start() -> Action {
            guard case .queued = state else { illegal("start") }
            guard policy.models > 0 else { return finish(.failed(model: nil, reason: "no model tried")) }
            return admit(Position(model: 0, retry: 0))
        }

        /// The limiter let the request go.
        mutating func admitted() -> Action {
            guard case .admitting(let position) = state else { illegal("admitted") }
            attempts += 1
            state = .sending(position)
            return .send(model: position.model, attempt: attempts)
        }

        /// The run stopped before this request was sent (its circuit is open).
        mutating func stopped(_ reason: String) -> Action {
            guard case .admitting = state else { illegal("stopped") }
            return finish(.notRun(reason))
        }

        /// A response arrived.
        mutating func responded() -> Action {
            guard case .sending(let position) = state else { illegal("responded") }
            state = .validating(position)
            return .validate
        }

        /// The request failed.
        mutating func failed(_ failure: Failure) -> Action {
            guard case .sending(let position) = state else { illegal("failed") }
            switch failure {
            case .transient(let reason, let retryAfter):
                guard position.retry < policy.retries else { return exhausted(position, reason) }
                if policy.sleepsBeforeRetry, let retryAfter, let limit = policy.maxWait, retryAfter > limit {
                    return exhausted(position, "\(reason); the provider asked to wait \(retryAfter.shortText) (Retry-After), "
                                     + "longer than the step's \(limit.shortText) timeout")
                }
                if policy.sleepsBeforeRetry {
                    state = .retrying(position)
                    return .sleep(retry: position.retry + 1, retryAfter: retryAfter)
                }
                return admit(Position(model: position.model, retry: position.retry + 1))
            case .rejected(let reason):
                return exhausted(position, reason)
            case .configuration(let reason):
                return finish(.halted(model: position.model, reason: reason))
            }
        }

        /// The response was parsed and checked.
        mutating func validated(_ verdict: Verdict) -> Action {
            guard case .validating(let position) = state else { illegal("validated") }
            switch verdict {
            case .accepted:
                return finish(.succeeded(model: position.model))
            case .toolCalls:
                guard toolRounds < policy.maxToolRounds else {
                    // Asking again would ask for tools again: the next model may do better.
                    return exhausted(position, policy.maxToolRounds == 0
                                     ? "asked for tools, but the agent has none"
                                     : "still asking for tools after max_tool_rounds (\(policy.maxToolRounds))")
                }
                toolRounds += 1
                state = .awaitingTools(position)
                return .runTools(round: toolRounds)
            case .invalid(let reason, let truncated):
                if truncated && policy.escalatesOnTruncation && position.model + 1 < policy.models {
                    return exhausted(position, reason)
                }
                guard position.retry < policy.retries else { return exhausted(position, reason) }
                return admit(Position(model: position.model, retry: position.retry + 1))
            }
        }

        /// The tools of the last answer have results; the model continues the conversation.
        mutating func toolsFinished() -> Action {
            guard case .awaitingTools(let position) = state else { illegal("toolsFinished") }
            return admit(position)
        }

        /// The wait before a retry is over.
        mutating func slept() -> Action {
            guard case .retrying(let position) = state else { illegal("slept") }
            return admit(Position(model: position.model, retry: position.retry + 1))
        }

        /// The escalation is recorded; the next model starts afresh.
        mutating func escalated() -> Action {
            guard case .escalating(_, let to) = state else { illegal("escalated") }
            toolRounds = 0
            return admit(Position(model: to, retry: 0))
        }

        /// The step's task was cancelled. Nil when the step had finished already.
        mutating func cancelled() -> Action? {
            if case .done = state { return nil }
            return finish(.cancelled)
        }

        // MARK: helpers

        private mutating func admit(_ position: Position) -> Action {
            state = .admitting(position)
            return .acquire(model: position.model)
        }

        /// `position`'s model has no tries left: the next model, or the end.
        private mutating func exhausted(_ position: Position, _ reason: String) -> Action {
            guard position.model + 1 < policy.models else { return finish(.failed(model: position.model, reason: reason)) }
            state = .escalating(from: position.model, to: position.model + 1)
            return .escalate(from: position.model, to: position.model + 1, reason: reason)
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
