import ChorusJSON

/// How a reconcile step combines results.
public enum ReconcileStrategy: String, Sendable, CaseIterable {
    /// The results as an array, in step order.
    case collect
    /// The results' text joined with `separator`.
    case concat
    /// The results (objects) merged into one; `conflict` says which value wins.
    case merge
    /// The most common answer (or its `vote_field`), with the votes; a tie goes to the answer seen first.
    case vote
    /// The first result in step order.
    case firstSuccess = "first_success"
    /// An agent synthesises the results.
    case agent
}

/// Which value wins when merged objects disagree.
public enum MergeConflictRule: String, Sendable {
    /// The first object's value, in step order.
    case first
    /// The last object's value.
    case last
    /// A disagreement fails the step.
    case error
}

/// A reconcile configuration: strategy and its options.
public struct ReconcileSpec: Sendable, Equatable {
    /// How the results are combined.
    public var strategy: ReconcileStrategy
    /// The synthesiser, for the agent strategy.
    public var agent: String?
    /// For merge: which value wins when objects disagree.
    public var conflict: MergeConflictRule
    /// For vote over objects: the field holding the answer.
    public var voteField: String?
    /// For concat.
    public var separator: String

    init(json: JSONValue) {
        strategy = ReconcileStrategy(rawValue: json["strategy"]?.stringValue ?? "") ?? .collect
        agent = json["agent"]?.stringValue
        conflict = MergeConflictRule(rawValue: json["conflict"]?.stringValue ?? "") ?? .first
        voteField = json["vote_field"]?.stringValue
        separator = json["separator"]?.stringValue ?? "\n\n"
    }

    /// The default: an ordered list.
    public static let collect = ReconcileSpec(json: ["strategy": "collect"])
}

/// How many fan-out items must succeed.
public enum MinSuccess: Sendable, Equatable {
    /// At least this many items (fewer if there are fewer).
    case count(Int)
    /// At least this share of the items, rounded up (`0.9`).
    case fraction(Double)

    /// The number required out of `total`.
    public func required(of total: Int) -> Int {
        switch self {
        case .count(let n): return min(n, total)
        case .fraction(let f): return Int((Double(total) * f).rounded(.up))
        }
    }

    init?(_ json: JSONValue?) {
        guard let value = json?.numberValue else { return nil }
        if let count = json?.intValue, count >= 1 { self = .count(count) } else { self = .fraction(value) }
    }
}

/// The kind of a workflow node.
public enum NodeKind: String, Sendable {
    /// One agent call.
    case agent
    /// One agent call per element of an upstream array (`over`), then a reconcile.
    case foreach
    /// A lead agent plans subtasks in rounds for a worker agent, then a synthesis.
    case lead
    /// Combines upstream results (`from`) by a strategy.
    case reconcile
    /// An agent picks a label, and only that label's nodes run.
    case route
}

/// A route node: its agent answers with an object whose `on` field picks a case, and only
/// the nodes listed under that case run; the other cases' nodes are skipped.
public struct RouteSpec: Sendable {
    /// The agent that picks the label.
    public var agent: String
    /// The answer's field that holds the label (an enum in the agent's output schema).
    public var on: String
    /// Label → the nodes that run when the agent picks it.
    public var cases: [String: [String]]
    /// The nodes that run when the label has no case; nil: none.
    public var fallback: [String]?

    /// Every node some case (or the default) names, each once, sorted.
    public var targets: [String] { Array(Set(cases.values.joined()).union(fallback ?? [])).sorted() }

    /// The nodes that run for `label`.
    public func chosen(_ label: String?) -> [String] { label.flatMap { cases[$0] } ?? fallback ?? [] }
}

/// What a node does, with what its kind needs: decoded once, so the runner never looks
/// for a field its kind lacks.
public enum NodeWork: Sendable {
    /// Calls one agent.
    case agent(String)
    /// Calls `agent` once per item of the upstream array at `over` (`NODE.path`).
    case foreach(agent: String, over: String)
    /// The research loop: `lead` plans subtasks, `worker` runs each.
    case lead(LeadSpec)
    /// Combines the outputs of `from` (the strategy is the node's `reconcile`).
    case reconcile(from: [String])
    /// Calls an agent and runs only the nodes of the case its answer picks.
    case route(RouteSpec)
}

