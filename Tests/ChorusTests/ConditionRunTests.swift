import Chorus
import ChorusJSON
import ChorusTrace
import Testing

/// `when` end to end against `chorus sim`: a false condition skips the node, what depends
/// only on skipped nodes is skipped too, a reconcile over branches takes those that ran,
/// and nothing skipped is ever a failure; a replay takes the same branches with no call.
@Suite struct ConditionRunTests {
    /// The `when` workflow: with tier gold, `basic` is skipped (the reconcile is a node
    /// result, not a step); its one model is `small` (TracingSpanEmitterTests gives it a price).
    static func tiers(_ h: RunHarness, small: JSONValue = ["model": "sim-small"]) throws -> String {
        try h.writeConfig(["small": small])
        try h.agent("specialist", model: "small", prompt: "{{inputs.question}} for {{inputs.tier}}")
        try h.agent("follow", model: "small", prompt: "Follow up: {{premium}}")
        let gold: JSONValue = ["path": "inputs.tier", "equals": "gold"]
        return try h.workflow(
            "tiers",
            nodes: [
                "premium": ["kind": "agent", "agent": "specialist", "when": gold],
                "basic": ["kind": "agent", "agent": "specialist", "when": ["not": gold]],
                "premium_follow_up": ["kind": "agent", "agent": "follow"],
                "answer": ["kind": "reconcile", "from": ["premium_follow_up", "basic"], "strategy": "collect"],
            ], output: "answer", inputs: ["question": ["type": "string"], "tier": ["type": "string"]])
    }

    @Test(arguments: ["silver", "gold"])
    func aFalseConditionSkipsItsBranchAndTheRunStillSucceeds(tier: String) async throws {
        let h = try RunHarness()
        let path = try Self.tiers(h)
        let (summary, store) = try await h.run(path, inputs: ["question": "Which plan?", "tier": .string(tier)])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.failedItems.isEmpty, "a skipped node is never a failure")
        let steps = try store.steps(ofRun: summary.runID).filter { !$0.isNodeResult }
        let status = Dictionary(uniqueKeysWithValues: steps.map { ($0.path, $0.status) })
        let skipped: Set<String> = tier == "gold" ? ["basic"] : ["premium", "premium_follow_up"]
        #expect(Set(status.filter { $0.value == .skipped }.keys) == skipped)
        #expect(!status.values.contains(.failed))
        let why = try #require(steps.first { $0.path == skipped.sorted().first })
        let reason = try JSONValue(parsing: why.provenanceJSON ?? "{}")["skipped"]?.stringValue ?? ""
        #expect(reason.contains("inputs.tier") || reason.contains("every node it depends on was skipped"), "\(reason)")
        #expect(try store.events(ofRun: summary.runID).filter { $0.kind == "node_skipped" }.count == skipped.count)
        #expect(summary.output?.arrayValue?.count == 1, "the reconcile took the branch that ran")
        #expect(summary.calls == (tier == "gold" ? 2 : 1))

        let replay = try await h.replay(summary.runID, workflow: path)
        #expect(replay.reproduced && replay.divergence == nil && replay.servedCalls == summary.calls)
        await h.shutdown()
    }

    @Test func aConditionOnAnUnknownNodeOrAMalformedOneIsRefusedWithOneLine() throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("specialist", model: "small", prompt: "{{inputs.question}}")
        let unknown = try h.workflow(
            "unknown", nodes: ["a": ["kind": "agent", "agent": "specialist", "when": ["path": "ghost.value", "gte": 1]]], output: "a")
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: unknown, config: h.directory.appendingPathComponent("chorus.json").path)
        else {
            Issue.record("accepted")
            return
        }
        #expect(failure.issues.map(\.description).contains { $0.contains("$.nodes.a.when: no node named 'ghost'") }, "\(failure.issues)")
        let malformed = try h.workflow(
            "malformed", nodes: ["a": ["kind": "agent", "agent": "specialist", "when": ["path": "inputs.question", "gte": "x"]]], output: "a")
        guard case .failure(let bad) = SpecLoader.loadProject(workflow: malformed, config: h.directory.appendingPathComponent("chorus.json").path)
        else {
            Issue.record("accepted")
            return
        }
        #expect(bad.issues.map(\.description).contains { $0.contains("$.nodes.a.when.gte: expected a number, found string") }, "\(bad.issues)")
    }
}

/// A `route` node end to end: the router's label picks the case whose nodes run; the other
/// cases' nodes are skipped by the route, and a replay takes the same branch with no call.
@Suite struct RouteRunTests {
    static let labels: JSONValue = ["type": "object", "required": ["label"], "properties": ["label": ["enum": ["billing", "technical", "other"]]]]

