import ChorusJSON

/// Templates checked against the data they read: where an upstream node's output has a
/// schema (its agent's `output_schema`), a dotted path into it (`{{plan.subtasks}}`) and the
/// fields read inside a section over it (`{{#assess}}{{fit_score}}{{/assess}}`) must be
/// fields the schema declares. Before this a typo rendered as nothing, silently.
extension WorkflowChecker {
    /// What a node's output looks like, as a schema; nil when it cannot be known from the
    /// files (no output schema, a merge or a vote).
    func outputSchema(of id: String) -> JSONValue? {
        guard let node = workflow.nodes[id] else { return nil }
        func agentSchema(_ name: String?) -> JSONValue? {
            guard let name, let agent = agents[name] else { return nil }
            return agent.outputSchema ?? ["type": "string"]
        }
        switch (node.kind, node.reconcile.strategy) {
        case (.agent, _): return agentSchema(node.agent)
        case (_, .agent): return agentSchema(node.reconcile.agent)
        case (.foreach, .collect): return agentSchema(node.agent).map { ["type": "array", "items": $0] }
        case (.lead, .collect): return agentSchema(node.worker).map { ["type": "array", "items": $0] }
        case (.foreach, .firstSuccess): return agentSchema(node.agent)
        case (.lead, .firstSuccess): return agentSchema(node.worker)
        case (_, .concat): return ["type": "string"]
        default: return nil
        }
    }

    /// Problems with the fields `text` reads from upstream outputs, each one line. `topLevel`
    /// names every variable the template sees at its root (inputs, the role's own, node ids).
    func fieldProblems(in text: String, topLevel: Set<String>, node: String) -> [String] {
        var problems: [String] = []
        // What each open section iterates over: a schema, nil when unknown.
        var scopes: [JSONValue?] = []
        for token in TemplateReferences.tokens(in: text) {
            switch token {
            case .close:
                if !scopes.isEmpty { scopes.removeLast() }
            case .reference(let full, let opensSection):
                let parts = full.split(separator: ".").map(String.init)
                guard let first = parts.first, first != "." else {
                    if opensSection { scopes.append(nil) }
                    continue
                }
                // Mustache looks a name up in the innermost section's context, then outward,
                // then at the top: the same order here, as far as the shapes are known.
                var schema: JSONValue?
                var known = false
                var unknownScope = false
                for scope in scopes.reversed() {
                    guard let scope else { unknownScope = true; break }
                    if let field = Self.fields(of: Self.element(scope))?[first] {
                        schema = field
                        known = true
                        break
                    }
                }
                if !known && topLevel.contains(first) {
                    schema = first == "inputs" || first == node ? nil : outputSchema(of: first)
                    known = true
                } else if !known && !unknownScope, let innermost = scopes.last, let scope = innermost,
                          let fields = Self.fields(of: Self.element(scope)) {
                    let suggestion = SchemaChecker.closest(first, in: Set(fields.keys))
                    problems.append("'{{\(full)}}': the items this section goes over have no field '\(first)' (fields: "
                                    + fields.keys.sorted().joined(separator: ", ") + ")" + (suggestion.map { "; did you mean '\($0)'?" } ?? ""))
                    if opensSection { scopes.append(nil) }
                    continue
                }
                // The rest of a dotted path, through the schema while it is known.
                var walked = [first]
                for part in parts.dropFirst() {
                    guard known, let current = schema, let fields = Self.fields(of: Self.element(current)) else { schema = nil; break }
                    guard let next = fields[part] else {
                        let suggestion = SchemaChecker.closest(part, in: Set(fields.keys))
                        problems.append("'{{\(full)}}': \(walked.joined(separator: ".")) has no field '\(part)' (fields: "
                                        + fields.keys.sorted().joined(separator: ", ") + ")" + (suggestion.map { "; did you mean '\($0)'?" } ?? ""))
                        schema = nil
                        break
                    }
                    schema = next
                    walked.append(part)
                }
                if opensSection { scopes.append(known ? schema : nil) }
            }
        }
        return problems
    }

    /// An array schema's item schema; any other schema itself (a section over an object
    /// renders once, with the object as its context).
    static func element(_ schema: JSONValue) -> JSONValue {
        schema["type"] == "array" ? schema["items"] ?? [:] : schema
    }

    /// The fields an object schema declares; nil when it declares none (nothing to check).
    static func fields(of schema: JSONValue) -> [String: JSONValue]? {
        guard let properties = schema["properties"]?.objectValue, !properties.isEmpty else { return nil }
        return properties
    }
}
