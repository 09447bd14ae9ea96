import ChorusJSON
import ChorusTrace

/// The checks on a step's input, before any request exists: the input guards, judge
/// agents on the input, and the data boundary of each model.
extension StepCall {
    /// Runs the check for `stage`; returns its verdict (or `cancelled`).
    mutating func check(_ stage: ModelCall.Stage) async -> ModelCall.Event {
        switch stage {
        case .inputGuards: return await checkInputGuards()
        case .inputJudges: return await checkInputJudges()
        case .boundary(let model): return .checked(checkBoundary(models[model]))
        case .circuit: return checkCircuit()
        case .approval(let model): return .checked(checkApproval(models[model]))
        case .budget(let model): return await reserveBudget(models[model])
        case .outputGuards: return await checkOutputGuards()
        case .judges(let attempt): return .checked(await checkOutputJudges(attempt: attempt))
        case .toolApproval: return .checked(checkToolApproval())
        case .escalation(let from, let to, let reason): return .checked(checkEscalation(from: models[from], to: models[to], reason: reason))
        }
    }

    /// The input guards over each rendered prompt, off the loop: a denial sends nothing; a
    /// redaction changes the prompt.
    private mutating func checkInputGuards() async -> ModelCall.Event {
        guard !agent.guards.input.isEmpty else { return .checked(.allow) }
        var redacted = false
        for index in prompts.indices {
            switch await Guards.applyOffLoop(agent.guards.input, to: prompts[index].content, record: verdictRecorder(stage: "input")) {
            case .success(let text):
                redacted = redacted || text != prompts[index].content
                prompts[index].content = text
            case .failure(let denial):
                return Task.isCancelled ? .cancelled : .checked(.deny("input \(denial)"))
            }
        }
        conversation = prompts
        return .checked(redacted ? .redact("input") : .allow)
    }

    /// Judge agents on the input, with this step's parallelism slot.
    private func checkInputJudges() async -> ModelCall.Event {
        for name in Guards.judges(agent.guards.input) {
            let text = prompts.map(\.content).joined(separator: "\n\n")
            let verdict = await caller.judge(name, text: text, stage: "input", path: StepPath.text(path, .guardInput), node: node)
            if case .deny(let reason) = verdict {
                verdictRecorder(stage: "input")(Guard(kind: .agent(name)), verdict)
                return .checked(.deny("input agent guard '\(name)': \(reason)"))
            }
        }
        return .checked(.allow)
    }

    /// The data boundary: a model that may not receive a label this step carries is never
    /// asked (escalation never carries data past the boundary).
    private func checkBoundary(_ target: Target) -> ModelCall.Verdict {
        guard let labels = context.nodeLabels[node], !labels.isEmpty,
            let refusal = DataBoundary.refusal(labels, model: target.spec)
        else { return .allow }
        context.event(.boundaryRefused(model: target.name, label: refusal.label, from: refusal.origin), step: path)
        return .deny(DataBoundary.describe(refusal, model: target.spec))
    }

    /// Records a guard's verdict as a trace event (sealed by the audit chain like every event).
    func verdictRecorder(stage: String) -> @Sendable (Guard, Guard.Verdict) -> Void {
        { [context, path] guardrail, verdict in
            let outcome: TraceEvent.GuardOutcome
            switch verdict {
            case .allow: return
            case .redacted(_, let what): outcome = .redacted(what: what)
            case .deny(let reason): outcome = .denied(reason: reason)
            }
            context.event(.guardVerdict(stage: stage, guardName: guardrail.name, outcome), step: path)
        }
    }
}
