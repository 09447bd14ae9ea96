import ChorusJSON
import Foundation

/// Builds a run's inputs from `--input k=v` pairs and an optional JSON file, typed by the
/// workflow's declarations, with defaults applied. Every problem is reported.
package enum RunInputs {
    /// The inputs object, or every issue (unknown names, wrong types, missing values).
    package static func resolve(_ pairs: [String], file: String?, workflow: WorkflowSpec) -> Result<JSONValue, ValidationFailure> {
        var values: [String: JSONValue] = [:]
        var issues: [ValidationIssue] = []
        if let file {
            switch SpecLoader.document(file, schema: ["type": "object"]) {
            case (let json?, let found) where found.isEmpty: values = json.objectValue ?? [:]
            case (_, let found): issues += found
            }
        }
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "=") else {
                issues.append(ValidationIssue(file: "--input", path: pair, message: "expected NAME=VALUE"))
                continue
            }
            let name = String(pair[..<equals])
            let raw = String(pair[pair.index(after: equals)...])
            guard let spec = workflow.inputs[name] else {
                issues.append(
                    ValidationIssue(
                        file: "--input", path: name,
                        message: "\(workflow.path) declares no input '\(name)' (inputs: \(workflow.inputs.keys.sorted().joined(separator: ", ")))"))
                continue
            }
            if spec.type == "string" {
                values[name] = .string(raw)
            } else if let parsed = try? JSONValue(parsing: raw) {
                values[name] = parsed
            } else {
                issues.append(ValidationIssue(file: "--input", path: name, message: "expected a JSON \(spec.type), got '\(raw)'"))
            }
        }
        let named = Set(issues.map(\.path))
        let (complete, found) = complete(values.filter { !named.contains($0.key) }, source: file ?? "--input", workflow: workflow)
        values = complete
        issues += found
        return issues.isEmpty ? .success(.object(values)) : .failure(ValidationFailure(issues))
    }

    /// `values` with defaults filled in, checked against the workflow's declarations:
    /// undeclared names, missing required inputs and wrong types, each an issue of `source`.
    static func complete(_ values: [String: JSONValue], source: String, workflow: WorkflowSpec) -> ([String: JSONValue], [ValidationIssue]) {
        var values = values
        var issues: [ValidationIssue] = []
        for name in values.keys.sorted() where workflow.inputs[name] == nil {
            issues.append(
                ValidationIssue(
                    file: source, path: "$.\(name)",
                    message: "\(workflow.path) declares no input '\(name)' (inputs: \(workflow.inputs.keys.sorted().joined(separator: ", ")))"))
        }
        for (name, spec) in workflow.inputs.sorted(by: { $0.key < $1.key }) {
            if values[name] == nil, let fallback = spec.defaultValue { values[name] = fallback }
            guard let value = values[name] else {
                issues.append(
                    ValidationIssue(
                        file: source, path: name, message: "missing required input '\(name)' (\(spec.type)\(spec.description.map { ": \($0)" } ?? ""))"))
                continue
            }
            if !JSONSchemaValidator.matches(value, typeName: spec.type) {
                issues.append(ValidationIssue(file: source, path: name, message: "expected \(spec.type), found \(value.typeName)"))
            }
        }
        return (values, issues)
    }
}
