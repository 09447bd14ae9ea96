@testable import ChorusJSON
import Testing

/// The cursor reads a document without building it; it must accept and reject exactly what
/// the parser does, and read the same values.
@Suite struct JSONCursorTests {
    /// Walks the whole document through the cursor: every object member and array element,
    /// strings unescaped, the rest skipped or read as values. Returns it rebuilt, or throws.
    static func walk(_ cursor: inout JSONCursor) throws(JSONParseError) -> JSONValue {
        switch cursor.kind {
        case .object:
            try cursor.enterObject()
            var members: [String: JSONValue] = [:]
            while let key = try cursor.nextKey() {
                let name = key.unescaped.map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: key.bytes, as: UTF8.self)
                members[name] = try walk(&cursor)
            }
            return .object(members)
        case .array:
            try cursor.enterArray()
            var elements: [JSONValue] = []
            while try cursor.nextElement() { elements.append(try walk(&cursor)) }
            return .array(elements)
        case .string:
            var bytes: [UInt8] = []
            try cursor.appendString(to: &bytes)
            return .string(String(decoding: bytes, as: UTF8.self))
        case .number, .bool, .null, .end:
            return try cursor.value()
        }
    }

    static func viaCursor(_ bytes: [UInt8], skipping: Bool) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buffer in
            var cursor = JSONCursor(buffer)
            do {
                let value: JSONValue
                if skipping {
                    try cursor.skip()
                    value = .null
                } else {
                    value = try walk(&cursor)
                }
                try cursor.finish()
                return value
            } catch {
                return nil
            }
        }
    }

    static let corpus = [
        #"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel\"lo\n\u00e9\ud83d\ude00"},"finish_reason":null}],"usage":null}"#,
        #"{"a":[1,-2.5e3,true,false,null,{},[],"",{"b":[[[]]]}],"c":{"d":"\/"}}"#,
        #"  [ 1 , "x" , { "k" : "v" } ]  "#,
        #"{"cont\u0065nt":"escaped key","":"empty key"}"#,
        #""just a string""#, "0", "-0.0e+1", "true", "null",
    ]

    @Test func itReadsWhatTheParserReads() throws {
        for text in Self.corpus {
            let bytes = Array(text.utf8)
            let parsed = try JSONValue(parsing: bytes)
            #expect(Self.viaCursor(bytes, skipping: false) == parsed, "\(text)")
            #expect(Self.viaCursor(bytes, skipping: true) == .null, "\(text)")
        }
    }

    /// Every one-byte change, cut and doubling of the corpus: the cursor (walking or
    /// skipping) accepts exactly the texts the parser accepts, and reads the same value.
    @Test func itAcceptsAndRejectsExactlyWhatTheParserDoes() {
        var checked = 0
        for text in Self.corpus {
            let original = Array(text.utf8)
            var variants: [[UInt8]] = []
            for i in original.indices {
                variants.append(Array(original[..<i]))  // cut
                var removed = original
                removed.remove(at: i)
                variants.append(removed)
                for byte: UInt8 in [0x22, 0x5C, 0x2C, 0x3A, 0x7B, 0x7D, 0x5B, 0x5D, 0x20, 0x31, 0x00, 0x0A, 0x75] {
                    var changed = original
                    changed[i] = byte
                    variants.append(changed)
                    var inserted = original
                    inserted.insert(byte, at: i)
                    variants.append(inserted)
                }
            }
            for variant in variants {
                let parsed = try? JSONValue(parsing: variant)
                let walked = Self.viaCursor(variant, skipping: false)
                let skipped = Self.viaCursor(variant, skipping: true)
                #expect(walked == parsed, "walk: \(String(decoding: variant, as: UTF8.self))")
                #expect((skipped != nil) == (parsed != nil), "skip: \(String(decoding: variant, as: UTF8.self))")
                checked += 1
            }
        }
        #expect(checked > 5_000)
    }

    @Test func keysMatchByNameEscapedOrNot() throws {
        let bytes = Array(#"{"content":1,"cont\u0065nt":2,"contents":3}"#.utf8)
        var matches: [Bool] = []
        try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in
            var cursor = JSONCursor(buffer)
            try cursor.enterObject()
            while let key = try cursor.nextKey() {
                matches.append(key.is("content"))
                try cursor.skip()
            }
        }
        #expect(matches == [true, true, false])
    }

    @Test func nestingPastTheLimitIsRefusedWhenSkippedToo() {
        let deep = Array((String(repeating: "[", count: 600) + String(repeating: "]", count: 600)).utf8)
        #expect((try? JSONValue(parsing: deep)) == nil)
        #expect(Self.viaCursor(deep, skipping: true) == nil)
    }
}
