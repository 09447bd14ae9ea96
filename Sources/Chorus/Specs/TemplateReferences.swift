import Mustache

/// What a prompt template refers to, so `chorus validate` can catch a variable that will
/// not exist at run time before any model is called.
enum TemplateReferences {
    /// The template with Chorus's pragma: prompts are plain text, so `{{x}}` is not
    /// HTML-escaped.
    static func compile(_ text: String) throws -> MustacheTemplate {
        try MustacheTemplate(string: "{{% CONTENT_TYPE:TEXT}}" + text)
    }

    /// Root names referenced outside any section (`{{inputs.question}}` → `inputs`).
    /// Names inside sections may refer to the section's item, so they are not checked.
    static func roots(in text: String) -> [(root: String, full: String)] {
        var result: [(String, String)] = []
        var depth = 0
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            rest = rest[open.upperBound...]
            let triple = rest.first == "{"
            if triple { rest = rest.dropFirst() }
            guard let close = rest.range(of: triple ? "}}}" : "}}") else { break }
            var tag = rest[..<close.lowerBound].trimmingCharacters(in: .whitespaces)[...]
            rest = rest[close.upperBound...]
            let sigil = tag.first
            switch sigil {
            case "!", "%", "=", ">", "<", "$": continue
            case "/": depth = max(0, depth - 1); continue
            case "#", "^":
                tag = tag.dropFirst()
                if depth == 0 { result.append(Self.split(String(tag.trimmingCharacters(in: .whitespaces)))) }
                depth += 1
                continue
            case "&": tag = tag.dropFirst()
            default: break
            }
            if depth == 0 {
                let name = String(tag.trimmingCharacters(in: .whitespaces))
                if name != "." && !name.isEmpty { result.append(Self.split(name)) }
            }
        }
        return result
    }

    /// Every root name a template mentions, inside sections too (an over-approximation of
    /// what rendering reads from the top-level context).
    static func allRoots(in text: String) -> [String] {
        var result: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            rest = rest[open.upperBound...]
            guard let close = rest.range(of: "}}") else { break }
            var tag = rest[..<close.lowerBound].trimmingCharacters(in: CharacterSet(charactersIn: " {}"))[...]
            rest = rest[close.upperBound...]
            if let sigil = tag.first, "#^/&".contains(sigil) { tag = tag.dropFirst() }
            if let sigil = tag.first, "!%=><$".contains(sigil) { continue }
            let (root, _) = split(String(tag.trimmingCharacters(in: .whitespaces)))
            if !root.isEmpty && root != "." { result.append(root) }
        }
        return result
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

import Foundation