    private func project(_ h: RunHarness, route: JSONValue? = nil, schema: JSONValue = labels) throws -> String {
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("triage", model: "small", prompt: "Route this ticket: {{inputs.question}}", extra: ["output_schema": schema])
        try h.agent("specialist", model: "small", prompt: "Answer ({{triage.label}}): {{inputs.question}}")
        return try h.workflow(
            "triage",
            nodes: [
                "triage": route
                    ?? [
                        "kind": "route", "agent": "triage", "on": "label",
                        "cases": ["billing": ["billing"], "technical": ["tech"]], "default": ["general"],
                    ],
                "billing": ["kind": "agent", "agent": "specialist"],
                "tech": ["kind": "agent", "agent": "specialist"],
                "general": ["kind": "agent", "agent": "specialist"],
                "answer": ["kind": "reconcile", "from": ["billing", "tech", "general"], "strategy": "collect"],
            ], output: "answer")
    }

    @Test func theRoutersLabelPicksTheBranchTheOthersAreSkippedAndTheReplayFollows() async throws {
        let h = try RunHarness()
        let workflow = try project(h)
        var seen = Set<String>()
        for ticket in ["My invoice is wrong", "The app crashes on start", "Where is your office?", "Refund please", "Login fails"] {
            let (summary, store) = try await h.run(workflow, inputs: ["question": .string(ticket)])
            #expect(summary.status == .succeeded, "\(summary.error ?? "")")
            #expect(summary.failedItems.isEmpty)
            let chosen = try #require(try store.events(ofRun: summary.runID).first { $0.kind == "route_chosen" })
            let label = try #require(try JSONValue(parsing: chosen.detailJSON ?? "{}")["label"]?.stringValue)
            seen.insert(label)
            let expected = ["billing": "billing", "technical": "tech"][label] ?? "general"
            let steps = try store.steps(ofRun: summary.runID).filter { !$0.isNodeResult }
            for branch in ["billing", "tech", "general"] {
                let step = try #require(steps.first { $0.path == branch })
                #expect(step.status == (branch == expected ? .succeeded : .skipped), "\(label): \(branch)")
                if branch != expected { #expect(step.skippedBecause == "route triage chose '\(label)'") }
            }
            #expect(summary.output?.arrayValue?.count == 1, "the reconcile took the branch that ran")
            let replay = try await h.replay(summary.runID, workflow: workflow)
            #expect(replay.reproduced && replay.servedCalls == summary.calls && summary.calls == 2)
        }
        #expect(seen.count >= 2, "the tickets went different ways: \(seen)")
        await h.shutdown()
    }

    @Test func aForkFromTheRouteWithAnotherModelReRoutesAndRunsTheBranchItPicks() async throws {
        let h = try RunHarness()
        let workflow = try project(h)
        try h.writeConfig(["small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        let (summary, store) = try await h.run(workflow, inputs: ["question": "The app crashes on start"])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let fork = try await h.replay(
            summary.runID, workflow: workflow, fork: Replayer.Fork(liveFrom: "triage", modelSwaps: ["small": "large"], client: h.client))
        #expect(fork.summary.status == .succeeded, "\(fork.summary.error ?? "")")
        #expect(fork.servedCalls == 0, "the route and everything after it ran live")
        let calls = try store.modelCalls(ofRun: fork.summary.runID)
        #expect(calls.allSatisfy { $0.model == "large" }, "the swap took: \(calls.map(\.model))")
        let chosen = try #require(try store.events(ofRun: fork.summary.runID).first { $0.kind == "route_chosen" })
        let label = try #require(try JSONValue(parsing: chosen.detailJSON ?? "{}")["label"]?.stringValue)
        let ran = try store.steps(ofRun: fork.summary.runID).filter { ["billing", "tech", "general"].contains($0.path) && $0.status == .succeeded }
        #expect(ran.map(\.path) == [["billing": "billing", "technical": "tech"][label] ?? "general"], "the branch the new label picks")
        await h.shutdown()
    }

    @Test func aSkippedRouteRunsNoneOfItsCasesAndAWhenMayAskWhetherItRan() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("triage", model: "small", prompt: "Route this ticket: {{inputs.question}}", extra: ["output_schema": Self.labels])
        try h.agent("specialist", model: "small", prompt: "Answer: {{inputs.question}}")
        let workflow = try h.workflow(
            "gated",
            nodes: [
                "triage": [
                    "kind": "route", "agent": "triage", "on": "label", "when": ["path": "inputs.kind", "equals": "ticket"],
                    "cases": ["billing": ["billing"], "technical": ["tech"]], "default": ["general"],
                ],
                "billing": ["kind": "agent", "agent": "specialist"],
                "tech": ["kind": "agent", "agent": "specialist"],
                "general": ["kind": "agent", "agent": "specialist"],
                // Runs exactly when the route did not: a `when` may ask whether a node ran.
                "not_a_ticket": ["kind": "agent", "agent": "specialist", "when": ["not": ["path": "triage", "exists": true]]],
                "answer": ["kind": "reconcile", "from": ["billing", "tech", "general", "not_a_ticket"], "strategy": "collect"],
            ], output: "answer", inputs: ["question": ["type": "string"], "kind": ["type": "string"]])
        let (summary, store) = try await h.run(workflow, inputs: ["question": "Hello there", "kind": "chat"])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let status = Dictionary(uniqueKeysWithValues: try store.steps(ofRun: summary.runID).filter { !$0.isNodeResult }.map { ($0.path, $0) })
        #expect(status["triage"]?.status == .skipped)
        for branch in ["billing", "tech", "general"] {
            #expect(status[branch]?.status == .skipped && status[branch]?.skippedBecause == "route triage was skipped", "\(branch)")
        }
        #expect(status["not_a_ticket"]?.status == .succeeded)
        #expect(summary.output?.arrayValue?.count == 1 && summary.calls == 1)
        await h.shutdown()
    }

    @Test func aSkippedOutputNodeFailsTheRunSayingWhy() async throws {
        let h = try RunHarness()
        try h.writeConfig(["small": ["model": "sim-small"]])
        try h.agent("specialist", model: "small", prompt: "Answer: {{inputs.question}}")
        let workflow = try h.workflow(
            "gated",
            nodes: ["only_gold": ["kind": "agent", "agent": "specialist", "when": ["path": "inputs.tier", "equals": "gold"]]],
            output: "only_gold", inputs: ["question": ["type": "string"], "tier": ["type": "string"]])
        let (summary, _) = try await h.run(workflow, inputs: ["question": "Hi", "tier": "silver"])
        #expect(summary.status == .failed)
        #expect(
            summary.error?.contains("output node 'only_gold' was skipped (when inputs.tier equals \"gold\" is false)") == true,
            "\(summary.error ?? "")")
        #expect(summary.failedItems.isEmpty, "the skipped node itself is not a failure")
        await h.shutdown()
    }

