import ChorusIO
import ChorusTrace

/// A run's budgets: its own, and each node's and model's that set one (on a shared run,
/// rows every worker spends from).
struct RunLedgers: Sendable {
    /// The run's budget and what it has spent; nil when the run has none.
    let run: BudgetLedger?
    let nodes: [String: BudgetLedger]
    let models: [String: BudgetLedger]

    init(run: BudgetLedger?, project: Project, loop: EventLoop, shared: SharedBudgetRows?) {
        self.run = run
        var nodes: [String: BudgetLedger] = [:]
        for (id, node) in project.workflow.nodes where node.budget.isLimited {
            nodes[id] = BudgetLedger(budget: node.budget, loop: loop, shared: shared?.ledger("node/\(id)"))
        }
        var models: [String: BudgetLedger] = [:]
        for (name, model) in project.config.models where model.budget.isLimited {
            models[name] = BudgetLedger(budget: model.budget, loop: loop, shared: shared?.ledger("model/\(name)"))
        }
        self.nodes = nodes
        self.models = models
    }

    /// The budgets a call of `model` in `node` reserves against, run first, in a fixed order
    /// (so two calls never wait on each other's holds in opposite orders).
    func ledgers(node: String, model: String) -> [BudgetLedger] {
        [run, nodes[node], models[model]].compactMap { $0 }
    }

    /// How a refusal by `ledger` names its budget: the run's says nothing more.
    func scope(of ledger: BudgetLedger, model: String) -> String {
        ledger === run ? "" : ledger === models[model] ? "model '\(model)': " : "this node: "
    }
}
