@testable import Chorus
import Testing

/// The model-call state machine, without sockets: every transition, every retry and
/// escalation path, tool loops, cancellation in every state, and an exhaustive walk of
/// every event sequence for small policies.
@Suite struct ModelCallStateMachineTests {
    typealias Machine = ModelCall.StateMachine

    private func machine(models: Int = 2, retries: Int = 1, sleeps: Bool = true, truncationEscalates: Bool = false,
                         toolRounds: Int = 0) -> Machine {
        Machine(policy: .init(models: models, retries: retries, sleepsBeforeRetry: sleeps,
                              escalatesOnTruncation: truncationEscalates, maxToolRounds: toolRounds))
    }

    @Test func aFirstAnswerThatPassesFinishesOnTheFirstModel() {
        var m = machine()
        #expect(m.start() == .acquire(model: 0))
        #expect(m.admitted() == .send(model: 0, attempt: 1))
        #expect(m.responded() == .validate)
        #expect(m.validated(.accepted) == .finish(.succeeded(model: 0)))
        #expect(m.attempts == 1)
        #expect(m.state == .done(.succeeded(model: 0)))
    }

    @Test func noModelFailsAtOnce() {
        var m = machine(models: 0)
        #expect(m.start() == .finish(.failed(model: nil, reason: "no model tried")))
    }

    @Test func aTransientFailureSleepsThenRetriesTheSameModelThenEscalates() {
        var m = machine(models: 2, retries: 1)
        _ = m.start(); _ = m.admitted()
        #expect(m.failed(.transient("HTTP 503", retryAfter: .seconds(2))) == .sleep(retry: 1, retryAfter: .seconds(2)))
        #expect(m.state == .retrying(.init(model: 0, retry: 0)))
        #expect(m.slept() == .acquire(model: 0))
        #expect(m.admitted() == .send(model: 0, attempt: 2))
        #expect(m.failed(.transient("HTTP 503", retryAfter: nil)) == .escalate(from: 0, to: 1, reason: "HTTP 503"))
        #expect(m.escalated() == .acquire(model: 1))
        #expect(m.admitted() == .send(model: 1, attempt: 3))
        #expect(m.responded() == .validate)
        #expect(m.validated(.accepted) == .finish(.succeeded(model: 1)))
    }

