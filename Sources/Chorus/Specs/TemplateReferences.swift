import Mustache

/// What a prompt template refers to, so `chorus validate` can catch a variable that will
/// not exist at run time before any model is called.
enum TemplateReferences {
    /// The template with Chorus's pragma: prompts are plain text, so `{{x}}` is not
    /// HTML-escaped.
    static func compile(_ text: String) throws -> MustacheTemplate {
        try MustacheTemplate(string: "{{% CONTENT_TYPE:TEXT}}" + text)
    }

    /// Bounds on a prompt template, checked before swift-mustache parses it: its parser
    /// recurses once per open section (thousands of nested `{{#a}}` overflowed the stack), and
    /// tens of thousands of tags made validation slow.
    static let maxBytes = 256 * 1024
    static let maxTags = 4_000
    static let maxSectionDepth = 32

    /// Why `text` is outside those bounds, or nil. One linear pass.
    static func limitProblem(in text: String) -> String? {
        if text.utf8.count > maxBytes { return "\(text.utf8.count) bytes; at most \(maxBytes) are allowed" }
        var tags = 0
        var depth = 0
        var deepest = 0
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{") {
            tags += 1
            rest = rest[open.upperBound...]
            switch rest.first {
            case "#", "^": depth += 1; deepest = max(deepest, depth)
            case "/": depth = max(0, depth - 1)
            default: break
            }
        }
        if tags > maxTags { return "\(tags) tags; at most \(maxTags) are allowed" }
        if deepest > maxSectionDepth { return "sections nested \(deepest) deep; at most \(maxSectionDepth) are allowed" }
        return nil
    }

    /// A parse error in one short line: where, and what. swift-mustache's own description
    /// quotes the whole offending line, which for a long prompt ran past 64 KiB of stderr.
    static func describe(_ error: Error) -> String {
        guard let parse = error as? MustacheTemplate.ParserError else {
            let text = "\(error)"
            return text.count > 200 ? String(text.prefix(200)) + "…" : text
        }
        // The line as parsed starts with Chorus's pragma, 23 characters on line 1.
        let column = parse.context.lineNumber == 1 ? max(1, parse.context.columnNumber - 23) : parse.context.columnNumber
        // The parser's "overflow" is its reader running off the end: a tag never closed.
        let reason = "\(parse.error)" == "overflow" ? "a tag opened with {{ is never closed" : "\(parse.error)"
        return "line \(parse.context.lineNumber), column \(column): \(reason)"
    }

    /// A variable a template reads: its root name, the whole name, and how many sections
    /// enclose it.
    struct Reference {
        var root: String
        var full: String
        var depth: Int
    }

    /// Every variable and section name in the template, in order. One scanner serves both
    /// validation (which checks depth 0 only) and rendering (which converts every root).
    static func references(in text: String) -> [Reference] {
        var result: [Reference] = []
        var depth = 0
        for token in tokens(in: text) {
            switch token {
            case .close: depth = max(0, depth - 1)
            case .block: depth += 1
            case .variable(let full), .section(let full), .inverted(let full):
                let root = full.split(separator: ".", maxSplits: 1).first.map(String.init) ?? full
                if !root.isEmpty && root != "." { result.append(Reference(root: root, full: full, depth: depth)) }
                if token != .variable(full) { depth += 1 }
            }
        }
        return result
    }

    /// A template's variable tags in order, with where sections open and close: what the
    /// field check needs to know which section a name is read in.
    enum Token: Equatable {
        /// `{{name}}`, `{{&name}}`, `{{{name}}}`.
        case variable(String)
        /// `{{#name}}`: its body renders with the value as the innermost context.
        case section(String)
        /// `{{^name}}`: its body renders in the same context (no value pushed).
        case inverted(String)
        /// `{{$block}}`, `{{<parent}}`: opened and closed like a section, no value pushed.
        case block
        case close
    }

    static func tokens(in text: String) -> [Token] {
        var result: [Token] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{") {
            rest = rest[open.upperBound...]
            let triple = rest.first == "{"
            if triple { rest = rest.dropFirst() }
            guard let close = rest.firstRange(of: triple ? "}}}" : "}}") else { break }
            var tag = rest[..<close.lowerBound].trimmingSpaces()
            rest = rest[close.upperBound...]
            let opener = tag.first
            switch opener {
            case "!", "%", "=", ">": continue
            case "<", "$": result.append(.block); continue
            case "/": result.append(.close); continue
            case "#", "^", "&": tag = tag.dropFirst()
            default: break
            }
            let (_, full) = split(String(tag.trimmingSpaces()))
            let name = full.isEmpty ? "." : full
            result.append(opener == "#" ? .section(name) : opener == "^" ? .inverted(name) : .variable(name))
        }
        return result
    }

    /// Root names referenced outside any section (`{{inputs.question}}` → `inputs`).
    /// Names inside sections may refer to the section's item, so they are not checked.
    static func roots(in text: String) -> [(root: String, full: String)] {
        references(in: text).filter { $0.depth == 0 }.map { ($0.root, $0.full) }
    }

    /// Every root name a template mentions, inside sections too (an over-approximation of
    /// what rendering reads from the top-level context).
    static func allRoots(in text: String) -> [String] {
        references(in: text).map(\.root)
    }

    private static func split(_ name: String) -> (String, String) {
        // swift-mustache transforms read `{{ uppercased(name) }}`: the variable is inside.
        var inner = Substring(name)
        while let open = inner.firstIndex(of: "("), inner.last == ")" {
            inner = inner[inner.index(after: open)..<inner.index(before: inner.endIndex)]
        }
        let root = inner.split(separator: ".", maxSplits: 1).first.map(String.init) ?? String(inner)
        return (root, String(inner))
    }
}
