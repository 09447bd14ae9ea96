import ChorusJSON
import Foundation
import Testing

@Suite struct JSONParserTests {
    @Test func valuesParseAndRoundTrip() throws {
        let text = #"{"a":[1,-2.5,3e2,true,false,null],"b":{"c":"x\"y\\z\n\u00e9\ud83d\ude00"},"d":""}"#
        let value = try JSONValue(parsing: text)
        #expect(value["a"] == [1, -2.5, 300, true, false, nil])
        #expect(value["b"]?["c"] == "x\"y\\z\né😀")
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }

    @Test func itAgreesWithFoundationOnAMixedDocument() throws {
        let text = #"{"list":[0.1,1.0e-7,123456789012,-0],"s":"tab\there","nested":[[[]],{}]}"#
        let ours = try JSONValue(parsing: text)
        let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(ours == theirs)
    }

    @Test func invalidTextReportsLineAndColumn() {
        let cases: [(String, Int, Int)] = [
            ("{\n  \"a\": 1,\n  \"b\" 2\n}", 3, 7),
            ("[1, 2,]", 1, 7),
            ("{\"a\": tru}", 1, 7),
            ("\"unterminated", 1, 1),
            ("01", 1, 1),
            ("[1] x", 1, 5),
            ("", 1, 1),
        ]
        for (text, line, column) in cases {
            do {
                _ = try JSONValue(parsing: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.line == line && error.column == column, "\(text): \(error)")
            }
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let text = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    @Test func serializedKeysAreSorted() {
        let value: JSONValue = ["b": 1, "a": ["d": 2, "c": 0.5]]
        #expect(value.text == #"{"a":{"c":0.5,"d":2},"b":1}"#)
    }
}
