import ChorusJSON

/// The checks that span files: node references, required fields per kind, template
/// variables per node, dependency cycles.
struct WorkflowChecker {
    let workflow: WorkflowSpec
    let agents: [String: AgentSpec]
    private(set) var issues: [ValidationIssue] = []

    init(workflow: WorkflowSpec, agents: [String: AgentSpec]) {
        self.workflow = workflow
        self.agents = agents
    }

    private var file: String { workflow.path }

    /// The variables a template sees, by the role its agent plays in a node.
    enum Role {
        case call, item, plan, worker, synthesise

        var extra: [String] {
            switch self {
            case .call: return []
            case .item: return ["item", "index"]
            case .plan: return ["round", "findings", "findings_json", "max_subtasks"]
            case .worker: return ["item", "subtask", "index", "round"]
            case .synthesise: return ["findings", "findings_json"]
            }
        }
    }

    /// Each node's dependencies, recording issues for unknown references on the way.
    mutating func dependencies() -> [String: Set<String>] {
        if workflow.nodes[workflow.output] == nil {
            issue("$.output", "no node named '\(workflow.output)' (nodes: \(nodeList))")
        }
        var result: [String: Set<String>] = [:]
        for id in workflow.nodes.keys.sorted() {
            let node = workflow.nodes[id]!
            var deps = Set<String>()
            for (i, need) in node.needs.enumerated()
            where names(need, at: "$.nodes.\(id).needs[\(i)]", from: id, itself: "node '\(id)' needs itself: a node cannot wait for its own output") {
                deps.insert(need)
            }
            checkRequiredFields(node)
            if let problem = node.whenProblem { issue(problem.path, problem.message) }
            for root in (node.when?.roots ?? []).sorted()
            where root != "inputs"
                && names(
                    root, at: "$.nodes.\(id).when", from: id,
                    itself: "the condition reads '\(root)', this node itself: a node cannot wait for its own output",
                    hint: "a path starts with an upstream node or inputs; ")
            {
                deps.insert(root)
            }
            if let over = node.over {
                let root = String(over.split(separator: ".", maxSplits: 1).first ?? "")
                if root == id {
                    issue("$.nodes.\(id).over", "expected NODE.path to an upstream array; '\(root)' is this node itself")
                } else if workflow.nodes[root] == nil {
                    issue("$.nodes.\(id).over", "expected NODE.path to an upstream array; no node named '\(root)'")
                } else {
                    deps.insert(root)
                }
            }
            for (i, source) in node.from.enumerated() {
                let at = "$.nodes.\(id).from" + (node.from.count > 1 ? "[\(i)]" : "")
                if source == id {
                    issue(at, "node '\(id)' reconciles itself: a node cannot read its own output")
                } else if workflow.nodes[source] == nil {
                    issue(at, "no node named '\(source)' (nodes: \(nodeList))")
                } else {
                    deps.insert(source)
                }
            }
            for (field, name, role) in roles(of: node) {
                guard let agent = agents[name] else { continue }
                deps.formUnion(checkTemplates(agent, node: id, field: field, role: role))
            }
            deps.remove(id)
            result[id] = deps
        }
        // A route's case targets wait for the route: it decides whether they run.
        for id in workflow.nodes.keys.sorted() {
            guard let route = workflow.nodes[id]?.routeSpec else { continue }
            checkRoute(route, node: id)
            for target in route.targets where target != id && workflow.nodes[target] != nil {
                result[target, default: []].insert(id)
            }
        }
        for id in workflow.nodes.keys.sorted() {
            if let when = workflow.nodes[id]?.when { checkReachable(when, node: id) }
        }
        return result
    }

