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
        case (.lead, .collect): return agentSchema(node.leadSpec?.worker).map { ["type": "array", "items": $0] }
        case (.foreach, .firstSuccess): return agentSchema(node.agent)
        case (.lead, .firstSuccess): return agentSchema(node.leadSpec?.worker)
        case (_, .concat): return ["type": "string"]
        default: return nil
        }
    }

    /// What an open section puts in front of the lookup.
    private enum Scope {
        /// A value of this schema (a section over a list pushes each item; over an object, it).
        case known(JSONValue)
        /// A value whose shape the files do not say: anything may be found in it.
        case unknown
        /// Nothing (an inverted section, a block): lookups pass through.
        case transparent
    }

    /// Problems with the fields `text` reads from upstream outputs, each one line. `topLevel`
    /// names every variable the template sees at its root (inputs, the role's own, node ids).
    func fieldProblems(in text: String, topLevel: Set<String>, node: String) -> [String] {
        var problems: [String] = []
        var scopes: [Scope] = []
        for token in TemplateReferences.tokens(in: text) {
            let full: String
            switch token {
            case .close:
                if !scopes.isEmpty { scopes.removeLast() }
                continue
            case .block:
                scopes.append(.transparent)
                continue
            case .variable(let name), .section(let name), .inverted(let name):
                full = name
            }
            let (problem, schema) = resolve(full, in: scopes, topLevel: topLevel, node: node)
            if let problem { problems.append(problem) }
            switch token {
            case .section: scopes.append(schema.map { .known($0) } ?? .unknown)
            case .inverted: scopes.append(.transparent)
            default: break
            }
        }
        return problems
    }

    /// The schema of the value `full` names where `scopes` are open (nil when unknown), or
    /// why it names nothing. Mustache looks a name up in the innermost section's context,
    /// then outward, then at the top: the same order here, as far as the shapes are known.
    private func resolve(_ full: String, in scopes: [Scope], topLevel: Set<String>, node: String) -> (String?, JSONValue?) {
        let parts = full.split(separator: ".").map(String.init)
        guard let first = parts.first, first != "." else { return (nil, nil) }
        var schema: JSONValue?
        var found = false
        var innermost: [String: JSONValue]?
        var overItems = false
        lookup: for scope in scopes.reversed() {
            switch scope {
            case .transparent: continue
            case .unknown: return (nil, nil)  // it may hold the name: nothing to say
            case .known(let value):
                let fields = Self.fields(of: Self.element(value))
                if innermost == nil { innermost = fields ?? [:]; overItems = value["type"] == "array" }
                guard let fields else { return (nil, nil) }
                if let field = fields[first] { schema = field; found = true; break lookup }
            }
        }
        if !found {
            guard topLevel.contains(first) else {
                guard let fields = innermost, !fields.isEmpty else { return (nil, nil) }
                let suggestion = SchemaChecker.closest(first, in: Set(fields.keys))
                let what = overItems ? "the items this section goes over have" : "the value this section opens has"
                return (
                    "'{{\(full)}}': \(what) no field '\(first)' (fields: " + fields.keys.sorted().joined(separator: ", ") + ")"
                        + (suggestion.map { "; did you mean '\($0)'?" } ?? ""), nil
                )
            }
            schema = first == "inputs" || first == node ? nil : outputSchema(of: first)
        }
        // The rest of a dotted path, through the schema while it is known.
        var walked = [first]
        for part in parts.dropFirst() {
            guard let current = schema else { return (nil, nil) }
            if current["type"] == "array" {
                let path = walked.joined(separator: ".")
                return ("'{{\(full)}}': \(path) is a list, which has no field '\(part)': go over it with {{#\(path)}}…{{/\(path)}}", nil)
            }
            guard let fields = Self.fields(of: current) else { return (nil, nil) }
            guard let next = fields[part] else {
                let suggestion = SchemaChecker.closest(part, in: Set(fields.keys))
                return (
                    "'{{\(full)}}': \(walked.joined(separator: ".")) has no field '\(part)' (fields: " + fields.keys.sorted().joined(separator: ", ") + ")"
                        + (suggestion.map { "; did you mean '\($0)'?" } ?? ""), nil
                )
            }
            schema = next
            walked.append(part)
        }
        return (nil, schema)
    }

    /// An array schema's item schema; any other schema itself (a section over an object
    /// renders once, with the object as its context).
    static func element(_ schema: JSONValue) -> JSONValue {
        schema["type"] == "array" ? schema["items"] ?? [:] : schema
    }

    /// The fields an object schema declares; nil when the files cannot say which fields a
    /// value has: none declared, others allowed explicitly (`additionalProperties` true or a
    /// schema: a map), or fields added by `allOf`/`anyOf`/`oneOf`.
    static func fields(of schema: JSONValue) -> [String: JSONValue]? {
        guard let properties = schema["properties"]?.objectValue, !properties.isEmpty else { return nil }
        if let extra = schema["additionalProperties"], extra != .bool(false) { return nil }
        if schema["allOf"] != nil || schema["anyOf"] != nil || schema["oneOf"] != nil { return nil }
        return properties
    }
}
