import ChorusJSON
import Foundation

/// One line of an eval dataset (`evals/NAME.jsonl`): the workflow's inputs and what a right
/// output looks like. A case passes when its run succeeds and every expectation holds.
public struct EvalCase: Sendable {
    /// Unique within the file.
    public var id: String
    /// 1-based line number in the file.
    public var line: Int
    /// The workflow's inputs, as `--input` gives them.
    public var inputs: JSONValue
    /// The checks on the output; all must hold.
    public var expectations: [EvalExpectation]
    /// `expect_route`: route node → the label it should choose. A bare label in the file
    /// names the workflow's only route node; without a workflow to read, its key is "".
    public var routes: [String: String] = [:]
    /// The line's `tags`, as given: labels for whoever reads the dataset.
    public var tags: [String]
}

/// One check on a run's output. `jsonPath` (a JSONPath such as `$.answer` or
/// `$.items[0].name`) selects the part checked; without it, the whole output.
public struct EvalExpectation: Sendable, Equatable {
    /// How the selected value is checked.
    public enum Check: Sendable, Equatable {
        /// JSON equality (strings compared case-insensitively with `ignoreCase`).
        case equals(JSONValue)
        /// The value's text (a string as is, anything else as JSON) contains this.
        case contains(String)
        /// The value's text matches this regular expression somewhere.
        case regex(String)
        /// The value is valid against this JSON Schema.
        case jsonSchema(JSONValue)
        /// The value is a number (or a string holding one) within `tolerance` of this.
        case number(Double, tolerance: Double)
        /// An agent grades the output: `{"pass": bool, "score": 0..1, "reason": …}`; it passes
        /// when `pass` is true and the score reaches `minScore`.
        case judge(agent: String, minScore: Double, criteria: String?)
    }

    /// The check.
    public var check: Check
    /// The part of the output checked (`$.answer`); nil checks the whole output.
    public var jsonPath: String?
    /// Compare strings without regard to case (`equals`, `contains`, `regex`).
    public var ignoreCase: Bool

