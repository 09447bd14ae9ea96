@testable import Chorus
import Testing

/// The model-call state machine, without sockets: every stage in order, every check's
/// verdicts, every retry and escalation path, tool loops, cancellation in every state,
/// and an exhaustive walk of every event sequence for small policies.
@Suite struct ModelCallStateMachineTests {
    typealias Machine = ModelCall.StateMachine
    typealias Action = ModelCall.Action

    private func machine(
        models: Int = 2, retries: Int = 1, sleeps: Bool = true, truncationEscalates: Bool = false,
        toolRounds: Int = 0
    ) -> Machine {
        Machine(
            policy: .init(
                models: models, retries: retries, sleepsBeforeRetry: sleeps,
                escalatesOnTruncation: truncationEscalates, maxToolRounds: toolRounds))
    }

    /// Answers every check with `allow` and every preparation with its event until the
    /// machine asks for something else: the next request's `send`, a response's stages.
    @discardableResult
    private func pass(_ m: inout Machine, _ action: Action, tools: Int = 1) -> Action {
        var action = action
        while true {
            switch action {
            case .check(let stage):
                if case .judges = stage { return action }
                if case .outputGuards = stage { return action }
                action = m.next(.checked(.allow))
            case .enter: action = m.next(.entered)
            case .offerTools: action = m.next(.offered(tools: tools))
            case .prepare: action = m.next(.prepared)
            case .acquire: action = m.next(.admitted)
            default: return action
            }
        }
    }

    /// A response that passes every check after it: parse, guards, validation, judges, record.
    private func accept(_ m: inout Machine) -> Action {
        _ = m.next(.responded)
        _ = m.next(.parsed(.answer(truncated: false)))
        _ = m.next(.checked(.allow))
        _ = m.next(.validated(.valid))
        _ = m.next(.checked(.allow))
        return m.next(.recorded)
    }

