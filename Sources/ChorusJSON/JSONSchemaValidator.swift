import Foundation

/// One place where a value does not match its schema: the JSON path and what was expected.
public struct SchemaViolation: Hashable, Sendable, CustomStringConvertible {
    /// Where in the value, as a JSONPath-like string (`$.messages[0].role`).
    public var path: String
    /// What the schema expected there.
    public var message: String

    public var description: String { "\(path): \(message)" }

    /// A violation at `path`.
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
}

/// Validates JSON values against a JSON Schema (draft 2020-12 / OpenAPI 3.1 subset).
///
/// Written by hand because no JSON Schema validator is available as a Swift package
/// here. Covers what agent output schemas and OpenAI's published request schemas use:
/// type, enum, const, properties, required, additionalProperties, items, prefixItems,
/// min/max items and properties, length and value bounds, multipleOf, pattern (bounded:
/// BoundedRegex), anyOf/oneOf/allOf/not, local `$ref`,
/// and OpenAPI's `nullable`. Annotations (format, description, discriminator) are ignored.
public struct JSONSchemaValidator: Sendable {
    private let root: JSONValue

    /// A validator for `schema`; `$ref`s are resolved against `root` (the whole document,
    /// for a schema taken from inside an OpenAPI file), defaulting to the schema itself.
    public init(schema: JSONValue, root: JSONValue? = nil, maxDepth: Int = 64) {
        self.schema = schema
        self.root = root ?? schema
        self.maxDepth = maxDepth
    }

    /// How many schemas deep a check may go before it calls the schema recursive.
    private let maxDepth: Int

    /// The schema values are checked against.
    public let schema: JSONValue