    /// What it checks, one line (`$.answer equals "positive"`).
    public var summary: String {
        let subject = jsonPath ?? "output"
        switch check {
        case .equals(let value): return "\(subject) equals \(value.text)"
        case .contains(let text): return "\(subject) contains \(JSONValue.string(text).text)"
        case .regex(let pattern): return "\(subject) matches /\(pattern)/"
        case .jsonSchema: return "\(subject) is valid against the schema"
        case .number(let value, let tolerance): return "\(subject) = \(Self.format(value)) ± \(Self.format(tolerance))"
        // Worded as the requirement: a failed grade reads "judge X must pass it: why not".
        case .judge(let agent, let minScore, _): return "judge \(agent) must pass it" + (minScore > 0 ? " with a score ≥ \(Self.format(minScore))" : "")
        }
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

/// Reads eval datasets, reporting every problem as `file:line: $.path: what was expected`.
public enum EvalCases {
    /// Kinds of check; an expectation has exactly one.
    static let checks = ["equals", "contains", "regex", "json_schema", "number", "judge"]
    /// A dataset larger than this is not read (each case is a run per variant).
    public static let maxCases = 100_000
    static let maxBytes = 256 << 20

    /// Regex expectations whose nested quantifiers make matching exponential (they run,
    /// within their time budget): `chorus validate` warns about them.
    public static func warnings(_ cases: [EvalCase], file: String) -> [ValidationIssue] {
        cases.flatMap { evalCase in
            evalCase.expectations.enumerated().compactMap { index, expectation -> ValidationIssue? in
                guard case .regex(let pattern) = expectation.check, let nested = BoundedRegex.nestedQuantifier(in: pattern) else { return nil }
                return ValidationIssue(file: file, path: "line \(evalCase.line): $.expect[\(index)].regex", message: SpecLoader.nestedWarning(nested))
            }
        }
    }

    /// The cases of `path`, or every problem found in it. With `workflow`, each case's inputs
    /// are checked against the workflow's declared inputs too, and its expected routes
    /// against the workflow's route nodes (and their agents' labels, those in `agents`).
    public static func load(
        _ path: String, workflow: WorkflowSpec? = nil, agents: [String: AgentSpec] = [:]
    ) -> Result<[EvalCase], ValidationFailure> {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            return .failure(ValidationFailure([ValidationIssue(file: path, path: "$", message: "no such file")]))
        }
        if let size = attributes[.size] as? Int, size > maxBytes {
            return .failure(
                ValidationFailure([ValidationIssue(file: path, path: "$", message: "\(size) bytes: an eval dataset may hold at most \(maxBytes >> 20) MiB")]))
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(ValidationFailure([ValidationIssue(file: path, path: "$", message: "cannot be read")]))
        }
        return parse(Array(data), file: path, workflow: workflow, agents: agents)
    }

    /// Parses JSON Lines text (blank lines and lines starting with `//` are skipped).
    static func parse(
        _ bytes: [UInt8], file: String, workflow: WorkflowSpec?, agents: [String: AgentSpec] = [:]
    ) -> Result<[EvalCase], ValidationFailure> {
        var cases: [EvalCase] = []
        var issues: [ValidationIssue] = []
        var seen: [String: Int] = [:]
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (offset, raw) in lines.enumerated() {
            let number = offset + 1
            let location = "\(file):\(number)"
            let text = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespaces.union(.init(charactersIn: "\r")))
            if text.isEmpty || text.hasPrefix("//") { continue }
            guard cases.count < maxCases else {
                issues.append(ValidationIssue(file: location, path: "$", message: "more than \(maxCases) cases"))
                break
            }
            let json: JSONValue
            do { json = try JSONValue(parsing: text) } catch {
                issues.append(ValidationIssue(file: location, path: "column \(error.column)", message: "invalid JSON: \(error.reason)"))
                continue
            }
            let violations = JSONSchemaValidator(schema: SpecSchemas.evalCaseValue).validate(json)
            if !violations.isEmpty {
                issues += violations.map { ValidationIssue(file: location, path: $0.path, message: $0.message) }
                continue
            }
            let id = json["id"]?.stringValue ?? ""
            if let first = seen[id] {
                issues.append(ValidationIssue(file: location, path: "$.id", message: "'\(id)' is already the id of line \(first)"))
                continue
            }
            seen[id] = number
            if json["expect"] == nil && json["expect_route"] == nil {
                issues.append(ValidationIssue(file: location, path: "$", message: "expected expect, expect_route or both: a case must check something"))
                continue
            }
            let raws = json["expect"].map { $0.arrayValue ?? [$0] } ?? []
            var expectations: [EvalExpectation] = []
            for (index, raw) in raws.enumerated() {
                let at = json["expect"]?.arrayValue == nil ? "$.expect" : "$.expect[\(index)]"
                switch expectation(raw) {
                case .success(let expectation): expectations.append(expectation)
                case .failure(let problem):
                    issues.append(ValidationIssue(file: location, path: problem.path.map { "\(at).\($0)" } ?? at, message: problem.message))
                }
            }
            let (routes, routeIssues) = expectedRoutes(json["expect_route"], workflow: workflow, agents: agents)
            issues += routeIssues.map { ValidationIssue(file: location, path: $0.path.map { "$.expect_route" + $0 } ?? "$.expect_route", message: $0.message) }
            var inputs = json["inputs"] ?? [:]
            if let workflow {
                let (complete, found) = RunInputs.complete(inputs.objectValue ?? [:], source: location, workflow: workflow)
                issues += found.map {
                    ValidationIssue(file: $0.file, path: $0.path.hasPrefix("$") ? "$.inputs" + $0.path.dropFirst() : "$.inputs.\($0.path)", message: $0.message)
                }
                inputs = .object(complete)
            }
            cases.append(
                EvalCase(
                    id: id, line: number, inputs: inputs, expectations: expectations, routes: routes,
                    tags: json["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []))
        }
        if cases.isEmpty && issues.isEmpty { issues.append(ValidationIssue(file: file, path: "$", message: "no cases: expected one JSON object per line")) }
        return issues.isEmpty ? .success(cases) : .failure(ValidationFailure(issues))
    }

    private struct Problem: Error {
        var path: String?
        var message: String
    }

    /// `expect_route` as route node → label: a bare label belongs to the workflow's only
    /// route node; an object names each node. With the workflow at hand, every node must be
    /// one of its route nodes and every label one of that route's case labels (a label
    /// the default takes is named by the agent's enum, which `EvalPlan` checks).
    private static func expectedRoutes(_ json: JSONValue?, workflow: WorkflowSpec?, agents: [String: AgentSpec]) -> ([String: String], [Problem]) {
        guard let json else { return ([:], []) }
        let routeNodes = workflow.map { workflow in workflow.nodes.keys.filter { workflow.nodes[$0]?.routeSpec != nil }.sorted() }
        var routes: [String: String] = [:]
        if let label = json.stringValue {
            guard let routeNodes else { return (["": label], []) }
            guard routeNodes.count == 1, let only = routeNodes.first else {
                return (
                    [:],
                    [
                        Problem(
                            message: routeNodes.isEmpty
                                ? "\(workflow?.path ?? "the workflow") has no route node to check"
                                : "\(workflow?.path ?? "the workflow") has \(routeNodes.count) route nodes (\(routeNodes.joined(separator: ", "))): name each, as {\"\(routeNodes[0])\": \"\(label)\"}"
                        )
                    ]
                )
            }
            routes[only] = label
        } else {
            for (node, label) in json.objectValue ?? [:] { routes[node] = label.stringValue ?? "" }
            if let routeNodes {
                for node in routes.keys.sorted() where !routeNodes.contains(node) {
                    return (
                        [:],
                        [
                            Problem(
                                path: ".\(node)",
                                message: "'\(node)' is not a route node (route nodes: \(routeNodes.isEmpty ? "none" : routeNodes.joined(separator: ", ")))")
                        ]
                    )
                }
            }
        }
        for (node, label) in routes.sorted(by: { $0.key < $1.key }) {
            guard let route = workflow?.nodes[node]?.routeSpec else { continue }
            // The agent's enum names every label it may answer; without it, the cases do
            // (unless a default takes the rest).
            let enumerated = agents[route.agent]?.outputSchema?["properties"]?[route.on]?["enum"]?.arrayValue?.compactMap(\.stringValue)
            guard let labels = enumerated ?? (route.fallback == nil ? route.cases.keys.sorted() : nil), !labels.contains(label) else { continue }
            let at = json.stringValue == nil ? ".\(node)" : nil
            return ([:], [Problem(path: at, message: "'\(label)' is not one of \(node)'s labels (\(labels.joined(separator: ", ")))")])
        }
        return (routes, [])
    }

    private static func expectation(_ json: JSONValue) -> Result<EvalExpectation, Problem> {
        let present = checks.filter { json[$0] != nil }
        guard present.count == 1, let kind = present.first else {
            return .failure(
                Problem(
                    message: present.isEmpty
                        ? "expected one check: \(checks.joined(separator: ", "))"
                        : "one check per expectation, found \(present.joined(separator: " and ")) (use a list for several)"))
        }
        for (option, owner) in [("tolerance", "number"), ("min_score", "judge"), ("criteria", "judge")] where json[option] != nil && kind != owner {
            return .failure(Problem(path: option, message: "\(option) goes with \(owner), not \(kind)"))
        }
        if json["ignore_case"] != nil && !["equals", "contains", "regex"].contains(kind) {
            return .failure(Problem(path: "ignore_case", message: "ignore_case goes with equals, contains or regex, not \(kind)"))
        }
        if let path = json["json_path"]?.stringValue, let problem = JSONPath.problem(in: path) {
            return .failure(Problem(path: "json_path", message: problem))
        }
        let ignoreCase = json["ignore_case"]?.boolValue ?? false
        let check: EvalExpectation.Check
        switch kind {
        case "equals": check = .equals(json["equals"]!)
        case "contains": check = .contains(json["contains"]?.stringValue ?? "")
        case "regex":
            let pattern = json["regex"]?.stringValue ?? ""
            if let problem = BoundedRegex.problem(in: pattern) { return .failure(Problem(path: "regex", message: problem)) }
            check = .regex(ignoreCase ? "(?i)" + pattern : pattern)
        case "json_schema":
            let schema = json["json_schema"]!
            if let first = SchemaChecker.problems(in: schema, at: "$").first {
                return .failure(Problem(path: "json_schema" + first.path.dropFirst(), message: first.message))
            }
            check = .jsonSchema(schema)
        case "number": check = .number(json["number"]?.numberValue ?? 0, tolerance: json["tolerance"]?.numberValue ?? 1e-9)
        default:
            check = .judge(
                agent: json["judge"]?.stringValue ?? "", minScore: json["min_score"]?.numberValue ?? 0,
                criteria: json["criteria"]?.stringValue)
        }
        return .success(EvalExpectation(check: check, jsonPath: json["json_path"]?.stringValue, ignoreCase: ignoreCase))
    }
}