    @Test func aFirstAnswerPassesEveryStageInOrder() {
        var m = machine()
        var actions: [Action] = [m.start()]
        let events: [ModelCall.Event] = [
            .checked(.allow), .entered, .checked(.allow), .checked(.allow), .checked(.allow), .offered(tools: 0),
            .prepared, .checked(.allow), .checked(.allow), .checked(.allow), .admitted, .responded,
            .parsed(.answer(truncated: false)), .checked(.allow), .validated(.valid), .checked(.allow), .recorded,
        ]
        for event in events { actions.append(m.next(event)) }
        #expect(
            actions == [
                .check(.inputGuards), .enter, .check(.inputJudges), .check(.boundary(model: 0)), .check(.boundary(model: 1)), .offerTools,
                .prepare(model: 0), .check(.circuit), .check(.approval(model: 0)), .check(.budget(model: 0)), .acquire(model: 0),
                .send(model: 0, attempt: 1), .parse(model: 0), .check(.outputGuards), .validate(model: 0), .check(.judges(attempt: 1)),
                .record(.answered, model: 0, attempt: 1), .finish(.succeeded(model: 0)),
            ])
        #expect(m.attempts == 1)
        #expect(m.state == .done(.succeeded(model: 0)))
    }

    @Test func noModelFailsAtOnce() {
        var m = machine(models: 0)
        #expect(m.start() == .finish(.failed(model: nil, reason: "no model tried")))
    }

    /// A check on the input that does not pass ends the step, as its verdict says.
    @Test func anInputCheckThatDoesNotPassEndsTheStep() {
        for (verdict, finish) in [
            (ModelCall.Verdict.deny("input guard 'pii': no"), ModelCall.Finish.denied("input guard 'pii': no")),
            (.hold("awaiting approval"), .held("awaiting approval")), (.refuse("budget"), .notRun("budget")),
        ] {
            var m = machine()
            _ = m.start()
            #expect(m.next(.checked(verdict)) == .finish(finish))
            var judged = machine()
            _ = judged.start(); _ = judged.next(.checked(.redact("input"))); _ = judged.next(.entered)
            #expect(judged.next(.checked(verdict)) == .finish(finish), "the input judges")
        }
    }

    /// A model the boundary refuses is never asked nor escalated to; all refused, the step
    /// fails with every refusal.
    @Test func theBoundarySkipsRefusedModelsAndFailsWhenNoneIsLeft() {
        var m = machine(models: 3, retries: 0)
        _ = m.start(); _ = m.next(.checked(.allow)); _ = m.next(.entered); _ = m.next(.checked(.allow))
        _ = m.next(.checked(.deny("no to 0")))
        _ = m.next(.checked(.allow))
        #expect(m.next(.checked(.deny("no to 2"))) == .offerTools)
        #expect(m.next(.offered(tools: 0)) == .prepare(model: 1), "the first model the boundary allows")
        _ = pass(&m, .prepare(model: 1))
        _ = m.next(.responded)
        #expect(m.next(.parsed(.invalid("bad", truncated: false))) == .record(.invalid("bad"), model: 1, attempt: 1))
        #expect(m.next(.recorded) == .finish(.failed(model: 1, reason: "bad")), "model 2 is refused: no escalation to it")

        var none = machine(models: 2)
        _ = none.start(); _ = none.next(.checked(.allow)); _ = none.next(.entered); _ = none.next(.checked(.allow))
        _ = none.next(.checked(.deny("a")))
        #expect(none.next(.checked(.deny("b"))) == .finish(.denied("a; b")))
    }

    @Test func toolsThatCannotBeOfferedEndTheStep() {
        var m = machine()
        let offer = pass(&m, m.start())  // offered
        #expect(offer == .send(model: 0, attempt: 1))
        var failing = machine()
        _ = failing.start(); _ = failing.next(.checked(.allow)); _ = failing.next(.entered); _ = failing.next(.checked(.allow))
        _ = failing.next(.checked(.allow)); _ = failing.next(.checked(.allow))
        #expect(failing.next(.offerFailed("mcp server 'git' did not start")) == .finish(.denied("mcp server 'git' did not start")))
    }

    /// Before each request: the circuit, approval, the budget; each may stop the step.
    @Test func theGatesBeforeARequestStopTheStepAsTheirVerdictsSay() {
        let cases: [(Int, ModelCall.Verdict, ModelCall.Finish)] = [
            (0, .refuse("budget exhausted"), .notRun("budget exhausted")),
            (1, .hold("awaiting approval: model"), .held("awaiting approval: model")),
            (1, .deny("denied by ann"), .denied("denied by ann")),
            (2, .refuse("this node: budget"), .notRun("this node: budget")),
        ]
        for (gate, verdict, finish) in cases {
            var m = machine()
            var action = m.start()
            while action != .prepare(model: 0) {
                action = m.next(action == .enter ? .entered : action == .offerTools ? .offered(tools: 0) : .checked(.allow))
            }
            action = m.next(.prepared)
            for _ in 0..<gate { action = m.next(.checked(.allow)) }
            #expect(m.next(.checked(verdict)) == .finish(finish), "gate \(gate)")
            #expect(m.attempts == 0, "nothing was sent")
        }
    }

    @Test func aTransientFailureIsRecordedSleepsThenRetriesTheSameModelThenEscalatesOnceApproved() {
        var m = machine(models: 2, retries: 1)
        #expect(pass(&m, m.start()) == .send(model: 0, attempt: 1))
        #expect(m.next(.failed(.transient("HTTP 503", retryAfter: .seconds(2)))) == .record(.failed("HTTP 503"), model: 0, attempt: 1))
        #expect(m.next(.recorded) == .sleep(retry: 1, retryAfter: .seconds(2)))
        #expect(m.state == .retrying(.init(model: 0, retry: 0)))
        #expect(m.next(.slept) == .prepare(model: 0))
        #expect(pass(&m, .prepare(model: 0)) == .send(model: 0, attempt: 2))
        _ = m.next(.failed(.transient("HTTP 503", retryAfter: nil)))
        #expect(m.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "HTTP 503")))
        #expect(m.next(.checked(.allow)) == .escalate(from: 0, to: 1, reason: "HTTP 503"))
        #expect(m.next(.escalated) == .prepare(model: 1))
        #expect(pass(&m, .prepare(model: 1)) == .send(model: 1, attempt: 3))
        #expect(accept(&m) == .finish(.succeeded(model: 1)))
    }

    @Test func anEscalationAPersonMustApproveHoldsTheStep() {
        var m = machine(models: 2, retries: 0)
        _ = pass(&m, m.start())
        _ = m.next(.failed(.rejected("HTTP 400")))
        #expect(m.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "HTTP 400")))
        #expect(m.next(.checked(.hold("awaiting approval: escalating"))) == .finish(.held("awaiting approval: escalating")))
    }

    /// A Retry-After longer than the agent's timeout fails the model at once (the next
    /// model is asked); one within it is waited for.
    @Test func aRetryAfterPastTheStepsTimeoutFailsTheModelAtOnce() {
        var m = Machine(policy: .init(models: 2, retries: 3, maxWait: .seconds(3)))
        _ = pass(&m, m.start())
        _ = m.next(.failed(.transient("HTTP 429", retryAfter: .seconds(2))))
        #expect(m.next(.recorded) == .sleep(retry: 1, retryAfter: .seconds(2)))
        _ = pass(&m, m.next(.slept))
        _ = m.next(.failed(.transient("HTTP 429", retryAfter: .seconds(99_999_999))))
        #expect(
            m.next(.recorded)
                == .check(
                    .escalation(
                        from: 0, to: 1,
                        reason:
                            "HTTP 429; the provider asked to wait \(Duration.seconds(99_999_999).shortText) (Retry-After), longer than the step's 3s timeout")))
    }

    @Test func replayRetriesWithoutSleeping() {
        var m = machine(models: 1, retries: 2, sleeps: false)
        _ = pass(&m, m.start())
        for _ in 0..<2 {
            _ = m.next(.failed(.transient("timeout", retryAfter: nil)))
            #expect(m.next(.recorded) == .prepare(model: 0))
            _ = pass(&m, .prepare(model: 0))
        }
        _ = m.next(.failed(.transient("timeout", retryAfter: nil)))
        #expect(m.next(.recorded) == .finish(.failed(model: 0, reason: "timeout")))
        #expect(m.attempts == 3)
    }

    @Test func aRejectedRequestEscalatesWithoutRetrying() {
        var m = machine(models: 2, retries: 3)
        _ = pass(&m, m.start())
        _ = m.next(.failed(.rejected("HTTP 400")))
        #expect(m.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "HTTP 400")))
        _ = m.next(.checked(.allow)); _ = pass(&m, m.next(.escalated))
        _ = m.next(.failed(.rejected("HTTP 400")))
        #expect(m.next(.recorded) == .finish(.failed(model: 1, reason: "HTTP 400")))
        #expect(m.attempts == 2)
    }

    @Test func aConfigurationFailureHaltsWhateverIsLeft() {
        var m = machine(models: 3, retries: 3)
        _ = pass(&m, m.start())
        _ = m.next(.failed(.configuration("HTTP 401")))
        #expect(m.next(.recorded) == .finish(.halted(model: 0, reason: "HTTP 401")))
    }

    /// An answer that fails parsing, an output guard, validation or a judge is recorded as
    /// invalid and retried at once (the provider is fine), then escalated.
    @Test func anInvalidAnswerAtAnyStageRetriesAtOnceThenEscalates() {
        let invalidate: [(String, (inout Machine) -> Action)] = [
            ("parse", { $0.next(.parsed(.invalid("not JSON", truncated: false))) }),
            (
                "output guard",
                {
                    _ = $0.next(.parsed(.answer(truncated: false))); return $0.next(.checked(.deny("not JSON")))
                }
            ),
            (
                "validation",
                {
                    _ = $0.next(.parsed(.answer(truncated: false))); _ = $0.next(.checked(.allow))
                    return $0.next(.validated(.invalid("not JSON")))
                }
            ),
            (
                "judge",
                {
                    _ = $0.next(.parsed(.answer(truncated: false))); _ = $0.next(.checked(.redact("output")))
                    _ = $0.next(.validated(.valid)); return $0.next(.checked(.deny("not JSON")))
                }
            ),
        ]
        for (stage, invalid) in invalidate {
            var m = machine(models: 2, retries: 1)
            _ = pass(&m, m.start()); _ = m.next(.responded)
            #expect(invalid(&m) == .record(.invalid("not JSON"), model: 0, attempt: 1), "\(stage)")
            #expect(m.next(.recorded) == .prepare(model: 0), "no sleep: the provider is fine (\(stage))")
            _ = pass(&m, .prepare(model: 0)); _ = m.next(.responded)
            _ = invalid(&m)
            #expect(m.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "not JSON")), "\(stage)")
        }
    }

    @Test func aTruncatedAnswerEscalatesAtOnceOnlyWhenThePolicySaysAndAModelIsLeft() {
        var escalating = machine(models: 2, retries: 3, truncationEscalates: true)
        _ = pass(&escalating, escalating.start()); _ = escalating.next(.responded)
        _ = escalating.next(.parsed(.invalid("cut", truncated: true)))
        #expect(escalating.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "cut")))
        _ = escalating.next(.checked(.allow)); _ = pass(&escalating, escalating.next(.escalated)); _ = escalating.next(.responded)
        _ = escalating.next(.parsed(.answer(truncated: true))); _ = escalating.next(.checked(.allow))
        _ = escalating.next(.validated(.invalid("cut")))
        #expect(escalating.next(.recorded) == .prepare(model: 1), "the last model uses its retries")

        var text = machine(models: 2, retries: 3, truncationEscalates: false)
        _ = pass(&text, text.start()); _ = text.next(.responded)
        _ = text.next(.parsed(.invalid("cut", truncated: true)))
        #expect(text.next(.recorded) == .prepare(model: 0))
    }

    @Test func toolRoundsLoopBackToTheSameModelUpToTheLimit() {
        var m = machine(models: 2, retries: 0, toolRounds: 2)
        _ = pass(&m, m.start()); _ = m.next(.responded)
        #expect(m.next(.parsed(.toolCalls)) == .record(.toolCalls, model: 0, attempt: 1))
        #expect(m.next(.recorded) == .check(.toolApproval))
        #expect(m.next(.checked(.allow)) == .runTools(round: 1, attempt: 1))
        #expect(m.state == .awaitingTools(.init(model: 0, retry: 0)))
        #expect(m.next(.toolsFinished) == .prepare(model: 0))
        #expect(pass(&m, .prepare(model: 0)) == .send(model: 0, attempt: 2))
        _ = m.next(.responded); _ = m.next(.parsed(.toolCalls)); _ = m.next(.recorded)
        #expect(m.next(.checked(.allow)) == .runTools(round: 2, attempt: 2))
        _ = pass(&m, m.next(.toolsFinished)); _ = m.next(.responded); _ = m.next(.parsed(.toolCalls))
        #expect(m.next(.recorded) == .check(.escalation(from: 0, to: 1, reason: "still asking for tools after max_tool_rounds (2)")))
        _ = m.next(.checked(.allow))
        #expect(m.next(.escalated) == .prepare(model: 1))
        _ = pass(&m, .prepare(model: 1)); _ = m.next(.responded); _ = m.next(.parsed(.toolCalls))
        #expect(m.next(.recorded) == .check(.toolApproval), "the next model starts its own conversation")
        #expect(m.next(.checked(.hold("awaiting approval: tool"))) == .finish(.held("awaiting approval: tool")))
    }

    /// An agent with no tools (or none offered) treats tool calls as a failed answer.
    @Test func anAgentWithoutToolsThatGetsToolCallsTreatsThemAsAFailedAnswer() {
        var m = machine(models: 1, retries: 2, toolRounds: 3)
        _ = pass(&m, m.start(), tools: 0); _ = m.next(.responded); _ = m.next(.parsed(.toolCalls))
        #expect(m.next(.recorded) == .finish(.failed(model: 0, reason: "asked for tools, but the agent has none")))
    }

    /// Cancellation is accepted in every state but done, and always finishes the step; a
    /// request on the wire is recorded first. The script visits every state.
    @Test func cancellationFinishesTheStepFromEveryState() {
        let allow = ModelCall.Event.checked(.allow)
        let gates: [ModelCall.Event] = [.prepared, allow, allow, allow, .admitted]
        let script: [ModelCall.Event] =
            [allow, .entered, allow, allow, allow, .offered(tools: 1)] + gates
            + [.responded, .parsed(.toolCalls), .recorded, allow, .toolsFinished] + gates
            + [.failed(.transient("503", retryAfter: nil)), .recorded, .slept] + gates
            + [.responded, .parsed(.answer(truncated: false)), allow, .validated(.invalid("bad")), .recorded, allow, .escalated] + gates
            + [.responded, .parsed(.answer(truncated: false)), allow, .validated(.valid), allow, .recorded]
        var m = machine(models: 2, retries: 1, toolRounds: 1)
        var states = Set<String>()
        var action = m.start()
        for event in script {
            states.insert(String(describing: m.state).prefix { $0 != "(" }.description)
            var copy = m
            if case .sending = m.state {
                #expect(copy.next(.cancelled) == .record(.cancelled, model: m.position?.model ?? -1, attempt: m.attempts))
                #expect(copy.next(.recorded) == .finish(.cancelled))
            } else {
                #expect(copy.next(.cancelled) == .finish(.cancelled), "from \(m.state)")
            }
            #expect(copy.state == .done(.cancelled))
            action = m.next(event)
        }
        #expect(action == .finish(.succeeded(model: 1)))
        #expect(states.count == 19, "every state but queued and done: \(states.sorted())")
    }

    /// Every sequence of outcomes for small policies: each ends in `finish`, within the
    /// bound the policy implies, and never sends more requests than it allows.
    @Test(arguments: [(1, 0, 0), (2, 1, 0), (2, 2, 1), (3, 1, 1)])
    func everyPathEndsWithinThePolicysBound(models: Int, retries: Int, toolRounds: Int) {
        let maxAttempts = models * (retries + 1) * (toolRounds + 1)
        var finished = 0
        let verdicts: [ModelCall.Event] = [.checked(.allow), .checked(.deny("d")), .checked(.hold("h")), .checked(.refuse("r")), .cancelled]
        // Paths that meet in the same machine and action go on alike: each is walked once
        // (the tree itself is exponential in the requests allowed).
        var seen = Set<String>()
        func walk(_ m: Machine, _ action: Action, depth: Int) {
            #expect(depth < 40 * maxAttempts + 40, "a path that does not end")
            guard depth < 40 * maxAttempts + 40, seen.insert("\(m) \(action)").inserted else { return }
            var next: [ModelCall.Event] = []
            switch action {
            case .finish:
                finished += 1
                #expect(m.attempts <= maxAttempts, "sent \(m.attempts), allowed \(maxAttempts)")
                return
            case .check(.boundary): next = [.checked(.allow), .checked(.deny("d"))]
            case .check(.circuit), .check(.budget): next = [.checked(.allow), .checked(.refuse("r")), .cancelled]
            case .check: next = verdicts
            case .enter: next = [.entered, .cancelled]
            case .offerTools: next = [.offered(tools: 1), .offered(tools: 0), .offerFailed("o")]
            case .prepare: next = [.prepared]
            case .acquire: next = [.admitted, .cancelled]
            case .send:
                next = [
                    .responded, .failed(.transient("t", retryAfter: nil)), .failed(.rejected("r")),
                    .failed(.configuration("c")), .cancelled,
                ]
            case .parse:
                next = [
                    .parsed(.answer(truncated: false)), .parsed(.answer(truncated: true)), .parsed(.toolCalls),
                    .parsed(.invalid("i", truncated: false)), .parsed(.invalid("i", truncated: true)),
                ]
            case .validate: next = [.validated(.valid), .validated(.invalid("i"))]
            case .record: next = [.recorded]
            case .runTools: next = [.toolsFinished, .cancelled]
            case .sleep: next = [.slept, .cancelled]
            case .escalate: next = [.escalated]
            }
            for event in next {
                var copy = m
                let following = copy.next(event)
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
        let h = try RunHarness {
            $0.rateLimitRate = 1; $0.retryAfterSeconds = 3600
        }
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

/// How a run ends is decided in one place, from what was raised.
@Suite struct RunStopTests {
    @Test func theEndingFollowsFromWhatWasRaised() {
        func ending(
            completed: Bool = false, raised: RunStop? = nil, expired: Duration? = nil, interrupted: Bool = false,
            waiting: [String] = [], failed: Int = 0
        ) -> RunStop? {
            RunStop.ending(
                completed: completed, raised: raised, expired: expired, interrupted: interrupted, waiting: waiting,
                failedSteps: failed, error: "boom")
        }
        #expect(ending(completed: true) == nil)
        #expect(ending(completed: true, raised: .refused("401")) == nil, "min_success tolerated the refused steps")
        #expect(ending(completed: true, raised: .budget("budget exhausted")) == .budget("budget exhausted"), "partial, so failed")
        #expect(ending(raised: .budget("b"), expired: .seconds(5)) == .deadline(.seconds(5)), "the deadline wins over what it cut short")
        #expect(ending(raised: .budget("b"), interrupted: true, waiting: ["write"]) == .interrupted, "a signal is never a pause")
        #expect(ending(raised: .traceUnwritable("disk full")) == .traceUnwritable("disk full"))
        #expect(ending(failed: 2) == .stepsFailed("boom"))
        #expect(ending() == .workflowFailed("boom"))
        #expect(ending(completed: true, waiting: ["write"]) == .approval(["write"]))
        #expect(ending(expired: .seconds(1), waiting: ["a", "b"]) == .approval(["a", "b"]))
        #expect(RunStop.approval(["a"]).code == .awaitingApproval && RunStop.approval(["a"]).status == .awaitingApproval)
        #expect(
            RunStop.budget("b").message(runID: "r1", completed: true, failedSteps: 1)
                == "b; 1 step failed or not run, so the output is partial (chorus resume r1 with a larger budget continues the run)")
        #expect(RunStop.budget("b").message(runID: "r1", completed: false, failedSteps: 1) == "b")
    }
}