/// A `lead` node's agents and limits.
public struct LeadSpec: Sendable {
    /// The agent that plans the subtasks and says when it is done.
    public var lead: String
    /// The agent that runs each subtask.
    public var worker: String
    /// Rounds of planning at most (`max_rounds`).
    public var maxRounds: Int
    /// Subtasks over all rounds at most (`max_subtasks`); a longer plan is cut, and the trace says so.
    public var maxSubtasks: Int
    /// When the lead plans again: after each whole round (default), or as findings arrive.
    public var schedule: LeadSchedule = .rounds
    /// as_completed: findings since the last lead call that trigger the next (nil: half
    /// of the subtasks outstanding when the last call answered, at least 1).
    public var replanAfter: Int?
    /// as_completed: what happens to running subtasks when the lead says done (nil: wait).
    public var onDone: LeadOnDone?
}

/// A lead node's `schedule`.
public enum LeadSchedule: String, Sendable {
    /// Plan a round, wait for all of it, plan the next.
    case rounds
    /// Plan again as soon as `replan_after` findings have arrived; one lead call at a time.
    case asCompleted = "as_completed"
}

/// A lead node's `on_done` (as_completed): when the lead says done, the subtasks still
/// running finish and are reconciled (`wait`), or are cancelled (`cancel`).
public enum LeadOnDone: String, Sendable {
    /// The running subtasks finish and are reconciled.
    case wait
    /// The running subtasks are cancelled.
    case cancel
}

/// One node of a workflow graph.
public struct NodeSpec: Sendable {
    /// The node's key under `nodes`: what other nodes, step paths and the trace call it.
    public var id: String
    /// What kind of node it is.
    public var kind: NodeKind
    /// What the node does; nil when the file lacks a property its kind requires (`missing`
    /// says which, and loading the project reports it: such a workflow never runs).
    public var work: NodeWork?
    /// The properties the node's kind requires that the file lacks, as messages.
    public var missing: [String]
    /// Explicit dependencies.
    public var needs: [String]
    /// Its agent calls in flight at most (a foreach's items, a lead's workers); nil for the run's.
    public var maxParallel: Int?
    /// How many of a foreach's items (or a lead's subtasks) must succeed for the node to succeed.
    public var minSuccess: MinSuccess
    /// What this node may spend in one run.
    public var budget: Budget
    /// When a person must approve this node's steps going on; nil when never.
    public var approval: ApprovalRule?
    /// Whether a person must approve this node before its steps call any model.
    public var requiresApproval: Bool { approval == .always }
    /// lead: how findings are reconciled (default collect); reconcile: the strategy.
    public var reconcile: ReconcileSpec
    /// When the node runs at all (`when`); nil: always. False: the node is skipped.
    public var when: NodeCondition?
    /// Why `when` could not be read (its JSON path and what was expected).
    public var whenProblem: NodeConditionError?

