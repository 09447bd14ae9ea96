import ChorusJSON
import Testing

@Suite struct JSONSchemaValidatorTests {
    let schema: JSONValue = [
        "type": "object",
        "required": ["answer", "sources"],
        "additionalProperties": false,
        "properties": [
            "answer": ["type": "string", "minLength": 1],
            "confidence": ["type": "number", "minimum": 0, "maximum": 1],
            "sources": ["type": "array", "minItems": 1, "items": ["$ref": "#/$defs/source"]],
            "kind": ["enum": ["fact", "opinion"]],
        ],
        "$defs": ["source": ["type": "object", "required": ["url"], "properties": ["url": ["type": "string", "pattern": "^https?://"]]]],
    ]

    @Test func aValidValueHasNoViolations() throws {
        let value = try JSONValue(parsing: #"{"answer":"yes","confidence":0.9,"sources":[{"url":"https://a.example"}],"kind":"fact"}"#)
        #expect(JSONSchemaValidator(schema: schema).validate(value).isEmpty)
    }

    @Test func everyViolationIsReportedWithItsPath() throws {
        let value = try JSONValue(parsing: #"{"answer":"","confidence":2,"sources":[{"url":"ftp://x"},{}],"kind":"rumour","extra":1}"#)
        let violations = JSONSchemaValidator(schema: schema).validate(value).map(\.description)
        #expect(violations.contains("$.answer: expected at least 1 characters"))
        #expect(violations.contains("$.confidence: expected a number ≤ 1"))
        #expect(
            violations.contains("$.sources[0].url: expected a string matching /^https?:\\/\\//")
                || violations.contains { $0.hasPrefix("$.sources[0].url: expected a string matching") })
        #expect(violations.contains("$.sources[1]: missing required property 'url'"))
        #expect(violations.contains { $0.hasPrefix("$.kind: expected one of") })
        #expect(violations.contains { $0.hasPrefix("$.extra: unknown property 'extra'") })
        #expect(violations.count == 6)
    }

    @Test func typeMismatchesNameBothTypes() {
        let violations = JSONSchemaValidator(schema: schema).validate(["answer": 3, "sources": []])
        #expect(violations.map(\.description).contains("$.answer: expected string, found integer"))
        #expect(violations.map(\.description).contains("$.sources: expected at least 1 items, found 0"))
    }

    /// A choice of keys (each alternative requires one member) is said in the keys' names:
    /// which are expected, which were given. Other alternatives keep the count.
    @Test func aChoiceOfKeysNamesTheKeysGivenAndExpected() {
        let choice = JSONValue.object(["oneOf": [["required": ["command"]], ["required": ["url"]]]])
        #expect(
            JSONSchemaValidator(schema: choice).validate(["command": ["x"], "url": "http://h/"]).map(\.message)
                == ["expected exactly one of command and url; found command and url"])
        #expect(JSONSchemaValidator(schema: choice).validate(["tools": []]).map(\.message) == ["expected exactly one of command and url; found none"])
        let some = JSONValue.object(["anyOf": [["required": ["a"]], ["required": ["b"]], ["required": ["c"]]]])
        #expect(JSONSchemaValidator(schema: some).validate([:]).map(\.message) == ["expected at least one of a, b and c; found none"])
        let shapes = JSONValue.object(["oneOf": [["type": "number"], ["type": "integer"]]])
        #expect(
            JSONSchemaValidator(schema: shapes).validate(3).map(\.message) == ["expected a value matching exactly one of 2 alternatives (oneOf), matched 2"])
    }

    @Test func combinatorsAndNullableWork() {
        let schema: JSONValue = ["anyOf": [["type": "string"], ["type": "integer", "nullable": true]]]
        let validator = JSONSchemaValidator(schema: schema)
        #expect(validator.validate("x").isEmpty)
        #expect(validator.validate(3).isEmpty)
        #expect(validator.validate(nil).isEmpty)
        #expect(!validator.validate(2.5).isEmpty)
        let oneOf = JSONSchemaValidator(schema: ["oneOf": [["type": "number"], ["type": "integer"]]])
        #expect(!oneOf.validate(3).isEmpty, "3 matches both alternatives")
        #expect(oneOf.validate(3.5).isEmpty)
    }
}
