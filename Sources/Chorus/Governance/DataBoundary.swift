import ChorusJSON

/// Data boundaries: labels on workflow inputs (`"labels": ["pii"]`) and on tools' outputs
/// travel to everything derived from them, and a model that declares what it `accepts`
/// never receives a request carrying another label.
///
/// Worked out from the files, before the run: a node's requests carry the labels of the
/// inputs its agents' templates name, of the tools its agents may call (their results enter
/// the conversation), and of every node it depends on (their outputs are in its prompts).
/// Conservative by construction: a label may be carried where the data it marks is not,
/// never the other way round.
package enum DataBoundary {
    /// Labels each node's requests carry, each with where it came from (`input 'question'`).
    package static func labels(_ project: Project) -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        func visit(_ node: String, _ path: Set<String>) -> [String: String] {
            if let done = result[node] { return done }
            guard let spec = project.workflow.nodes[node], !path.contains(node) else { return [:] }
            var labels: [String: String] = [:]
            for agentName in spec.agentNames {
                guard let agent = project.agents[agentName] else { continue }
                for text in [agent.system, agent.prompt].compactMap({ $0 }) {
                    for reference in TemplateReferences.references(in: text) where reference.root == "inputs" {
                        let parts = reference.full.split(separator: ".")
                        let named = parts.count > 1 ? [String(parts[1])] : project.workflow.inputs.keys.sorted()
                        for input in named {
                            for label in project.workflow.inputs[input]?.labels ?? [] where labels[label] == nil {
                                labels[label] = "input '\(input)'"
                            }
                        }
                    }
                }
                for toolName in agent.tools {
                    for label in project.tools[toolName]?.labels ?? [] where labels[label] == nil { labels[label] = "tool '\(toolName)'" }
                }
            }
            for dependency in (project.dependencies[node] ?? []).sorted() {
                for (label, origin) in visit(dependency, path.union([node])) where labels[label] == nil {
                    labels[label] = origin.hasPrefix("node ") ? origin : "node '\(dependency)' (\(origin))"
                }
            }
            result[node] = labels
            return labels
        }
        for node in project.workflow.nodes.keys.sorted() { _ = visit(node, []) }
        return result
    }

    /// The first label of `labels` that `model` does not accept, with its origin; nil when
    /// the model may receive them all (or declares no `accepts`).
    package static func refusal(_ labels: [String: String], model: ModelSpec) -> (label: String, origin: String)? {
        guard let accepts = model.accepts else { return nil }
        return labels.keys.sorted().first { !accepts.contains($0) }.map { ($0, labels[$0] ?? "") }
    }

    /// One line: why `model` may not receive a label.
    static func describe(_ refusal: (label: String, origin: String), model: ModelSpec) -> String {
        "data boundary: label '\(refusal.label)' (from \(refusal.origin)) may not go to model '\(model.name)' "
            + "(accepts: \((model.accepts ?? []).joined(separator: ", ")))"
    }
}
