import ChorusTrace
/// The checks on a final answer before it is accepted: the output guards and judge agents.
/// A denial makes the answer invalid (retried, then escalated, like a schema failure).
extension StepCall {
    /// The output guards over the answer, off the loop; a redaction changes the answer.
    mutating func checkOutputGuards() async -> ModelCall.Event {
        guard !agent.guards.output.isEmpty, let answer = call.answer else { return .checked(.allow) }
        switch await Guards.applyOffLoop(agent.guards.output, to: answer.text, record: verdictRecorder(stage: "output")) {
        case .success(let text):
            call.answer?.text = text
            return .checked(text == answer.text ? .allow : .redact("output"))
        case .failure(let denial):
            return .checked(.deny("output \(denial)"))
        }
    }

    /// Judge agents on the answer of request `attempt`, each a step row of its own.
    func checkOutputJudges(attempt: Int) async -> ModelCall.Verdict {
        guard let answer = call.answer else { return .allow }
        for name in Guards.judges(agent.guards.output) {
            let verdict = await caller.judge(name, text: answer.text, stage: "output", path: StepPath.text(path, .guardOutput(attempt: attempt)), node: node)
            if case .deny(let reason) = verdict {
                verdictRecorder(stage: "output")(Guard(kind: .agent(name)), verdict)
                return .deny("output agent guard '\(name)': \(reason)")
            }
        }
        return .allow
    }
}
