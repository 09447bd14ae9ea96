import ChorusJSON

/// A node's `when`: a condition over upstream outputs (and `inputs`) with no code, so
/// "only if the checker flagged it" or "only for priority high" reads as data. A node
/// whose condition is false is skipped — recorded as `skipped`, never as failed.
///
///     {"path": "score.value", "gte": 0.8}
///     {"path": "triage.priority", "equals": "high"}
///     {"path": "triage.label", "in": ["billing", "refund"]}
///     {"path": "checker.flags", "exists": true}
///     {"not": {…}}, {"all": [{…}, …]}, {"any": [{…}, …]}
///
/// A path's first name is an upstream node (the condition makes it a dependency) or
/// `inputs`; the rest walks objects by key and arrays by index. A missing value compares
/// false (and `exists` says false), so a condition never fails a run.
public indirect enum NodeCondition: Sendable, Equatable {
    /// The value at `path` compared (`equals`, `in`, `exists`, `gt`/`gte`, `lt`/`lte`).
    case compare(path: [String], Comparison)
    /// True when the condition is false.
    case not(NodeCondition)
    /// True when every condition is (and when there are none).
    case all([NodeCondition])
    /// True when one of them is.
    case any([NodeCondition])

    /// How a value is compared.
    public enum Comparison: Sendable, Equatable {
        /// JSON equality.
        case equals(JSONValue)
        /// Equal to one of these.
        case oneOf([JSONValue])
        /// There is a value (true) or none (false).
        case exists(Bool)
        /// A number above this one (or equal to it, with `orEqual`); not a number compares false.
        case greaterThan(Double, orEqual: Bool)
        /// A number below this one (or equal to it, with `orEqual`); not a number compares false.
        case lessThan(Double, orEqual: Bool)
    }

    /// The operators a comparison takes, one per condition.
    static let operators = ["equals", "in", "exists", "gt", "gte", "lt", "lte"]

    /// Parses `json` (the `when` of a node at `at`); a malformed condition is one line naming
    /// where it is and what was expected.
    public init(json: JSONValue, at: String = "$.when") throws(NodeConditionError) {
        guard let object = json.objectValue else { throw NodeConditionError(path: at, "expected an object, found \(json.typeName)") }
        if let inner = object["not"] {
            guard object.count == 1 else { throw NodeConditionError(path: at, "'not' stands alone in its object") }
            self = .not(try NodeCondition(json: inner, at: at + ".not"))
            return
        }
        for key in ["all", "any"] {
            guard let list = object[key] else { continue }
            guard object.count == 1 else { throw NodeConditionError(path: at, "'\(key)' stands alone in its object") }
            guard let items = list.arrayValue, !items.isEmpty else {
                throw NodeConditionError(path: at + ".\(key)", "expected a non-empty array of conditions")
            }
            var conditions: [NodeCondition] = []
            for (i, item) in items.enumerated() { conditions.append(try NodeCondition(json: item, at: at + ".\(key)[\(i)]")) }
            self = key == "all" ? .all(conditions) : .any(conditions)
            return
        }
        guard let pathText = object["path"]?.stringValue, !pathText.isEmpty else {
            throw NodeConditionError(
                path: at, "expected 'path' (NODE.field or inputs.name) with one of \(Self.operators.joined(separator: ", ")), or 'not', 'all', 'any'")
        }
        let path = pathText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if path.contains(where: \.isEmpty) { throw NodeConditionError(path: at + ".path", "'\(pathText)' has an empty name") }
        let given = Self.operators.filter { object[$0] != nil }
        guard given.count == 1, let op = given.first, let operand = object[op] else {
            throw NodeConditionError(
                path: at,
                "expected exactly one of \(Self.operators.joined(separator: ", ")) beside 'path', found \(given.isEmpty ? "none" : given.joined(separator: ", "))"
            )
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "path" && $0 != op }) {
            throw NodeConditionError(path: at + ".\(unknown)", "unknown property '\(unknown)' in a condition")
        }
        switch op {
        case "equals": self = .compare(path: path, .equals(operand))
        case "in":
            guard let options = operand.arrayValue else { throw NodeConditionError(path: at + ".in", "expected an array, found \(operand.typeName)") }
            self = .compare(path: path, .oneOf(options))
        case "exists":
            guard let flag = operand.boolValue else { throw NodeConditionError(path: at + ".exists", "expected true or false, found \(operand.typeName)") }
            self = .compare(path: path, .exists(flag))
        default:
            guard let bound = operand.numberValue, bound.isFinite else {
                throw NodeConditionError(path: at + ".\(op)", "expected a number, found \(operand.typeName)")
            }
            self = .compare(path: path, op.hasPrefix("g") ? .greaterThan(bound, orEqual: op == "gte") : .lessThan(bound, orEqual: op == "lte"))
        }
    }

    /// The names the condition's paths start with: upstream nodes (or `inputs`).
    public var roots: Set<String> {
        switch self {
        case .compare(let path, _): [path[0]]
        case .not(let inner): inner.roots
        case .all(let list), .any(let list): list.reduce(into: Set<String>()) { $0.formUnion($1.roots) }
        }
    }

    /// Whether the condition holds over `variables` (upstream outputs by node, `inputs`).
    public func holds(in variables: [String: JSONValue]) -> Bool {
        switch self {
        case .not(let inner): return !inner.holds(in: variables)
        case .all(let list): return list.allSatisfy { $0.holds(in: variables) }
        case .any(let list): return list.contains { $0.holds(in: variables) }
        case .compare(let path, let comparison):
            let value = Self.value(at: path, in: variables)
            switch comparison {
            case .exists(let flag): return (value != nil && value != .null) == flag
            case .equals(let expected): return value.map { Self.same($0, expected) } ?? false
            case .oneOf(let options): return value.map { v in options.contains { Self.same(v, $0) } } ?? false
            case .greaterThan(let bound, let orEqual):
                guard let n = value?.numberValue else { return false }
                return orEqual ? n >= bound : n > bound
            case .lessThan(let bound, let orEqual):
                guard let n = value?.numberValue else { return false }
                return orEqual ? n <= bound : n < bound
            }
        }
    }

    /// Why the condition did not hold, for the skipped step's record: the condition as written.
    public var text: String {
        switch self {
        case .not(let inner): "not (\(inner.text))"
        case .all(let list): list.map(\.text).joined(separator: " and ")
        case .any(let list): "(" + list.map(\.text).joined(separator: " or ") + ")"
        case .compare(let path, let comparison):
            path.joined(separator: ".") + " "
                + {
                    switch comparison {
                    case .equals(let v): "equals \(v.text)"
                    case .oneOf(let options): "in \(JSONValue.array(options).text)"
                    case .exists(let flag): flag ? "exists" : "does not exist"
                    case .greaterThan(let b, let e): (e ? "≥ " : "> ") + JSONValue.number(b).text
                    case .lessThan(let b, let e): (e ? "≤ " : "< ") + JSONValue.number(b).text
                    }
                }()
        }
    }

    static func value(at path: [String], in variables: [String: JSONValue]) -> JSONValue? {
        guard var value = variables[path[0]] else { return nil }
        // A node's answer given as JSON text is read as the JSON it holds, fenced or not (as a route reads it).
        if let text = value.stringValue, path.count > 1, let parsed = try? ModelAnswerParser.json(from: text) { value = parsed }
        for key in path.dropFirst() {
            if let object = value.objectValue {
                guard let next = object[key] else { return nil }
                value = next
            } else if let array = value.arrayValue, let index = Int(key), array.indices.contains(index) {
                value = array[index]
            } else {
                return nil
            }
        }
        return value
    }

    /// JSON equality with numbers compared by value (1 and 1.0 are the same).
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = a.numberValue, let y = b.numberValue { return x == y }
        return a == b
    }
}

/// A malformed `when`, one line: where, and what was expected.
public struct NodeConditionError: Error, Sendable, CustomStringConvertible {
    /// Where in the file (`$.nodes.review.when.all[1]`).
    public var path: String
    /// What was wrong and what is accepted.
    public var message: String
    init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}
