import Chorus
import ChorusJSON
import Foundation
import Testing
import TestSupport

/// Schemas users write are checked as JSON Schema 2020-12 and against what Chorus enforces
/// (issue 24: eight ordinary schema mistakes all passed `chorus validate`).
@Suite struct SchemaCheckerTests {
    static let root = SDKConformanceTests.root

    private func problems(_ json: String) throws -> [String] {
        SchemaChecker.problems(in: try JSONValue(parsing: Array(json.utf8)), at: "$.output_schema").map(\.description)
    }

    @Test func eachMistakeIsOneLineWithItsPath() throws {
        let cases: [(String, String)] = [
            (#"{"type": "object", "required": "store"}"#, #"$.output_schema.required: expected an array of property names, found "store""#),
            (
                #"{"properties": {"fit_score": {"type": "number", "minimum": "zero"}}}"#,
                #"$.output_schema.properties.fit_score.minimum: expected a number, found "zero""#
            ),
            (#"{"properties": {"db": {"enum": "postgres"}}}"#, #"$.output_schema.properties.db.enum: expected an array of the allowed values"#),
            (#"{"type": "object", "propertes": {}}"#, "$.output_schema.propertes: unknown keyword 'propertes' (did you mean 'properties'?)"),
            (#"{"properties": {"a": {"properties": {"b": {"type": "strin"}}}}}"#, #"found "strin" (did you mean "string"?)"#),
            (#"{"properties": {"a": {"type": "string", "pattern": "([a-z"}}}"#, "$.output_schema.properties.a.pattern: not a valid regular expression"),
            (##"{"properties": {"a": {"$ref": "#/$defs/missing"}}}"##, "#/$defs/missing does not resolve"),
            (#"{"required": ["a", "b"], "properties": {"a": {}}, "additionalProperties": false}"#, "'b' is required but not among the properties"),
            (#"{"if": {"required": ["a"]}, "then": {"required": ["b"]}}"#, "'if' is valid JSON Schema but Chorus does not check it"),
            (#"{"type": "array", "items": 5}"#, "$.output_schema.items: expected a schema"),
            (#"{"type": "string", "minLength": -1}"#, "minLength: expected a whole number ≥ 0, found -1"),
            (#"{"type": "object", "title": 5}"#, "$.output_schema.title: not valid JSON Schema 2020-12: expected string, found integer"),
        ]
        for (schema, expected) in cases {
            let found = try problems(schema)
            #expect(found.contains { $0.contains(expected) }, "\(schema): \(found)")
            #expect(found.allSatisfy { $0.count <= 400 && !$0.contains("\n") })
        }
        #expect(
            try problems(
                #"{"type": "object", "required": ["a"], "properties": {"a": {"type": ["string", "null"], "x-ui": "wide"}}, "$defs": {"b": {"type": "integer"}}}"#
            ).isEmpty)
    }

    /// Twenty levels of objects, arrays and anyOf are valid JSON Schema, not "recursive".
    @Test func aDeepValidSchemaPasses() throws {
        var schema: JSONValue = ["type": "string"]
        for level in 0..<20 {
            schema =
                level % 3 == 0
                ? ["type": "object", "properties": ["next": schema]]
                : level % 3 == 1 ? ["type": "array", "items": schema] : ["anyOf": [schema, ["type": "null"]]]
        }
        #expect(SchemaChecker.problems(in: schema, at: "$").isEmpty, "\(SchemaChecker.problems(in: schema, at: "$"))")
    }

    @Test func theMetaSchemaIsTheFileAndBuiltFromThePublishedOne() throws {
        let shipped = try String(contentsOf: Self.root.appendingPathComponent("schemas/json-schema-2020-12.json"), encoding: .utf8)
        #expect(shipped == MetaSchema.text + "\n", "Sources/ChorusJSON/MetaSchema.swift embeds schemas/json-schema-2020-12.json")
        #expect(MetaSchema.value.objectValue?["$defs"]?.objectValue?.count == 7)
        guard let python = SDKConformanceTests.python else { return }
        let built = try execute(python, [Self.root.appendingPathComponent("scripts/metaschema/flatten.py").path])
        #expect(built.status == 0 && built.stdout == shipped, "rebuilt from jsonschema-specifications, it differs: \(built.stderr)")
    }

    /// Chorus's validator on the flattened meta-schema and the `jsonschema` package on the
    /// published one give the same verdict on each schema.
    @Test(.enabled(if: SDKConformanceTests.python != nil, "no conformance venv: scripts/test creates it"))
    func chorusAndTheJSONSchemaPackageAgree() throws {
        let schemas = [
            #"{"type": "object"}"#, #"true"#, #"{"type": "strin"}"#, #"{"type": ["string", "null"]}"#, #"{"type": []}"#,
            #"{"required": "a"}"#, #"{"required": ["a", "a"]}"#, #"{"minimum": "0"}"#, #"{"maxLength": -1}"#, #"{"maxLength": 1.5}"#,
            #"{"enum": "x"}"#, #"{"enum": []}"#, #"{"items": 3}"#, #"{"properties": {"a": 1}}"#, #"{"properties": {"a": {"type": "integer"}}}"#,
            #"{"allOf": []}"#, #"{"anyOf": [{}, {"type": "number"}]}"#, #"{"$defs": {"x": {"type": 1}}}"#, #"{"$ref": 5}"#,
            #"{"pattern": 3}"#, #"{"title": 5}"#, #"{"uniqueItems": "yes"}"#, #"{"additionalProperties": {"type": "string"}}"#,
            #"{"prefixItems": [{"type": "string"}], "minItems": 1}"#, #"{"multipleOf": 0}"#, #"{"dependentRequired": {"a": ["b"]}}"#,
        ]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-meta-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var ours: [String: Bool] = [:]
        for (index, text) in schemas.enumerated() {
            let name = String(format: "s%02d.json", index)
            try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
            ours[name] = JSONSchemaValidator(schema: MetaSchema.value).validate(try JSONValue(parsing: Array(text.utf8))).isEmpty
        }
        let names = ours.keys.sorted().map { directory.appendingPathComponent($0).path }
        let checked = try execute(
            try #require(SDKConformanceTests.python),
            [Self.root.appendingPathComponent("scripts/metaschema/check_schemas.py").path] + names)
        #expect(checked.status == 0, "\(checked.stderr)")
        let theirs = Dictionary(
            uniqueKeysWithValues: checked.stdout.split(separator: "\n").map { line -> (String, Bool) in
                let parts = line.split(separator: " ")
                return (String(parts[0]), parts.last == "valid")
            })
        #expect(theirs.count == schemas.count)
        for name in ours.keys.sorted() {
            #expect(
                ours[name] == theirs[name], "\(name) \(schemas[Int(name.dropFirst().prefix(2))!]): Chorus \(ours[name]!), jsonschema \(theirs[name] ?? false)")
        }
    }
}
