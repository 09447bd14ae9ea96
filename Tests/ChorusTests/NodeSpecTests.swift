@testable import Chorus
import ChorusJSON
import Testing

/// A node's kind and what it needs are decoded once, into `NodeWork`: the runner never
/// looks for a property its kind lacks.
@Suite struct NodeSpecTests {
    @Test func eachKindDecodesWhatItNeeds() {
        let agent = NodeSpec(id: "a", json: ["agent": "writer"])
        #expect(agent.kind == .agent && agent.agent == "writer" && agent.missing.isEmpty)
        let foreach = NodeSpec(id: "f", json: ["kind": "foreach", "agent": "researcher", "over": "plan.items"])
        guard case .foreach(let name, let over)? = foreach.work else { Issue.record("not foreach: \(String(describing: foreach.work))"); return }
        #expect(name == "researcher" && over == "plan.items")
        let lead = NodeSpec(id: "l", json: ["kind": "lead", "lead": "planner", "worker": "researcher", "max_rounds": 3])
        #expect(lead.leadSpec?.lead == "planner" && lead.leadSpec?.worker == "researcher")
        #expect(lead.leadSpec?.maxRounds == 3 && lead.leadSpec?.maxSubtasks == 100, "the defaults")
        #expect(lead.agentNames == ["planner", "researcher"])
        let reconcile = NodeSpec(id: "r", json: ["kind": "reconcile", "from": "a", "strategy": "agent", "agent": "synth"])
        #expect(reconcile.from == ["a"] && reconcile.reconcile.agent == "synth")
        #expect(reconcile.agent == nil, "a reconcile node's agent is its synthesiser, not an agent it calls")
    }

    @Test func aMissingPropertyLeavesNoWorkAndSaysWhich() {
        let lead = NodeSpec(id: "l", json: ["kind": "lead", "lead": "planner"])
        #expect(lead.leadSpec == nil && lead.agentNames.isEmpty)
        #expect(lead.missing == ["missing required property 'worker' (the agent each subtask goes to)"])
        let foreach = NodeSpec(id: "f", json: ["kind": "foreach"])
        #expect(foreach.missing.count == 2 && foreach.over == nil)
        let reconcile = NodeSpec(id: "r", json: ["kind": "reconcile", "from": []])
        #expect(reconcile.missing == ["missing required property 'from' (the node or nodes to reconcile)"])
    }
}
