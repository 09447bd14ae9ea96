/// Where a step sits in its run — the grammar of a step's path, in one place:
///
///     NODE                   an agent or reconcile node's step
///     NODE/I                 item I of a foreach
///     NODE/items             a foreach's items, together (a fork point)
///     NODE/round-R/plan      a lead's plan for round R
///     NODE/round-R           round R's workers, together
///     NODE/round-R/I         worker I of round R
///     NODE/synthesis         a foreach's or lead's synthesising agent
///
/// with a suffix for a record that belongs to a step: `#result` (a node's result),
/// `#guard-input` and `#guard-output-N` (a judge's calls on a step's input, and on the
/// answer to its request N). Paths are stored as this text; `description` writes it and
/// `init?(_:)` reads it back, and nothing else takes a path apart.
public struct StepPath: Hashable, Sendable, CustomStringConvertible {
    /// The step's place under its node.
    public enum Place: Hashable, Sendable {
        /// The node's own step (`NODE`).
        case node
        /// A foreach's item, from 0 (`NODE/I`).
        case item(Int)
        /// A foreach's items together (`NODE/items`).
        case items
        /// A lead's plan for a round, from 1 (`NODE/round-R/plan`).
        case plan(round: Int)
        /// A round's workers together (`NODE/round-R`).
        case round(Int)
        /// One worker of a round (`NODE/round-R/I`).
        case worker(round: Int, item: Int)
        /// The synthesising agent of a foreach or a lead (`NODE/synthesis`).
        case synthesis
    }

    /// A record that belongs to a step rather than being one.
    public enum Suffix: Hashable, Sendable {
        /// The step itself.
        case none
        /// A node's reconciled result (`#result`).
        case result
        /// A judge's call on the step's input (`#guard-input`).
        case guardInput
        /// A judge's call on the answer to the step's request `attempt` (`#guard-output-N`).
        case guardOutput(attempt: Int)

        /// As written after a step's path.
        public var text: String {
            switch self {
            case .none: ""
            case .result: "#result"
            case .guardInput: "#guard-input"
            case .guardOutput(let attempt): "#guard-output-\(attempt)"
            }
        }
    }

    /// The node's id in the workflow.
    public var node: String
    /// Where under the node.
    public var place: Place
    /// What the record is to the step; `.none` for the step itself.
    public var suffix: Suffix

    /// A path; `description` is its text as stored.
    public init(node: String, _ place: Place = .node, suffix: Suffix = .none) {
        self.node = node
        self.place = place
        self.suffix = suffix
    }

    /// Reads a stored path; nil when it is not one this grammar writes.
    public init?(_ text: String) {
        let (base, tail) = text.firstIndex(of: "#").map { (text[..<$0], Optional(text[text.index(after: $0)...])) } ?? (Substring(text), nil)
        switch tail {
        case nil: suffix = .none
        case "result"?: suffix = .result
        case "guard-input"?: suffix = .guardInput
        case let tail? where tail.hasPrefix("guard-output-"):
            guard let attempt = Int(tail.dropFirst("guard-output-".count)) else { return nil }
            suffix = .guardOutput(attempt: attempt)
        default: return nil
        }
        let parts = base.split(separator: "/", omittingEmptySubsequences: false)
        guard let first = parts.first, !first.isEmpty else { return nil }
        node = String(first)
        func round(_ part: Substring) -> Int? { part.hasPrefix("round-") ? Int(part.dropFirst(6)) : nil }
        switch parts.count {
        case 1: place = .node
        case 2 where parts[1] == "synthesis": place = .synthesis
        case 2 where parts[1] == "items": place = .items
        case 2:
            if let item = Int(parts[1]) { place = .item(item) } else if let r = round(parts[1]) { place = .round(r) } else { return nil }
        case 3:
            guard let r = round(parts[1]) else { return nil }
            if parts[2] == "plan" { place = .plan(round: r) } else if let item = Int(parts[2]) { place = .worker(round: r, item: item) } else { return nil }
        default: return nil
        }
    }

    public var description: String {
        var text = node
        switch place {
        case .node: break
        case .item(let item): text += "/\(item)"
        case .items: text += "/items"
        case .plan(let round): text += "/round-\(round)/plan"
        case .round(let round): text += "/round-\(round)"
        case .worker(let round, let item): text += "/round-\(round)/\(item)"
        case .synthesis: text += "/synthesis"
        }
        return text + suffix.text
    }

    /// The path of item `index` of this group (`NODE/items` → `NODE/I`, `NODE/round-R` → `NODE/round-R/I`).
    public func member(_ index: Int) -> StepPath {
        if case .round(let round) = place { return StepPath(node: node, .worker(round: round, item: index)) }
        return StepPath(node: node, .item(index))
    }

    /// This path as the group it is written as in messages: a foreach's items are the node.
    public var groupText: String {
        if case .items = place { return node }
        return description
    }

    /// The path of what belongs to the step at `path` (a judge's calls on it): `path` and `suffix`.
    public static func text(_ path: String, _ suffix: Suffix) -> String { path + suffix.text }

    /// The node's result record.
    public static func result(of node: String) -> StepPath { StepPath(node: node, suffix: .result) }

    /// The node whose step `path` is: the text before the first `/` or `#`.
    public static func node(of path: String) -> String { String(path.prefix { $0 != "/" && $0 != "#" }) }
}