    /// A node no route can reach: its `when` requires a route's label to be one the route's
    /// agent never answers (`{"path": "triage.label", "equals": "refund"}` where refund is
    /// not in the enum), so it would be skipped on every run. Only conditions that must all
    /// hold are read (the top level and `all`); under `not` or `any` another branch may.
    private mutating func checkReachable(_ condition: NodeCondition, node id: String) {
        switch condition {
        case .all(let list): list.forEach { checkReachable($0, node: id) }
        case .not, .any: return
        case .compare(let path, let comparison):
            guard path.count == 2, let route = workflow.nodes[path[0]]?.routeSpec, path[1] == route.on,
                let labels = agents[route.agent]?.outputSchema?["properties"]?[route.on]?["enum"]?.arrayValue
            else { return }
            let wanted: [JSONValue]
            switch comparison {
            case .equals(let value): wanted = [value]
            case .oneOf(let values): wanted = values
            default: return
            }
            guard !wanted.isEmpty, !wanted.contains(where: labels.contains) else { return }
            let names = labels.map { $0.stringValue ?? $0.text }.joined(separator: ", ")
            issue(
                "$.nodes.\(id).when",
                "\(wanted.map(\.text).joined(separator: ", ")) is not one of \(path.joined(separator: "."))'s labels (\(names)): no route can reach '\(id)', it would be skipped on every run"
            )
        }
    }

    /// A route's cases against its agent's output schema: the `on` field is an enum, every
    /// case label is one of its values, every value has a case (or there is a default), and
    /// every target is another node.
    private mutating func checkRoute(_ route: RouteSpec, node id: String) {
        let at = "$.nodes.\(id)"
        for (label, targets) in route.cases.sorted(by: { $0.key < $1.key }) {
            for (i, target) in targets.enumerated() {
                checkRouteTarget(target, at: at + ".cases.\(label)[\(i)]", route: id)
            }
        }
        for (i, target) in (route.fallback ?? []).enumerated() { checkRouteTarget(target, at: at + ".default[\(i)]", route: id) }
        guard let agent = agents[route.agent] else { return }
        guard let field = agent.outputSchema?["properties"]?[route.on] else {
            issue(at + ".on", "the agent '\(route.agent)' has no output_schema property '\(route.on)' to route on")
            return
        }
        guard let values = field["enum"]?.arrayValue?.compactMap(\.stringValue), !values.isEmpty else {
            issue(at + ".on", "expected '\(route.on)' in the output_schema of '\(route.agent)' to be an enum of labels")
            return
        }
        for label in route.cases.keys.sorted() where !values.contains(label) {
            issue(at + ".cases.\(label)", "'\(label)' is not one of \(route.on)'s labels (\(values.joined(separator: ", ")))")
        }
        let uncovered = values.filter { route.cases[$0] == nil }
        if route.fallback == nil, !uncovered.isEmpty {
            issue(at + ".cases", "no case for \(uncovered.joined(separator: ", ")) and no default: a route must say what runs for every label")
        }
    }

    private mutating func checkRouteTarget(_ target: String, at: String, route: String) {
        _ = names(target, at: at, from: route, itself: "a route cannot pick itself")
    }

    /// Whether `name`, referenced at `at` by node `id`, is another node of the workflow;
    /// when not, one issue says what is wrong (`itself` when it is the node itself).
    private mutating func names(_ name: String, at: String, from id: String, itself: String, hint: String = "") -> Bool {
        if name == id {
            issue(at, itself)
        } else if workflow.nodes[name] == nil {
            issue(at, "no node named '\(name)' (\(hint)nodes: \(nodeList))")
        } else {
            return true
        }
        return false
    }

    private var nodeList: String { workflow.nodes.keys.sorted().joined(separator: ", ") }

    private mutating func issue(_ path: String, _ message: String, file: String? = nil) {
        issues.append(ValidationIssue(file: file ?? self.file, path: path, message: message))
    }

    private func roles(of node: NodeSpec) -> [(String, String, Role)] {
        var roles: [(String, String, Role)] = []
        switch node.kind {
        case .agent: if let agent = node.agent { roles.append(("agent", agent, .call)) }
        case .foreach: if let agent = node.agent { roles.append(("agent", agent, .item)) }
        case .lead:
            if let spec = node.leadSpec {
                roles.append(("lead", spec.lead, .plan))
                roles.append(("worker", spec.worker, .worker))
            }
        case .reconcile: break
        case .route: if let agent = node.agent { roles.append(("agent", agent, .call)) }
        }
        if let synthesiser = node.reconcile.agent, node.reconcile.strategy == .agent {
            roles.append((node.kind == .reconcile ? "agent" : "reconcile.agent", synthesiser, .synthesise))
        }
        return roles
    }

