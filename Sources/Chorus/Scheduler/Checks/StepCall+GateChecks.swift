/// The checks before each request: the run's circuit, a person's approval, the budgets;
/// and the approvals a tool round and an escalation may need.
extension StepCall {
    /// Whether the run still makes calls: no budget refusal, no refused provider, a
    /// trace that can be written.
    func checkCircuit() -> ModelCall.Event {
        if Task.isCancelled { return .cancelled }
        _ = context.stopIfTheTraceFailed()
        if let reason = context.circuit.reason { return .checked(.refuse(reason)) }
        return .checked(.allow)
    }

    /// A model that requires approval waits for a person before its first call; so does a
    /// call whose worst case costs more than the node allows without one.
    func checkApproval(_ target: Target) -> ModelCall.Verdict {
        guard !recorded else { return .allow }
        if target.spec.requiresApproval {
            let verdict = context.approval(node: "model:\(target.name)", path: path, because: "model '\(target.name)' requires approval")
            guard verdict.passes else { return verdict }
        }
        if case .overMicroUSD(let limit)? = context.project.workflow.nodes[node]?.approval {
            let worst = call.size.worstCase(at: target.spec).microUSD
            if worst > limit {
                return context.approval(
                    node: node, path: path,
                    because:
                        "a call to '\(target.name)' may cost $\(BudgetLedger.dollars(worst)), over $\(BudgetLedger.dollars(limit))")
            }
        }
        return .allow
    }

    /// The budget stage, before a byte leaves: the call's worst case is reserved against the
    /// run's, the node's and the model's budgets, in that order, or the call is refused (the
    /// holds already taken given back) and the run stops making calls.
    mutating func reserveBudget(_ target: Target) async -> ModelCall.Event {
        guard !recorded else { return .checked(.allow) }
        let ledgers = context.ledgers.ledgers(node: node, model: target.name)
        let worst = call.size.worstCase(at: target.spec)
        for ledger in ledgers {
            if let held = await ledger.reserve(worst) {
                call.reserved.append((ledger, held))
                continue
            }
            for (held, amount) in call.reserved { await held.settle(amount, actual: nil, madeCall: false) }
            call.reserved = []
            if Task.isCancelled { return .cancelled }
            let refusal = context.ledgers.scope(of: ledger, model: target.name) + (await ledger.exhausted(worst))
            context.refuseForBudget(refusal)
            return .checked(.refuse(refusal))
        }
        return .checked(.allow)
    }

    /// A tool that requires approval waits for a person before it runs.
    func checkToolApproval() -> ModelCall.Verdict {
        guard !recorded else { return .allow }
        for call in toolTurn.calls {
            guard let tool = offered.first(where: { $0.definition.name == call.name }), tool.spec.requiresApproval else { continue }
            let verdict = context.approval(node: "tool:\(tool.spec.name)", path: path, because: "tool '\(tool.spec.name)' requires approval")
            guard verdict.passes else { return verdict }
        }
        return .allow
    }

    /// Approval on escalation: the step stops before the larger model; once approved, a
    /// resume runs it again and it escalates without asking.
    func checkEscalation(from: Target, to: Target, reason: String) -> ModelCall.Verdict {
        guard !recorded, context.project.workflow.nodes[node]?.approval == .onEscalation else { return .allow }
        let verdict = context.approval(node: node, path: path, because: "escalating from '\(from.name)' to '\(to.name)'")
        if !verdict.passes {
            context.event(.escalationHeld(from: from.name, to: to.name, reason: "\(from.name): \(reason)"), step: path)
        }
        return verdict
    }
}