    /// Every violation found, in document order; empty when the value is valid.
    public func validate(_ value: JSONValue) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        check(value, against: schema, path: "$", into: &violations, depth: 0)
        return violations
    }

    private func resolve(_ ref: String) -> JSONValue? {
        ref.hasPrefix("#") ? root.value(atPointer: String(ref.dropFirst())) : nil
    }

    private func check(
        _ value: JSONValue, against schema: JSONValue, path: String,
        into violations: inout [SchemaViolation], depth: Int
    ) {
        if case .bool(let allowed) = schema {
            if !allowed { violations.append(.init(path: path, message: "no value is allowed here")) }
            return
        }
        guard let keywords = schema.objectValue else { return }
        guard depth < maxDepth else {
            violations.append(.init(path: path, message: "schema nesting too deep (recursive $ref?)"))
            return
        }
        func fail(_ message: String) { violations.append(.init(path: path, message: message)) }

        if let ref = keywords["$ref"]?.stringValue {
            if let target = resolve(ref) {
                check(value, against: target, path: path, into: &violations, depth: depth + 1)
            } else {
                fail("schema reference \(ref) cannot be resolved")
            }
        }
        if case .null = value, keywords["nullable"]?.boolValue == true { return }

        if let type = keywords["type"] {
            let allowed = type.arrayValue?.compactMap(\.stringValue) ?? [type.stringValue].compactMap { $0 }
            if !allowed.contains(where: { Self.matches(value, type: $0) }) {
                fail("expected \(allowed.joined(separator: " or ")), found \(value.typeName)")
                return
            }
        }
        if let options = keywords["enum"]?.arrayValue, !options.contains(where: { Self.equal($0, value) }) {
            fail("expected one of \(options.map(\.text).joined(separator: ", ")), found \(value.text)")
        }
        if let constant = keywords["const"], !Self.equal(constant, value) {
            fail("expected \(constant.text), found \(value.text)")
        }
        checkCombinators(value, keywords, path: path, into: &violations, depth: depth)

        switch value {
        case .object(let members): checkObject(members, keywords, path: path, into: &violations, depth: depth)
        case .array(let elements): checkArray(elements, keywords, path: path, into: &violations, depth: depth)
        case .string(let string):
            let length = string.count
            if let min = keywords["minLength"]?.intValue, length < min { fail("expected at least \(min) characters") }
            if let max = keywords["maxLength"]?.intValue, length > max { fail("expected at most \(max) characters") }
            if let pattern = keywords["pattern"]?.stringValue {
                // A schema's pattern is a regex from a file, matched against what a model wrote:
                // bounded like every such regex (BoundedRegex), never run on an open-ended clock.
                if let regex = BoundedRegex.cached(pattern) {
                    do {
                        if try !regex.hasMatch(in: string) { fail("expected a string matching /\(pattern)/") }
                    } catch {
                        fail("\(error) matching /\(pattern)/")
                    }
                } else {
                    fail("the schema's pattern /\(pattern)/ is not a valid regular expression")
                }
            }
        case .number(let number):
            if let min = keywords["minimum"]?.numberValue, number < min { fail("expected a number ≥ \(min.shortText)") }
            if let max = keywords["maximum"]?.numberValue, number > max { fail("expected a number ≤ \(max.shortText)") }
            if let min = keywords["exclusiveMinimum"]?.numberValue, number <= min { fail("expected a number > \(min.shortText)") }
            if let max = keywords["exclusiveMaximum"]?.numberValue, number >= max { fail("expected a number < \(max.shortText)") }
            if let step = keywords["multipleOf"]?.numberValue, step > 0, abs((number / step).rounded() * step - number) > 1e-9 * max(1, abs(number)) {
                fail("expected a multiple of \(step.shortText)")
            }
        default: break
        }
    }

    private func checkCombinators(
        _ value: JSONValue, _ keywords: [String: JSONValue], path: String,
        into violations: inout [SchemaViolation], depth: Int
    ) {
        if let all = keywords["allOf"]?.arrayValue {
            for sub in all { check(value, against: sub, path: path, into: &violations, depth: depth + 1) }
        }
        if let any = keywords["anyOf"]?.arrayValue {
            let passing = any.filter { validates(value, $0, path: path, depth: depth) }
            if passing.isEmpty {
                let message = Self.memberChoice(any, value).map { "expected at least one of \($0.names); found none" }
                violations.append(.init(path: path, message: message ?? "expected a value matching one of \(any.count) alternatives (anyOf)"))
            }
        }
        if let one = keywords["oneOf"]?.arrayValue {
            let count = one.filter { validates(value, $0, path: path, depth: depth) }.count
            if count != 1 {
                let message = Self.memberChoice(one, value).map { "expected exactly one of \($0.names); found \($0.found)" }
                violations.append(
                    .init(path: path, message: message ?? "expected a value matching exactly one of \(one.count) alternatives (oneOf), matched \(count)"))
            }
        }
        if let not = keywords["not"], validates(value, not, path: path, depth: depth) {
            violations.append(.init(path: path, message: "expected a value not matching the 'not' schema"))
        }
    }

    /// When every alternative only requires one member (`"oneOf": [{"required": ["command"]},
    /// {"required": ["url"]}]`, a choice of keys), the choice in its own words: the members'
    /// names and which of them `value` has, rather than how many alternatives matched.
    private static func memberChoice(_ alternatives: [JSONValue], _ value: JSONValue) -> (names: String, found: String)? {
        var names: [String] = []
        for alternative in alternatives {
            guard let keywords = alternative.objectValue, keywords.count == 1, let required = keywords["required"]?.arrayValue,
                required.count == 1, let name = required[0].stringValue
            else { return nil }
            names.append(name)
        }
        guard names.count >= 2, let object = value.objectValue else { return nil }
        let found = names.filter { object[$0] != nil }
        return (list(names), found.isEmpty ? "none" : list(found))
    }

    /// "a, b and c".
    private static func list(_ names: [String]) -> String {
        names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " and " + names[names.count - 1]
    }

    private func validates(_ value: JSONValue, _ schema: JSONValue, path: String, depth: Int) -> Bool {
        var scratch: [SchemaViolation] = []
        check(value, against: schema, path: path, into: &scratch, depth: depth + 1)
        return scratch.isEmpty
    }

    private func checkObject(
        _ members: [String: JSONValue], _ keywords: [String: JSONValue], path: String,
        into violations: inout [SchemaViolation], depth: Int
    ) {
        let properties = keywords["properties"]?.objectValue ?? [:]
        for name in keywords["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where members[name] == nil {
            violations.append(.init(path: path, message: "missing required property '\(name)'"))
        }
        for (name, member) in members.sorted(by: { $0.key < $1.key }) {
            let memberPath = path + Self.pathComponent(name)
            if let sub = properties[name] {
                check(member, against: sub, path: memberPath, into: &violations, depth: depth + 1)
            } else if let additional = keywords["additionalProperties"] {
                if additional.boolValue == false {
                    let known = properties.keys.sorted().joined(separator: ", ")
                    violations.append(.init(path: memberPath, message: "unknown property '\(name)' (expected one of: \(known))"))
                } else if additional.objectValue != nil {
                    check(member, against: additional, path: memberPath, into: &violations, depth: depth + 1)
                }
            }
        }
        if let min = keywords["minProperties"]?.intValue, members.count < min {
            violations.append(.init(path: path, message: "expected at least \(min) properties"))
        }
        if let max = keywords["maxProperties"]?.intValue, members.count > max {
            violations.append(.init(path: path, message: "expected at most \(max) properties"))
        }
    }

    private func checkArray(
        _ elements: [JSONValue], _ keywords: [String: JSONValue], path: String,
        into violations: inout [SchemaViolation], depth: Int
    ) {
        if let min = keywords["minItems"]?.intValue, elements.count < min {
            violations.append(.init(path: path, message: "expected at least \(min) items, found \(elements.count)"))
        }
        if let max = keywords["maxItems"]?.intValue, elements.count > max {
            violations.append(.init(path: path, message: "expected at most \(max) items, found \(elements.count)"))
        }
        let prefix = keywords["prefixItems"]?.arrayValue ?? []
        for (index, element) in elements.enumerated() {
            let sub = index < prefix.count ? prefix[index] : keywords["items"]
            if let sub { check(element, against: sub, path: "\(path)[\(index)]", into: &violations, depth: depth + 1) }
        }
        if keywords["uniqueItems"]?.boolValue == true, Set(elements).count != elements.count {
            violations.append(.init(path: path, message: "expected unique items"))
        }
    }

    /// Whether `schema` holds a `pattern` anywhere: validating against it runs regexes (up to
    /// their time budget each), work to keep off the event loop.
    public static func matchesPatterns(_ schema: JSONValue) -> Bool {
        switch schema {
        case .object(let members): return members["pattern"]?.stringValue != nil || members.values.contains(where: matchesPatterns)
        case .array(let items): return items.contains(where: matchesPatterns)
        default: return false
        }
    }

    /// Whether `value` is of the JSON Schema type named `typeName`.
    public static func matches(_ value: JSONValue, typeName: String) -> Bool {
        matches(value, type: typeName)
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object),
            ("number", .number):
            return true
        case ("integer", .number(let n)): return n == n.rounded() && n.isFinite
        default: return false
        }
    }

    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool { a == b }

    static func pathComponent(_ name: String) -> String {
        let simple = !name.isEmpty && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" }
        return simple ? ".\(name)" : "[\(JSONValue.string(name).text)]"
    }
}

extension JSONValue {
    /// The value at a JSON Pointer (RFC 6901) such as `/$defs/source`, or nil.
    public func value(atPointer pointer: String) -> JSONValue? {
        var node = self
        for token in pointer.split(separator: "/") {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let index = Int(key), let array = node.arrayValue, index < array.count {
                node = array[index]
            } else if let next = node[key] {
                node = next
            } else {
                return nil
            }
        }
        return node
    }
}

extension Double {
    /// Whole numbers without a fraction ("3"), others as Swift prints them ("0.25").
    public var shortText: String { self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self) }
}
