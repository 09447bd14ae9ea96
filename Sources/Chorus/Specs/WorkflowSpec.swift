import ChorusJSON

/// How a reconcile step combines results.
public enum ReconcileStrategy: String, Sendable, CaseIterable {
    case collect, concat, merge, vote, firstSuccess = "first_success", agent
}

/// Which value wins when merged objects disagree.
public enum MergeConflictRule: String, Sendable {
    case first, last, error
}

/// A reconcile configuration: strategy and its options.
public struct ReconcileSpec: Sendable, Equatable {
    public var strategy: ReconcileStrategy
    /// The synthesiser, for the agent strategy.
    public var agent: String?
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
    case count(Int)
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
    case agent, foreach, lead, reconcile
}

/// One node of a workflow graph.
public struct NodeSpec: Sendable {
    public var id: String
    public var kind: NodeKind
    /// Explicit dependencies.
    public var needs: [String]
    public var agent: String?
    /// foreach: `NODE.path` of the array to fan out over.
    public var over: String?
    public var maxParallel: Int?
    public var minSuccess: MinSuccess
    /// What this node may spend in one run.
    public var budget: Budget
    /// When a person must approve this node's steps going on; nil when never.
    public var approval: ApprovalRule?
    /// Whether a person must approve this node before its steps call any model.
    public var requiresApproval: Bool { approval == .always }
    public var lead: String?
    public var worker: String?
    public var maxRounds: Int
    public var maxSubtasks: Int
    /// lead: how findings are reconciled (default collect); reconcile: the strategy.
    public var reconcile: ReconcileSpec
    /// reconcile: the nodes whose outputs are combined.
    public var from: [String]

    init(id: String, json: JSONValue) {
        self.id = id
        kind = NodeKind(rawValue: json["kind"]?.stringValue ?? "") ?? .agent
        needs = json["needs"]?.arrayValue?.compactMap(\.stringValue) ?? []
        agent = json["agent"]?.stringValue
        over = json["over"]?.stringValue
        maxParallel = json["max_parallel"]?.intValue
        minSuccess = MinSuccess(json["min_success"]) ?? .fraction(1)
        budget = Budget(json: json["budget"])
        approval = ApprovalRule(json: json["approval"])
        lead = json["lead"]?.stringValue
        worker = json["worker"]?.stringValue
        maxRounds = json["max_rounds"]?.intValue ?? 1
        maxSubtasks = json["max_subtasks"]?.intValue ?? 100
        if let nested = json["reconcile"] {
            reconcile = ReconcileSpec(json: nested)
        } else if json["strategy"] != nil {
            reconcile = ReconcileSpec(json: json)
        } else {
            reconcile = .collect
        }
        if let single = json["from"]?.stringValue { from = [single] } else {
            from = json["from"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
    }
}

/// A declared workflow input.
public struct InputSpec: Sendable {
    public var name: String
    /// string, number, integer, boolean, array or object.
    public var type: String
    public var description: String?
    public var defaultValue: JSONValue?
    /// Data labels (pii, eu-only, …) everything derived from this input carries.
    public var labels: [String] = []
}

/// A workflow file: inputs, nodes and which node's output is the result.
public struct WorkflowSpec: Sendable {
    /// The file it came from.
    public var path: String
    public var name: String
    public var description: String?
    public var inputs: [String: InputSpec]
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
            result[entry.key] = InputSpec(name: entry.key, type: entry.value["type"]?.stringValue ?? "string",
                                          description: entry.value["description"]?.stringValue, defaultValue: entry.value["default"],
                                          labels: entry.value["labels"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        nodes = (json["nodes"]?.objectValue ?? [:]).reduce(into: [:]) { $0[$1.key] = NodeSpec(id: $1.key, json: $1.value) }
        output = json["output"]?.stringValue ?? ""
        self.agentsDirectory = agentsDirectory
        budget = Budget(json: json["budget"])
    }
}