    /// A Retry-After longer than the agent's timeout fails the model at once (the next
    /// model is asked); one within it is waited for.
    @Test func aRetryAfterPastTheStepsTimeoutFailsTheModelAtOnce() {
        var m = Machine(policy: .init(models: 2, retries: 3, maxWait: .seconds(3)))
        _ = m.start(); _ = m.admitted()
        #expect(m.failed(.transient("HTTP 429", retryAfter: .seconds(2))) == .sleep(retry: 1, retryAfter: .seconds(2)))
        _ = m.slept(); _ = m.admitted()
        #expect(m.failed(.transient("HTTP 429", retryAfter: .seconds(99_999_999)))
                == .escalate(from: 0, to: 1, reason: "HTTP 429; the provider asked to wait \(Duration.seconds(99_999_999).shortText) (Retry-After), longer than the step's 3s timeout"))
    }

    @Test func replayRetriesWithoutSleeping() {
        var m = machine(models: 1, retries: 2, sleeps: false)
        _ = m.start(); _ = m.admitted()
        #expect(m.failed(.transient("timeout", retryAfter: nil)) == .acquire(model: 0))
        _ = m.admitted()
        #expect(m.failed(.transient("timeout", retryAfter: nil)) == .acquire(model: 0))
        _ = m.admitted()
        #expect(m.failed(.transient("timeout", retryAfter: nil)) == .finish(.failed(model: 0, reason: "timeout")))
        #expect(m.attempts == 3)
    }

    @Test func aRejectedRequestEscalatesWithoutRetrying() {
        var m = machine(models: 2, retries: 3)
        _ = m.start(); _ = m.admitted()
        #expect(m.failed(.rejected("HTTP 400")) == .escalate(from: 0, to: 1, reason: "HTTP 400"))
        _ = m.escalated(); _ = m.admitted()
        #expect(m.failed(.rejected("HTTP 400")) == .finish(.failed(model: 1, reason: "HTTP 400")))
        #expect(m.attempts == 2)
    }

    @Test func aConfigurationFailureHaltsWhateverIsLeft() {
        var m = machine(models: 3, retries: 3)
        _ = m.start(); _ = m.admitted()
        #expect(m.failed(.configuration("HTTP 401")) == .finish(.halted(model: 0, reason: "HTTP 401")))
    }

    @Test func anInvalidAnswerRetriesAtOnceThenEscalates() {
        var m = machine(models: 2, retries: 1)
        _ = m.start(); _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.invalid("not JSON", truncated: false)) == .acquire(model: 0), "no sleep: the provider is fine")
        _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.invalid("not JSON", truncated: false)) == .escalate(from: 0, to: 1, reason: "not JSON"))
    }

    @Test func aTruncatedAnswerEscalatesAtOnceOnlyWhenThePolicySaysAndAModelIsLeft() {
        var escalating = machine(models: 2, retries: 3, truncationEscalates: true)
        _ = escalating.start(); _ = escalating.admitted(); _ = escalating.responded()
        #expect(escalating.validated(.invalid("cut", truncated: true)) == .escalate(from: 0, to: 1, reason: "cut"))
        _ = escalating.escalated(); _ = escalating.admitted(); _ = escalating.responded()
        #expect(escalating.validated(.invalid("cut", truncated: true)) == .acquire(model: 1), "the last model uses its retries")

        var text = machine(models: 2, retries: 3, truncationEscalates: false)
        _ = text.start(); _ = text.admitted(); _ = text.responded()
        #expect(text.validated(.invalid("cut", truncated: true)) == .acquire(model: 0))
    }

    @Test func toolRoundsLoopBackToTheSameModelUpToTheLimit() {
        var m = machine(models: 2, retries: 0, toolRounds: 2)
        _ = m.start(); _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.toolCalls) == .runTools(round: 1))
        #expect(m.state == .awaitingTools(.init(model: 0, retry: 0)))
        #expect(m.toolsFinished() == .acquire(model: 0))
        #expect(m.admitted() == .send(model: 0, attempt: 2))
        _ = m.responded()
        #expect(m.validated(.toolCalls) == .runTools(round: 2))
        _ = m.toolsFinished(); _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.toolCalls) == .escalate(from: 0, to: 1, reason: "still asking for tools after max_tool_rounds (2)"))
        #expect(m.escalated() == .acquire(model: 1))
        _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.toolCalls) == .runTools(round: 1), "the next model starts its own conversation")
    }

    @Test func anAgentWithoutToolsThatGetsToolCallsTreatsThemAsAFailedAnswer() {
        var m = machine(models: 1, retries: 2)
        _ = m.start(); _ = m.admitted(); _ = m.responded()
        #expect(m.validated(.toolCalls) == .finish(.failed(model: 0, reason: "asked for tools, but the agent has none")))
    }

    @Test func aStoppedRunFinishesTheStepAsNotRun() {
        var m = machine()
        _ = m.start()
        #expect(m.stopped("model 'x': HTTP 401") == .finish(.notRun("model 'x': HTTP 401")))
        #expect(m.attempts == 0)
    }

    /// Cancellation is accepted in every state but done, and always finishes the step.
    @Test func cancellationFinishesTheStepFromEveryState() {
        let routes: [(String, (inout Machine) -> Void)] = [
            ("queued", { _ in }),
            ("admitting", { _ = $0.start() }),
            ("sending", { _ = $0.start(); _ = $0.admitted() }),
            ("validating", { _ = $0.start(); _ = $0.admitted(); _ = $0.responded() }),
            ("awaiting tools", { _ = $0.start(); _ = $0.admitted(); _ = $0.responded(); _ = $0.validated(.toolCalls) }),
            ("retrying", { _ = $0.start(); _ = $0.admitted(); _ = $0.failed(.transient("503", retryAfter: nil)) }),
            ("escalating", { _ = $0.start(); _ = $0.admitted(); _ = $0.failed(.rejected("400")) }),
        ]
        for (name, route) in routes {
            var m = machine(models: 2, retries: 1, toolRounds: 1)
            route(&m)
            #expect(m.cancelled() == .finish(.cancelled), "from \(name)")
            #expect(m.state == .done(.cancelled))
            #expect(m.cancelled() == nil, "a finished step ignores a late cancellation")
        }
    }

    /// Every sequence of outcomes for small policies: each ends in `finish`, within the
    /// bound the policy implies, and never sends more requests than it allows.
    @Test(arguments: [(1, 0, 0), (2, 1, 0), (2, 2, 1), (3, 1, 1)])
    func everyPathEndsWithinThePolicysBound(models: Int, retries: Int, toolRounds: Int) {
        let maxAttempts = models * (retries + 1) * (toolRounds + 1)
        var finished = 0
        func walk(_ m: Machine, _ action: ModelCall.Action, depth: Int) {
            #expect(depth < 10 * maxAttempts + 10, "a path that does not end")
            guard depth < 10 * maxAttempts + 10 else { return }
            var next: [(inout Machine) -> ModelCall.Action?] = []
            switch action {
            case .finish:
                finished += 1
                #expect(m.attempts <= maxAttempts, "sent \(m.attempts), allowed \(maxAttempts)")
                return
            case .acquire: next = [{ $0.admitted() }, { $0.stopped("stop") }, { $0.cancelled() }]
            case .send: next = [{ $0.responded() }, { $0.failed(.transient("t", retryAfter: nil)) }, { $0.failed(.rejected("r")) },
                                { $0.failed(.configuration("c")) }, { $0.cancelled() }]
            case .validate: next = [{ $0.validated(.accepted) }, { $0.validated(.toolCalls) },
                                    { $0.validated(.invalid("i", truncated: false)) }, { $0.validated(.invalid("i", truncated: true)) }]
            case .runTools: next = [{ $0.toolsFinished() }, { $0.cancelled() }]
            case .sleep: next = [{ $0.slept() }, { $0.cancelled() }]
            case .escalate: next = [{ $0.escalated() }]
            }
            for event in next {
                var copy = m
                guard let following = event(&copy) else { continue }
                walk(copy, following, depth: depth + 1)
            }
        }
        for sleeps in [true, false] {
            for escalates in [true, false] {
                var m = machine(models: models, retries: retries, sleeps: sleeps, truncationEscalates: escalates, toolRounds: toolRounds)
                let first = m.start()
                walk(m, first, depth: 0)
            }
        }
        #expect(finished > 0)
    }
}

/// Against the simulator: every answer a 429 asking to wait an hour; agents with a 2 s
/// timeout fail in well under the 120 s a capped wait would take, saying why.
@Suite struct RetryAfterDeadlineTests {
    @Test func aProviderAskingToWaitAnHourFailsTheStepAtOnce() async throws {
        let h = try RunHarness { $0.rateLimitRate = 1; $0.retryAfterSeconds = 3600 }
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: ["timeout_s": 2])
        let workflow = try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
        let (summary, _) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(h.stats()["requests"]?.intValue == 1, "no retry after the first 429")
        #expect((summary.error ?? "").contains("longer than the step's 2s timeout"), "\(summary.error ?? "")")
        await h.shutdown()
    }
}
