import Glibc

/// Reads one JSON text a member at a time, building nothing it is not asked for: for a hot
/// path that needs a few fields of many small documents, such as the events of a streamed
/// answer (one token each, as real providers stream). `JSONValue(parsing:)` builds a
/// dictionary per object and a `String` per key and value; for a 200-byte chunk that is
/// most of the cost of handling it.
///
/// The grammar is the parser's own (`JSONParser`: the same checks, the same errors, the same
/// depth limit), so a text the cursor walks without an error is one the parser accepts,
/// and every value it skips is checked too. It reads `bytes` in place: neither it nor a
/// `Key` it returns may outlive them.
package struct JSONCursor {
    private var parser: JSONParser

    /// A cursor at the start of `bytes`, which must stay valid while it is used.
    package init(_ bytes: UnsafeBufferPointer<UInt8>) {
        parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
    }

    /// The key of an object member.
    package struct Key {
        /// The key's bytes as written (no escapes in it), valid while the document is.
        let bytes: UnsafeBufferPointer<UInt8>
        /// The key unescaped, when it was written with escapes (`"cont\u0065nt"`, rare).
        let unescaped: [UInt8]?

        /// Whether the key is `name`.
        package func `is`(_ name: StaticString) -> Bool {
            if let unescaped { return unescaped.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)) }
            return bytes.count == name.utf8CodeUnitCount && (bytes.count == 0 || memcmp(bytes.baseAddress!, name.utf8Start, bytes.count) == 0)
        }
    }

    /// What kind of value is next.
    package enum Kind: Sendable { case object, array, string, number, bool, null, end }

    /// The kind of the next value, without reading it.
    package var kind: Kind {
        guard parser.index < parser.bytes.count else { return .end }
        switch parser.bytes[parser.index] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: return .number
        }
    }

    /// Enters the object that is next; throws when the next value is not an object.
    package mutating func enterObject() throws(JSONParseError) {
        guard kind == .object else { throw parser.error("expected an object") }
        try parser.open()
    }

    /// Enters the array that is next; throws when the next value is not an array.
    package mutating func enterArray() throws(JSONParseError) {
        guard kind == .array else { throw parser.error("expected an array") }
        try parser.open()
    }

    /// The next member's key of the object entered last, the cursor then at its value (which
    /// must be read or skipped before the next call); nil past the object's end.
    package mutating func nextKey() throws(JSONParseError) -> Key? {
        guard try parser.next(closing: UInt8(ascii: "}")) else { return nil }
        guard kind == .string else { throw parser.error("expected a string key in object") }
        let start = parser.index
        let escaped = try parser.scanString(into: nil)
        let raw = UnsafeBufferPointer(rebasing: parser.bytes[(start + 1)..<(parser.index - 1)])
        var unescaped: [UInt8]?
        if escaped {
            var bytes: [UInt8] = []
            parser.index = start
            try parser.scanString(into: &bytes)
            unescaped = bytes
        }
        try parser.colon()
        return Key(bytes: raw, unescaped: unescaped)
    }

    /// Whether the array entered last has another element, the cursor then at it; false
    /// past the array's end.
    package mutating func nextElement() throws(JSONParseError) -> Bool {
        try parser.next(closing: UInt8(ascii: "]"))
    }

    /// Skips the next value (checked, not built).
    package mutating func skip() throws(JSONParseError) {
        try parser.skipValue()
    }

    /// Reads the next value whole, for the parts that are rare or small.
    package mutating func value() throws(JSONParseError) -> JSONValue {
        try parser.parseValue()
    }

    /// Appends the next value, which must be a string, unescaped to `output`.
    package mutating func appendString(to output: inout [UInt8]) throws(JSONParseError) {
        guard kind == .string else { throw parser.error("expected a string") }
        _ = try withUnsafeMutablePointer(to: &output) { pointer throws(JSONParseError) in try parser.scanString(into: pointer) }
    }

    /// The next value as a string; nil, skipped, when it is not one.
    package mutating func string() throws(JSONParseError) -> String? {
        guard kind == .string else {
            try skip()
            return nil
        }
        var bytes: [UInt8] = []
        try appendString(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The next value as an integer when it is a whole number in range; nil, skipped, otherwise.
    package mutating func int() throws(JSONParseError) -> Int? {
        guard kind == .number else {
            try skip()
            return nil
        }
        let number = try parser.parseNumber()
        return JSONValue.number(number).intValue
    }

    /// Throws unless only whitespace is left.
    package mutating func finish() throws(JSONParseError) {
        parser.skipWhitespace()
        if parser.index < parser.bytes.count { throw parser.error("unexpected content after the JSON value") }
    }
}
