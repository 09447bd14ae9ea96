import ChorusJSON

/// The common prompt shape, text and plain variable tags (`{{item}}`,
/// `{{inputs.question}}`, `{{{x}}}`, `{{& x}}`), rendered straight from the JSON variables.
///
/// Hand-written as a fast path in front of swift-mustache, which stays the renderer of
/// record. For a fan-out item's `{{item}}` prompt, converting the variables into Mustache's
/// `Any` context and its dynamic casts cost about 5% of the event loop's CPU (perf, 10,000
/// subtasks). `render` gives an answer only where it is sure to be the one Mustache gives:
/// every name resolves, through objects only, to a string or a number. Anything else
/// (sections, partials, a missing name, an array, a bool, null) returns nil and Mustache
/// renders it. A test compares the two on the same inputs.
struct PlainTemplate: Sendable {
    private enum Piece: Sendable {
        case text(String)
        case variable([String])
    }

    private let pieces: [Piece]

    /// nil when `text` has anything but text and plain variable tags.
    init?(_ text: String) {
        var pieces: [Piece] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{") {
            if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
            rest = rest[open.upperBound...]
            let triple = rest.first == "{"
            if triple { rest = rest.dropFirst() }
            guard let close = rest.firstRange(of: triple ? "}}}" : "}}") else { return nil }
            var tag = rest[..<close.lowerBound].trimmingSpaces()
            rest = rest[close.upperBound...]
            if !triple && tag.first == "&" { tag = tag.dropFirst().trimmingSpaces() }
            let path = tag.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !path.isEmpty, path.allSatisfy(Self.isPlainName) else { return nil }
            pieces.append(.variable(path))
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        self.pieces = pieces
    }

    /// The rendered text, or nil where Mustache must decide.
    func render(_ variables: [String: JSONValue]) -> String? {
        var out = ""
        for piece in pieces {
            switch piece {
            case .text(let text): out += text
            case .variable(let path):
                guard var value = variables[path[0]] else { return nil }
                for name in path.dropFirst() {
                    guard case .object(let members) = value, let member = members[name] else { return nil }
                    value = member
                }
                switch value {
                case .string(let s): out += s
                // As TemplateContext.value hands numbers to Mustache, which prints them with
                // String(describing:).
                case .number(let n): out += n == n.rounded() && abs(n) < 9e15 ? String(describing: Int(n)) : String(describing: n)
                default: return nil
                }
            }
        }
        return out
    }

    private static func isPlainName(_ name: String) -> Bool {
        guard let first = name.utf8.first, first != UInt8(ascii: "-") else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (Foundation's `.whitespaces` loads ICU:
    /// a fifth of `chorus validate`'s start-up, perf).
    func trimmingSpaces() -> Substring {
        var trimmed = self
        while let c = trimmed.first, c == " " || c == "\t" { trimmed = trimmed.dropFirst() }
        while let c = trimmed.last, c == " " || c == "\t" { trimmed = trimmed.dropLast() }
        return trimmed
    }
}
