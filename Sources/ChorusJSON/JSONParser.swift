/// Why JSON text could not be parsed: what was expected and at which byte offset.
public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Byte offset of the problem in the input.
    public var offset: Int
    /// Line (1-based) of the problem.
    public var line: Int
    /// Column (1-based, in bytes) of the problem.
    public var column: Int
    /// What the parser expected or found.
    public var reason: String

    public var description: String { "line \(line), column \(column): \(reason)" }
}

/// An RFC 8259 JSON parser producing `JSONValue`.
///
/// Hand-written because Foundation's `JSONDecoder` spent about 67,000 instructions on one
/// small chat request (callgrind, `chorus sim`) — a third of the simulator's per-request
/// cost — and it reports errors without line and column.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    private var depth = 0
    /// A container was just opened: the next `next(closing:)` reads its first member.
    private var afterOpen = false
    private static let maxDepth = 512

    static func parse(_ input: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: input)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index < input.count { throw parser.error("unexpected content after the JSON value") }
        return value
    }

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    func error(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        let offset = min(offset ?? index, bytes.count)
        var line = 1
        var lineStart = 0
        for i in 0..<offset where bytes[i] == 10 {
            line += 1
            lineStart = i + 1
        }
        return JSONParseError(offset: offset, line: line, column: offset - lineStart + 1, reason: reason)
    }

    mutating func skipWhitespace() {
        while index < bytes.count, Self.isWhitespace(bytes[index]) { index += 1 }
    }

    static func isWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("expected a value, found the end of the input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("expected a value, found '\(Unicode.Scalar(bytes[index]))'")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count,
            memcmp(bytes.baseAddress! + index, literal.utf8Start, count) == 0
        else {
            throw error("expected '\(literal)'")
        }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maxDepth { throw error("nesting deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try open()
        var members: [String: JSONValue] = [:]
        while try next(closing: UInt8(ascii: "}")) {
            let key = try parseKey()
            members[key] = try parseValue()
        }
        return .object(members)
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try open()
        var elements: [JSONValue] = []
        while try next(closing: UInt8(ascii: "]")) { elements.append(try parseValue()) }
        return .array(elements)
    }

    // MARK: The grammar of containers, shared with JSONCursor and skipValue

    /// Enters the object or array whose opening byte is at `index`.
    mutating func open() throws(JSONParseError) {
        try enter()
        index += 1
        afterOpen = true
    }

    /// Moves to the next member of the innermost open container, whose closing byte is
    /// `closing`: past the ',' before it (none before the first), and to its first byte;
    /// false, past the closing byte, when the container ends.
    @inline(__always)
    mutating func next(closing: UInt8) throws(JSONParseError) -> Bool {
        // The first member directly follows the opening byte (every open() is followed by
        // this call); every later one follows a value.
        let first = afterOpen
        afterOpen = false
        skipWhitespace()
        let what = closing == UInt8(ascii: "}") ? "object" : "array"
        guard index < bytes.count else { throw error("expected ',' or '\(Unicode.Scalar(closing))' in \(what), found the end of the input") }
        if bytes[index] == closing {
            index += 1
            depth -= 1
            return false
        }
        if !first {
            guard bytes[index] == UInt8(ascii: ",") else { throw error("expected ',' or '\(Unicode.Scalar(closing))' in \(what)") }
            index += 1
        }
        skipWhitespace()
        return true
    }

    /// The key of an object member and its ':', leaving `index` at the value.
    private mutating func parseKey() throws(JSONParseError) -> String {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key in object") }
        let key = try parseString()
        try colon()
        return key
    }

    /// Past the ':' after a key and the whitespace around it.
    @inline(__always)
    mutating func colon() throws(JSONParseError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after object key") }
        index += 1
        skipWhitespace()
    }

    /// Past the value at `index`, checked as the parser checks it but built into nothing.
    mutating func skipValue() throws(JSONParseError) {
        guard index < bytes.count else { throw error("expected a value, found the end of the input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            try open()
            while try next(closing: UInt8(ascii: "}")) {
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key in object") }
                try scanString(into: nil)
                try colon()
                try skipValue()
            }
        case UInt8(ascii: "["):
            try open()
            while try next(closing: UInt8(ascii: "]")) { try skipValue() }
        case UInt8(ascii: "\""): try scanString(into: nil)
        case UInt8(ascii: "t"): try expectLiteral("true")
        case UInt8(ascii: "f"): try expectLiteral("false")
        case UInt8(ascii: "n"): try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try parseNumber()
        default: throw error("expected a value, found '\(Unicode.Scalar(bytes[index]))'")
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        // Fast path: no escapes — the bytes between the quotes are the string.
        let stop = Self.special(in: bytes, from: index + 1)
        if stop < bytes.count, bytes[stop] == UInt8(ascii: "\"") {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[(index + 1)..<stop]), as: UTF8.self)
            index = stop + 1
            return text
        }
        var scalars: [UInt8] = []
        _ = try scanEscapedString(into: &scalars, firstSpecial: stop)
        return String(decoding: scalars, as: UTF8.self)
    }

    /// Past the string whose opening quote is at `index`, appending its bytes, unescaped,
    /// to `output` when there is one. Returns whether the string had escapes.
    @discardableResult @inline(__always)
    mutating func scanString(into output: UnsafeMutablePointer<[UInt8]>?) throws(JSONParseError) -> Bool {
        // Nearly every string has no escape: one scan to its closing quote.
        let stop = Self.special(in: bytes, from: index + 1)
        if stop < bytes.count, bytes[stop] == UInt8(ascii: "\"") {
            output?.pointee.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[(index + 1)..<stop]))
            index = stop + 1
            return false
        }
        return try scanEscapedString(into: output, firstSpecial: stop)
    }

    /// The rest of `scanString`, from the string's first special byte at `firstSpecial`
    /// (found already, so the plain run before it is not scanned again).
    private mutating func scanEscapedString(into output: UnsafeMutablePointer<[UInt8]>?, firstSpecial: Int) throws(JSONParseError) -> Bool {
        let start = index
        var runStart = index + 1
        var next: Int? = firstSpecial
        var escaped = false
        while true {
            index = next ?? Self.special(in: bytes, from: index)
            next = nil
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                output?.pointee.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                index += 1
                return escaped
            }
            guard byte == UInt8(ascii: "\\") else { throw error("control character in string (escape it)") }
            escaped = true
            output?.pointee.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
            index += 1
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let escape = bytes[index]
            index += 1
            let unescaped: UInt8
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): unescaped = escape
            case UInt8(ascii: "n"): unescaped = 0x0A
            case UInt8(ascii: "r"): unescaped = 0x0D
            case UInt8(ascii: "t"): unescaped = 0x09
            case UInt8(ascii: "b"): unescaped = 0x08
            case UInt8(ascii: "f"): unescaped = 0x0C
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), index + 1 < bytes.count,
                    bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                {
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("invalid UTF-16 surrogate pair") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                if let output {
                    UTF8.encode(Unicode.Scalar(code) ?? "\u{FFFD}") { output.pointee.append($0) }
                }
                runStart = index
                continue
            default:
                throw error("invalid escape '\\\(Unicode.Scalar(escape))' in string", at: index - 2)
            }
            output?.pointee.append(unescaped)
            runStart = index
        }
    }

    /// The index of the first byte at or after `from` that ends a plain run of a string (a
    /// quote, a backslash or a control character), or `bytes.count`. Eight bytes at a time:
    /// a streamed event is mostly strings (ids, keys, the delta), and byte by byte this scan
    /// was the largest single cost of reading one (callgrind, issue 26).
    @inline(__always)
    static func special(in bytes: UnsafeBufferPointer<UInt8>, from: Int) -> Int {
        guard let base = bytes.baseAddress else { return bytes.count }
        var i = from
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while i + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
            // Whether any byte is zero after xor with '"' or '\\', or is below 0x20 (the
            // classic "has less than" bit trick; exact for presence, not for position).
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let found =
                ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((word &- ones &* 0x20) & ~word)
            if found & highs != 0 { break }
            i += 8
        }
        while i < bytes.count {
            let byte = base[i]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { return i }
            i += 1
        }
        return i
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("expected four hex digits after \\u") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("expected four hex digits after \\u")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    mutating func parseNumber() throws(JSONParseError) -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits() -> Int {
            let from = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - from
        }
        let integerStart = index
        let integerDigits = digits()
        guard integerDigits > 0 else { throw error("expected digits in number") }
        if integerDigits > 1, bytes[integerStart] == UInt8(ascii: "0") { throw error("leading zero in number", at: integerStart) }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            isInteger = false
            guard digits() > 0 else { throw error("expected digits after '.' in number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            isInteger = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw error("expected digits in exponent") }
        }
        if isInteger, index - start <= 15 {
            var value = 0
            var i = bytes[start] == UInt8(ascii: "-") ? start + 1 : start
            while i < index { value = value * 10 + Int(bytes[i] - UInt8(ascii: "0")); i += 1 }
            return Double(bytes[start] == UInt8(ascii: "-") ? -value : value)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw error("number out of range", at: start) }
        return value
    }
}

import Glibc