    @Test func validationChecksTheRouteAgainstItsAgentsSchema() throws {
        let h = try RunHarness()
        let cases: [(JSONValue?, JSONValue, String)] = [
            (
                ["kind": "route", "agent": "triage", "on": "label", "cases": ["billing": ["billing"], "refunds": ["billing"]], "default": ["general"]],
                Self.labels, "$.nodes.triage.cases.refunds: 'refunds' is not one of label's labels (billing, technical, other)"
            ),
            (
                ["kind": "route", "agent": "triage", "on": "label", "cases": ["billing": ["billing"], "technical": ["tech"]]],
                Self.labels, "$.nodes.triage.cases: no case for other and no default"
            ),
            (
                ["kind": "route", "agent": "triage", "on": "label", "cases": ["billing": ["ghost"]], "default": ["general"]],
                Self.labels, "$.nodes.triage.cases.billing[0]: no node named 'ghost'"
            ),
            (
                ["kind": "route", "agent": "triage", "on": "topic", "cases": ["billing": ["billing"]], "default": ["general"]],
                Self.labels, "$.nodes.triage.on: the agent 'triage' has no output_schema property 'topic'"
            ),
            (
                nil, ["type": "object", "properties": ["label": ["type": "string"]]],
                "$.nodes.triage.on: expected 'label' in the output_schema of 'triage' to be an enum of labels"
            ),
        ]
        for (route, schema, expected) in cases {
            let workflow = try project(h, route: route, schema: schema)
            guard case .failure(let failure) = SpecLoader.loadProject(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path)
            else {
                Issue.record("accepted: \(expected)")
                continue
            }
            #expect(failure.issues.map(\.description).contains { $0.contains(expected) }, "\(failure.issues)")
        }
    }

    /// A `when` that needs a label the route's agent never answers names a node no route can
    /// reach: validation says so. One possible label among several, or the same test under
    /// `not`, can hold, and is accepted.
    @Test func validationReportsANodeNoRouteCanReach() throws {
        let h = try RunHarness()
        _ = try project(h)
        let config = h.directory.appendingPathComponent("chorus.json").path
        let base: [String: JSONValue] = [
            "triage": ["kind": "route", "agent": "triage", "on": "label", "cases": ["billing": ["billing"]], "default": ["general"]],
            "billing": ["kind": "agent", "agent": "specialist"], "general": ["kind": "agent", "agent": "specialist"],
        ]
        let conditions: [(JSONValue, String?)] = [
            (
                ["path": "triage.label", "equals": "refund"],
                "$.nodes.audit.when: \"refund\" is not one of triage.label's labels (billing, technical, other): no route can reach 'audit', it would be skipped on every run"
            ),
            (
                ["all": [["path": "inputs.question", "exists": true], ["path": "triage.label", "in": ["refund", "fraud"]]]],
                "\"refund\", \"fraud\" is not one of"
            ),
            (["path": "triage.label", "in": ["refund", "billing"]], nil),
            (["not": ["path": "triage.label", "equals": "refund"]], nil),
        ]
        for (condition, expected) in conditions {
            var nodes = base
            nodes["audit"] = ["kind": "agent", "agent": "specialist", "when": condition]
            let workflow = try h.workflow("reach", nodes: nodes, output: "billing")
            let result = SpecLoader.loadProject(workflow: workflow, config: config)
            switch (result, expected) {
            case (.success, nil): break
            case (.failure(let failure), let expected?):
                #expect(failure.issues.count == 1 && failure.issues[0].description.contains(expected), "\(failure.issues)")
            case (.success, let expected?): Issue.record("accepted: \(expected)")
            case (.failure(let failure), nil): Issue.record("refused \(condition.text): \(failure.issues)")
            }
        }
    }
}