    init(id: String, json: JSONValue) {
        self.id = id
        kind = NodeKind(rawValue: json["kind"]?.stringValue ?? "") ?? .agent
        needs = json["needs"]?.arrayValue?.compactMap(\.stringValue) ?? []
        maxParallel = json["max_parallel"]?.intValue
        minSuccess = MinSuccess(json["min_success"]) ?? .fraction(1)
        budget = Budget(json: json["budget"])
        approval = ApprovalRule(json: json["approval"])
        if let condition = json["when"] {
            do { when = try NodeCondition(json: condition, at: "$.nodes.\(id).when") } catch { whenProblem = error }
        }
        if let nested = json["reconcile"] {
            reconcile = ReconcileSpec(json: nested)
        } else if json["strategy"] != nil {
            reconcile = ReconcileSpec(json: json)
        } else {
            reconcile = .collect
        }
        var missing: [String] = []
        func required(_ key: String, _ why: String) -> String? {
            if let value = json[key]?.stringValue { return value }
            missing.append("missing required property '\(key)' (\(why))")
            return nil
        }
        switch kind {
        case .agent:
            work = required("agent", "kind agent calls one agent").map { .agent($0) }
        case .foreach:
            let agent = required("agent", "kind foreach calls it once per item")
            let over = required("over", "kind foreach needs NODE.path to an array")
            work = agent.flatMap { agent in over.map { .foreach(agent: agent, over: $0) } }
        case .lead:
            let lead = required("lead", "the planning agent")
            let worker = required("worker", "the agent each subtask goes to")
            work = lead.flatMap { lead in
                worker.map {
                    .lead(
                        LeadSpec(
                            lead: lead, worker: $0, maxRounds: json["max_rounds"]?.intValue ?? 1,
                            maxSubtasks: json["max_subtasks"]?.intValue ?? 100,
                            schedule: json["schedule"]?.stringValue.flatMap(LeadSchedule.init(rawValue:)) ?? .rounds,
                            replanAfter: json["replan_after"]?.intValue,
                            onDone: json["on_done"]?.stringValue.flatMap(LeadOnDone.init(rawValue:))))
                }
            }
        case .route:
            let agent = required("agent", "kind route calls it to pick a case")
            let on = required("on", "the answer's field that holds the label")
            let cases = (json["cases"]?.objectValue ?? [:]).mapValues { $0.arrayValue?.compactMap(\.stringValue) ?? [] }
            if json["cases"]?.objectValue?.isEmpty ?? true { missing.append("missing required property 'cases' (label → the nodes that run for it)") }
            let fallback = json["default"]?.arrayValue?.compactMap(\.stringValue)
            work = agent.flatMap { agent in
                on.flatMap { on in cases.isEmpty ? nil : .route(RouteSpec(agent: agent, on: on, cases: cases, fallback: fallback)) }
            }
        case .reconcile:
            let from = json["from"]?.stringValue.map { [$0] } ?? json["from"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if from.isEmpty { missing.append("missing required property 'from' (the node or nodes to reconcile)") }
            work = from.isEmpty ? nil : .reconcile(from: from)
        }
        self.missing = missing
    }

    /// The agent a node of kind agent, foreach or route calls.
    public var agent: String? {
        switch work {
        case .agent(let agent)?, .foreach(let agent, _)?: agent
        case .route(let route)?: route.agent
        default: nil
        }
    }

    /// A foreach node's `NODE.path` to the array it fans out over.
    public var over: String? {
        if case .foreach(_, let over)? = work { over } else { nil }
    }

    /// A route node's cases.
    public var routeSpec: RouteSpec? {
        if case .route(let spec)? = work { spec } else { nil }
    }

    /// A lead node's agents and limits.
    public var leadSpec: LeadSpec? {
        if case .lead(let spec)? = work { spec } else { nil }
    }

    /// Every agent the node names: the one it calls, a lead's two, a synthesiser.
    public var agentNames: [String] {
        [agent, leadSpec?.lead, leadSpec?.worker, reconcile.agent].compactMap { $0 }
    }

    /// A reconcile node's sources.
    public var from: [String] {
        if case .reconcile(let from)? = work { from } else { [] }
    }
}

/// A declared workflow input.
public struct InputSpec: Sendable {
    /// The input's name: `{{inputs.NAME}}` in templates.
    public var name: String
    /// string, number, integer, boolean, array or object.
    public var type: String
    /// What it is, for people running the workflow.
    public var description: String?
    /// The value when the run gives none; an input with no default is required.
    public var defaultValue: JSONValue?
    /// Data labels (pii, eu-only, …) everything derived from this input carries.
    public var labels: [String] = []
}

/// A workflow file: inputs, nodes and which node's output is the result.
public struct WorkflowSpec: Sendable {
    /// The file it came from.
    public var path: String
    /// The workflow's name, as the trace records it.
    public var name: String
    /// What it does, for people reading the project.
    public var description: String?
    /// Its declared inputs, by name.
    public var inputs: [String: InputSpec]
    /// Its nodes, by id.
    public var nodes: [String: NodeSpec]
    /// The node whose output is the run's output.
    public var output: String
    /// Where agent files are looked up.
    public var agentsDirectory: String
    /// What one run may spend (the file's `budget`).
    public var budget: Budget

    init(path: String, json: JSONValue, agentsDirectory: String) {
        self.path = path
        name = json["name"]?.stringValue ?? ""
        description = json["description"]?.stringValue
        inputs = (json["inputs"]?.objectValue ?? [:]).reduce(into: [:]) { result, entry in
            result[entry.key] = InputSpec(
                name: entry.key, type: entry.value["type"]?.stringValue ?? "string",
                description: entry.value["description"]?.stringValue, defaultValue: entry.value["default"],
                labels: entry.value["labels"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        nodes = (json["nodes"]?.objectValue ?? [:]).reduce(into: [:]) { $0[$1.key] = NodeSpec(id: $1.key, json: $1.value) }
        output = json["output"]?.stringValue ?? ""
        self.agentsDirectory = agentsDirectory
        budget = Budget(json: json["budget"])
    }
}
