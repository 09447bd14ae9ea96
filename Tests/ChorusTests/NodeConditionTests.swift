import ChorusJSON
import Testing

@testable import Chorus

/// `when` conditions, parsed and evaluated without a run.
@Suite struct NodeConditionTests {
    static let upstream: [String: JSONValue] = [
        "score": ["value": 0.85, "labels": ["a", "b"]],
        "triage": .string(#"{"priority": "high", "flagged": true}"#),
        "inputs": ["tier": "gold", "count": 3],
    ]

    static func holds(_ json: JSONValue) throws -> Bool { try NodeCondition(json: json).holds(in: upstream) }

    @Test func eachOperatorComparesWhatThePathReaches() throws {
        #expect(try Self.holds(["path": "score.value", "gte": 0.8]))
        #expect(try !Self.holds(["path": "score.value", "gt": 0.85]))
        #expect(try Self.holds(["path": "score.value", "lte": 0.85]))
        #expect(try !Self.holds(["path": "score.value", "lt": 0.5]))
        #expect(try Self.holds(["path": "triage.priority", "equals": "high"]), "an answer given as a JSON string is read as JSON")
        #expect(try Self.holds(["path": "inputs.tier", "in": ["silver", "gold"]]))
        #expect(try Self.holds(["path": "inputs.count", "equals": 3.0]), "numbers compare by value")
        #expect(try Self.holds(["path": "score.labels.1", "equals": "b"]), "arrays by index")
        #expect(try Self.holds(["path": "triage.flagged", "exists": true]))
        #expect(try Self.holds(["path": "triage.missing", "exists": false]))
        #expect(try !Self.holds(["path": "nowhere.value", "gte": 0]), "a missing value compares false")
        #expect(try !Self.holds(["path": "inputs.tier", "gt": 1]), "a string is not a number")
        #expect(try Self.holds(["not": ["path": "inputs.tier", "equals": "bronze"]]))
        #expect(try Self.holds(["all": [["path": "score.value", "gte": 0.8], ["path": "triage.flagged", "equals": true]]]))
        #expect(try !Self.holds(["all": [["path": "score.value", "gte": 0.8], ["path": "triage.flagged", "equals": false]]]))
        #expect(try Self.holds(["any": [["path": "score.value", "gte": 0.9], ["path": "inputs.count", "lt": 5]]]))
    }

    @Test func theRootsAreTheNodesItReads() throws {
        let condition = try NodeCondition(json: ["any": [["path": "score.value", "gte": 0.9], ["not": ["path": "inputs.count", "lt": 5]]]])
        #expect(condition.roots == ["score", "inputs"])
        #expect(condition.text == "(score.value ≥ 0.9 or not (inputs.count < 5))")
    }

    @Test(
        arguments: [
            (JSONValue.string("yes"), "$.when: expected an object, found string"),
            (["path": "a.b"], "$.when: expected exactly one of equals, in, exists, gt, gte, lt, lte beside 'path', found none"),
            (["path": "a.b", "gte": 1, "lt": 2], "$.when: expected exactly one of equals, in, exists, gt, gte, lt, lte beside 'path', found gte, lt"),
            (["path": "a.b", "gte": "high"], "$.when.gte: expected a number, found string"),
            (["path": "a.b", "in": "x"], "$.when.in: expected an array, found string"),
            (["path": "a.b", "exists": 1], "$.when.exists: expected true or false, found integer"),
            (["path": "a..b", "equals": 1], "$.when.path: 'a..b' has an empty name"),
            (["path": "a.b", "equals": 1, "sometimes": true], "$.when.sometimes: unknown property 'sometimes' in a condition"),
            (["all": []], "$.when.all: expected a non-empty array of conditions"),
            (["not": ["path": "a", "gte": 1], "all": []], "$.when: 'not' stands alone in its object"),
            (["any": [["path": "a.b"]]], "$.when.any[0]: expected exactly one of"),
            (["gte": 1], "$.when: expected 'path'"),
        ] as [(JSONValue, String)])
    func aMalformedConditionIsOneLineSayingWhereAndWhat(_ json: JSONValue, _ expected: String) {
        #expect(throws: NodeConditionError.self) { try NodeCondition(json: json) }
        do {
            _ = try NodeCondition(json: json)
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error.description)")
        }
    }
}
