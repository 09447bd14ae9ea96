import Mustache

/// What a prompt template refers to, so `chorus validate` can catch a variable that will
/// not exist at run time before any model is called.
enum TemplateReferences {
    /// The template with Chorus's pragma: prompts are plain text, so `{{x}}` is not
    /// HTML-escaped.
    static func compile(_ text: String) throws -> MustacheTemplate {
        try MustacheTemplate(string: "{{% CONTENT_TYPE:TEXT}}" + text)
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
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{") {
            rest = rest[open.upperBound...]
            let triple = rest.first == "{"
            if triple { rest = rest.dropFirst() }
            guard let close = rest.firstRange(of: triple ? "}}}" : "}}") else { break }
            var tag = rest[..<close.lowerBound].trimmingSpaces()
            rest = rest[close.upperBound...]
            var opensSection = false
            switch tag.first {
            case "!", "%", "=", ">", "<", "$": continue
            case "/": depth = max(0, depth - 1); continue
            case "#", "^": tag = tag.dropFirst(); opensSection = true
            case "&": tag = tag.dropFirst()
            default: break
            }
            let (root, full) = split(String(tag.trimmingSpaces()))
            if !root.isEmpty && root != "." { result.append(Reference(root: root, full: full, depth: depth)) }
            if opensSection { depth += 1 }
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
