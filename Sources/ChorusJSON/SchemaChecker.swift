/// Checks a schema a user wrote (an agent's `output_schema`, a tool's `input_schema`, a
/// guard's `schema`, an eval's `json_schema`) before anything uses it: a typo in a schema
/// otherwise passes silently and costs paid calls (a dangling `$ref` failed only after 19
/// calls, retries and escalation included).
///
/// Two layers. First the schema is checked against the subset Chorus enforces, with
/// messages that say what was expected at which path: every keyword known (a typo gets
/// "did you mean"; keywords valid in JSON Schema that Chorus would ignore are refused, since
/// a schema that looks enforced and is not is worse than an error; an `x-` prefix opts a
/// keyword out), values of the right type, `$ref`s that resolve, patterns that compile,
/// `required` names declared when `additionalProperties` is false. Then it is validated
/// against JSON Schema 2020-12's own meta-schema (schemas/json-schema-2020-12.json, built
/// from the published one), which reports anything the first layer did not.
package enum SchemaChecker {
    /// Every problem in `schema`; paths start at `path` (the schema's place in its file, such
    /// as `$.output_schema`).
    package static func problems(in schema: JSONValue, at path: String) -> [SchemaViolation] {
        var found: [SchemaViolation] = []
        walk(schema, root: schema, path: path, into: &found)
        let reported = Set(found.map(\.path))
        // The meta-schema spends about five levels of its own per level of the user's schema
        // (allOf → vocabulary → properties → $ref #): a deep but valid schema must not read as recursive.
        for violation in JSONSchemaValidator(schema: MetaSchema.value, maxDepth: 4096).validate(schema) {
            let located = path + violation.path.dropFirst()
            // A path the first layer spoke for (or a parent of one) already has a better message.
            guard !reported.contains(where: { $0 == located || $0.hasPrefix(located + ".") || $0.hasPrefix(located + "[") })
            else { continue }
            found.append(SchemaViolation(path: located, message: "not valid JSON Schema 2020-12: \(violation.message)"))
        }
        return found
    }

    /// Keywords Chorus's validator enforces.
    static let enforced: Set<String> = [
        "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
        "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minProperties", "maxProperties", "anyOf", "oneOf", "allOf", "not", "$ref", "nullable",
    ]
    /// Keywords that only describe (never checked, never a reason to refuse an answer).
    static let annotations: Set<String> = [
        "$schema", "$id", "$anchor", "$comment", "$defs", "definitions", "title", "description", "default", "examples", "example",
        "format", "deprecated", "readOnly", "writeOnly", "discriminator",
    ]
    /// Valid JSON Schema 2020-12 that Chorus does not check: refused, rather than ignored.
    static let unenforced: Set<String> = [
        "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas", "if", "then", "else", "contains",
        "minContains", "maxContains", "unevaluatedItems", "unevaluatedProperties", "contentEncoding", "contentMediaType",
        "contentSchema", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "dependencies",
    ]
    static let simpleTypes = ["array", "boolean", "integer", "null", "number", "object", "string"]

    private static func walk(_ schema: JSONValue, root: JSONValue, path: String, into found: inout [SchemaViolation]) {
        if case .bool = schema { return }
        guard let keywords = schema.objectValue else {
            found.append(SchemaViolation(path: path, message: "expected a schema (an object, or true or false), found \(shown(schema))"))
            return
        }
        func fail(_ keyword: String, _ message: String) {
            found.append(SchemaViolation(path: path + JSONSchemaValidator.pathComponent(keyword), message: message))
        }
        for (keyword, value) in keywords.sorted(by: { $0.key < $1.key }) {
            if keyword.hasPrefix("x-") || annotations.contains(keyword) { continue }
            if unenforced.contains(keyword) {
                fail(
                    keyword,
                    "'\(keyword)' is valid JSON Schema but Chorus does not check it, so it would be ignored "
                        + "(prefix it x- to keep it as a note)")
                continue
            }
            guard enforced.contains(keyword) else {
                let suggestion = closest(keyword, in: enforced.union(annotations))
                fail(
                    keyword,
                    "unknown keyword '\(keyword)'" + (suggestion.map { " (did you mean '\($0)'?)" } ?? "")
                        + "; an x- prefix marks a note")
                continue
            }
            switch keyword {
            case "type":
                let names = value.arrayValue ?? [value]
                for name in names {
                    guard let text = name.stringValue, simpleTypes.contains(text) else {
                        let suggestion = name.stringValue.flatMap { closest($0, in: Set(simpleTypes)) }
                        fail(
                            keyword,
                            "expected one of \(simpleTypes.map { "\"\($0)\"" }.joined(separator: ", ")) (or an array of them), found \(shown(name))"
                                + (suggestion.map { " (did you mean \"\($0)\"?)" } ?? ""))
                        break
                    }
                }
            case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
                if value.numberValue == nil { fail(keyword, "expected a number, found \(shown(value))") }
            case "multipleOf":
                if (value.numberValue ?? 0) <= 0 { fail(keyword, "expected a number > 0, found \(shown(value))") }
            case "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties":
                if !(value.numberValue.map { $0 >= 0 && $0 == $0.rounded() } ?? false) { fail(keyword, "expected a whole number ≥ 0, found \(shown(value))") }
            case "uniqueItems", "nullable":
                if value.boolValue == nil { fail(keyword, "expected true or false, found \(shown(value))") }
            case "enum":
                if value.arrayValue == nil { fail(keyword, "expected an array of the allowed values, found \(shown(value))") }
            case "required":
                guard let names = value.arrayValue, names.allSatisfy({ $0.stringValue != nil }) else {
                    fail(keyword, "expected an array of property names, found \(shown(value))")
                    continue
                }
                if keywords["additionalProperties"]?.boolValue == false {
                    let declared = Set(keywords["properties"]?.objectValue?.keys.map { $0 } ?? [])
                    for name in names.compactMap(\.stringValue) where !declared.contains(name) {
                        let suggestion = closest(name, in: declared)
                        fail(
                            keyword,
                            "'\(name)' is required but not among the properties, and additionalProperties is false: "
                                + "no answer can pass" + (suggestion.map { " (did you mean '\($0)'?)" } ?? ""))
                    }
                }
            case "pattern":
                if let text = value.stringValue {
                    if let problem = BoundedRegex.problem(in: text) { fail(keyword, "\(problem): /\(text.prefix(80))/") }
                } else {
                    fail(keyword, "expected a regular expression as a string, found \(shown(value))")
                }
            case "$ref":
                guard let reference = value.stringValue else { fail(keyword, "expected a reference string, found \(shown(value))"); continue }
                if !reference.hasPrefix("#") {
                    fail(keyword, "\(reference) is not a reference inside this schema (#/$defs/NAME): Chorus resolves only those")
                } else if root.value(atPointer: String(reference.dropFirst())) == nil {
                    let defined = (root["$defs"]?.objectValue ?? [:]).keys.sorted().map { "#/$defs/\($0)" }
                    fail(keyword, "\(reference) does not resolve" + (defined.isEmpty ? "" : " (defined: \(defined.joined(separator: ", ")))"))
                }
            case "properties":
                guard let properties = value.objectValue else { fail(keyword, "expected an object of property schemas, found \(shown(value))"); continue }
                for (name, sub) in properties.sorted(by: { $0.key < $1.key }) {
                    walk(sub, root: root, path: path + ".properties" + JSONSchemaValidator.pathComponent(name), into: &found)
                }
            case "items", "not", "additionalProperties":
                walk(value, root: root, path: path + "." + keyword, into: &found)
            case "prefixItems", "anyOf", "oneOf", "allOf":
                guard let list = value.arrayValue, !list.isEmpty else {
                    fail(keyword, "expected a non-empty array of schemas, found \(shown(value))"); continue
                }
                for (index, sub) in list.enumerated() { walk(sub, root: root, path: path + ".\(keyword)[\(index)]", into: &found) }
            default:
                break
            }
        }
        for container in ["$defs", "definitions"] {
            for (name, sub) in (keywords[container]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                walk(sub, root: root, path: path + "." + container + JSONSchemaValidator.pathComponent(name), into: &found)
            }
        }
    }

    /// A value as a message quotes it: short, JSON.
    static func shown(_ value: JSONValue) -> String {
        let text = value.text
        return text.count > 60 ? String(text.prefix(57)) + "…" : text
    }

    /// The name in `names` closest to `word`, when it is close enough to be a typo (edit
    /// distance at most 2, or 1 for short words).
    public static func closest(_ word: String, in names: Set<String>) -> String? {
        let limit = word.count <= 4 ? 1 : 2
        let scored = names.map { ($0, distance(word.lowercased(), $0.lowercased())) }.filter { $0.1 <= limit && $0.1 > 0 }
        return scored.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }?.0
    }

    /// Levenshtein distance (names are short: keywords, fields).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