    private mutating func checkRequiredFields(_ node: NodeSpec) {
        let at = "$.nodes.\(node.id)"
        for message in node.missing { issue(at, message) }
        if node.reconcile.strategy == .agent && node.reconcile.agent == nil {
            issue(at + (node.kind == .reconcile ? "" : ".reconcile"), "missing required property 'agent' (strategy agent needs a synthesiser)")
        }
        if let lead = node.leadSpec, lead.schedule == .rounds {
            if lead.replanAfter != nil { issue(at + ".replan_after", "replan_after applies to \"schedule\": \"as_completed\" only") }
            if lead.onDone != nil { issue(at + ".on_done", "on_done applies to \"schedule\": \"as_completed\" only") }
        }
        if case .fraction(let f) = node.minSuccess, f > 1 {
            issue(at + ".min_success", "expected a whole count or a fraction of at most 1, found \(f)")
        }
    }

    /// Checks an agent's templates in the context of one node; returns the nodes they reference.
    private mutating func checkTemplates(_ agent: AgentSpec, node: String, field: String, role: Role) -> Set<String> {
        var referenced = Set<String>()
        let defined = ["inputs"] + role.extra
        // Nodes a template may read: any but this one and those that wait for it.
        let readable = workflow.nodes.keys.sorted().filter { other in
            other != node && !(workflow.nodes[other]?.needs.contains(node) ?? false) && workflow.nodes[other]?.over?.hasPrefix(node + ".") != true
                && !(workflow.nodes[other]?.from.contains(node) ?? false) && workflow.nodes[other]?.over != node
        }
        for (key, text) in [("prompt", agent.prompt), ("system", agent.system ?? "")] {
            for (root, full) in TemplateReferences.roots(in: text) {
                if root == "inputs" {
                    let name = full.split(separator: ".").dropFirst().first.map(String.init)
                    if let name, workflow.inputs[name] == nil {
                        let suggestion = SchemaChecker.closest(name, in: Set(workflow.inputs.keys))
                        issue(
                            "$.\(key)",
                            "'{{\(full)}}' names no input of \(file) (inputs: \(workflow.inputs.keys.sorted().joined(separator: ", ")))"
                                + (suggestion.map { "; did you mean '\($0)'?" } ?? ""), file: agent.path)
                    }
                } else if root == node {
                    issue(
                        "$.\(key)",
                        "'{{\(full)}}' reads node '\(node)' (\(field)) of \(file), the node that runs this agent: "
                            + "a node cannot read its own output", file: agent.path)
                } else if workflow.nodes[root] != nil {
                    referenced.insert(root)
                } else if !defined.contains(root) {
                    let suggestion = SchemaChecker.closest(root, in: Set(defined + readable))
                    issue(
                        "$.\(key)",
                        "'{{\(full)}}' is not defined when node '\(node)' (\(field)) of \(file) runs this agent "
                            + "(defined: \((defined + readable).joined(separator: ", ")))" + (suggestion.map { "; did you mean '\($0)'?" } ?? ""),
                        file: agent.path)
                }
            }
            // A node named anywhere in the template, inside sections too, is waited for: the
            // runner hands a template only the outputs of nodes that finished before it.
            for root in TemplateReferences.allRoots(in: text) where root != node && workflow.nodes[root] != nil { referenced.insert(root) }
            let topLevel = Set(defined + workflow.nodes.keys)
            for problem in fieldProblems(in: text, topLevel: topLevel, node: node) {
                issue("$.\(key)", problem + " (node '\(node)' of \(file))", file: agent.path)
            }
        }
        return referenced
    }

    /// One issue per dependency cycle.
    func cycles(_ dependencies: [String: Set<String>]) -> [ValidationIssue] {
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var stack: [String] = []
        var found: [ValidationIssue] = []
        func visit(_ id: String) {
            if state[id] == 2 { return }
            if state[id] == 1 {
                let cycle = stack.drop(while: { $0 != id }) + [id]
                found.append(ValidationIssue(file: file, path: "$.nodes.\(id)", message: "dependency cycle: \(cycle.joined(separator: " → "))"))
                return
            }
            state[id] = 1
            stack.append(id)
            for dep in (dependencies[id] ?? []).sorted() { visit(dep) }
            stack.removeLast()
            state[id] = 2
        }
        for id in dependencies.keys.sorted() { visit(id) }
        return found
    }
}
