import Synchronization

/// The decisions a run has (its own and its ancestors', from `chorus approve`/`deny`) and
/// the nodes it waits for.
final class RunApprovals: Sendable {
    private let decisions: [String: ApprovalDecision]
    private let project: Project
    private let runID: String
    /// Nodes that wait for a person's decision in this run.
    let awaiting = Mutex<Set<String>>([])

    init(decisions: [String: ApprovalDecision], project: Project, runID: String) {
        self.decisions = decisions
        self.project = project
        self.runID = runID
    }

    /// Whether `node`'s steps may call models: allowed when it needs no approval or was
    /// approved; otherwise held (recorded once per node) or denied.
    func gate(node: String, path: String, context: RunContext) -> ModelCall.Verdict {
        guard project.workflow.nodes[node]?.requiresApproval == true else { return .allow }
        return decision(node: node, path: path, because: "the node requires approval", context: context)
    }

    /// A person's decision on `node`: allowed when approved; denied (by whom, with their
    /// note); else the node is recorded as waiting (`because` says for what) and held.
    func decision(node: String, path: String, because reason: String, context: RunContext) -> ModelCall.Verdict {
        if let decision = decisions[node] {
            // The note is a person's words, shown in errors and on terminals: one line, no controls.
            return decision.approved
                ? .allow
                : .deny("denied by \(TerminalText.escaped(decision.by))" + (decision.note.map { ": \(TerminalText.escaped($0))" } ?? ""))
        }
        let first = awaiting.withLock { $0.insert(node).inserted }
        if first { context.event(.approvalRequested(node: node, reason: reason), step: path) }
        return .hold("awaiting approval: \(reason) (chorus approve \(runID) \(node), then chorus resume \(runID))")
    }

    /// The nodes waiting, in order.
    var waiting: [String] { awaiting.withLock { $0.sorted() } }
}
