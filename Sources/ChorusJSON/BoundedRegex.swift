import Foundation
import Synchronization

/// A regular expression from a file (a guard's pattern, an eval expectation, a schema's
/// `pattern`), matched with a time budget. Patterns are attacker-facing: a guard runs on text a user or a model chose,
/// and a backtracking engine takes exponential time on patterns like `(a+)+$` (measured
/// with Swift's Regex, which has no time limit and cannot be interrupted: over 60 s on 20
/// characters, the loop unable to honour SIGTERM for 16 minutes).
///
/// The engine is ICU's, through Foundation's NSRegularExpression: its match callback
/// (`.reportProgress`, ICU's `uregex_setMatchCallback`) is called every few thousand
/// backtracking steps, and stopping there ends the match. No mirrored Swift package offers a
/// linear-time engine, and ICU's callback gives the bound without writing one: measured on
/// `(a+)+$` against 28 `a`s and a `!`, the match stops within a millisecond of its budget
/// (688 callbacks in 200 ms). Matching is CPU work: callers run it off the event loop.
package struct BoundedRegex: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
    /// The pattern as written.
    package let pattern: String
    private let regex: NSRegularExpression

    /// How long one match over one text may take before it is given up.
    package static let defaultBudget = Duration.seconds(1)

    /// Compiles `pattern` (ICU syntax: Perl-style classes, groups, lookaround, `(?i)`).
    package init(_ pattern: String, caseInsensitive: Bool = false) throws {
        self.pattern = pattern
        regex = try NSRegularExpression(pattern: pattern, options: caseInsensitive ? [.caseInsensitive] : [])
    }

    /// `pattern` compiled once per process (schemas check the same patterns on every answer);
    /// nil when it does not compile. At most 1,024 patterns are kept.
    package static func cached(_ pattern: String) -> BoundedRegex? {
        if let hit = cache.withLock({ $0[pattern] }) { return hit }
        let compiled = try? BoundedRegex(pattern)
        cache.withLock { entries in
            if entries.count >= 1024 { entries.removeAll() }
            entries[pattern] = compiled
        }
        return compiled
    }

    private static let cache = Mutex<[String: BoundedRegex?]>([:])

    /// Why `pattern` does not compile, or nil when it does.
    package static func problem(in pattern: String) -> String? {
        do { _ = try NSRegularExpression(pattern: pattern); return nil } catch {
            return "not a valid regular expression"
        }
    }

    /// The match did not run to its end: the budget ran out, the caller stopped it, or the
    /// engine hit its own limit (ICU's backtracking stack: `(a|b)+` over 800 KB). Either
    /// way the answer is unknown, and a guard must not read it as "no match".
    package struct OutOfTime: Error, Sendable, CustomStringConvertible {
        package let budget: Duration
        /// True when the engine gave up on its own (a stack limit), not the clock.
        package var engineLimit = false
        package var description: String {
            if engineLimit { return "regex could not be matched to the end of this text (the engine's backtracking limit)" }
            let ms = budget.components.seconds * 1000 + budget.components.attoseconds / 1_000_000_000_000_000
            return "regex exceeded its time budget (" + (ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms") + ")"
        }
    }

    /// The ranges of every match in `text`, in order. Throws `OutOfTime` once `budget` has
    /// passed or `stop` says so (checked every few thousand engine steps), or when the
    /// engine could not finish.
    package func matches(in text: String, budget: Duration = defaultBudget, stop: @Sendable () -> Bool = { false }) throws(OutOfTime) -> [Range<String.Index>] {
        var ranges: [NSRange] = []
        try enumerate(text, budget: budget, stop: stop) { range in
            ranges.append(range); return true
        }
        return ranges.compactMap { Range($0, in: text) }
    }

    /// Whether `text` has a match (see `matches` for the budget).
    package func hasMatch(in text: String, budget: Duration = defaultBudget, stop: @Sendable () -> Bool = { false }) throws(OutOfTime) -> Bool {
        var found = false
        try enumerate(text, budget: budget, stop: stop) { _ in
            found = true; return false
        }
        return found
    }

    /// Calls `match` for each match while it returns true; throws when the match could not
    /// run to its end. Foundation reports an engine failure only with `.reportCompletion`
    /// (as `.internalError`): without it, a stack overflow looked like "no match".
    private func enumerate(
        _ text: String, budget: Duration, stop: @Sendable () -> Bool,
        _ match: (NSRange) -> Bool
    ) throws(OutOfTime) {
        let deadline = ContinuousClock.now + budget
        var stopped = false
        var halted = false
        var engineFailed = false
        // Foundation's block is escaping in its signature but only runs during the call.
        withoutActuallyEscaping(stop) { stop in
            withoutActuallyEscaping(match) { match in
                regex.enumerateMatches(
                    in: text, options: [.reportProgress, .reportCompletion],
                    range: NSRange(text.startIndex..., in: text)
                ) { result, flags, halt in
                    if flags.contains(.internalError) { engineFailed = true }
                    if let result, !match(result.range) { halted = true; halt.pointee = true; return }
                    if !flags.contains(.completed) && (ContinuousClock.now > deadline || stop()) {
                        stopped = true
                        halt.pointee = true
                    }
                }
            }
        }
        if engineFailed && !halted { throw OutOfTime(budget: budget, engineLimit: true) }
        if stopped && !halted { throw OutOfTime(budget: budget) }
    }

    /// `text` with every match replaced by `replacement` (taken literally, not as a template).
    package func replacing(
        in text: String, with replacement: String, budget: Duration = defaultBudget,
        stop: @Sendable () -> Bool = { false }
    ) throws(OutOfTime) -> (text: String, count: Int) {
        let ranges = try matches(in: text, budget: budget, stop: stop)
        var result = ""
        var last = text.startIndex
        for range in ranges {
            result += text[last..<range.lowerBound]
            result += replacement
            last = range.upperBound
        }
        result += text[last...]
        return (result, ranges.count)
    }

    /// Where a pattern nests unbounded quantifiers (`(a+)+`, `(\w*)*`, `(x+){2,}`), the shape
    /// that makes backtracking exponential; nil when it has none. A lint for `chorus
    /// validate` (such a pattern still runs, within its budget).
    package static func nestedQuantifier(in pattern: String) -> String? {
        let characters = Array(pattern)
        // For each open group: whether it holds an unbounded quantifier, and where it starts.
        var groups: [(start: Int, unbounded: Bool)] = []
        var index = 0
        var inClass = false
        while index < characters.count {
            let character = characters[index]
            if character == "\\" { index += 2; continue }
            if inClass { if character == "]" { inClass = false }; index += 1; continue }
            switch character {
            case "[": inClass = true
            case "(": groups.append((index, false))
            case ")":
                guard let group = groups.popLast() else { break }
                let quantified = unboundedQuantifier(characters, at: index + 1)
                if group.unbounded && quantified {
                    let end = min(characters.count, index + 2)
                    return String(characters[group.start..<end])
                }
                if group.unbounded || quantified, !groups.isEmpty { groups[groups.count - 1].unbounded = true }
            case "*", "+":
                if !groups.isEmpty { groups[groups.count - 1].unbounded = true }
            case "{":
                if unboundedQuantifier(characters, at: index), !groups.isEmpty { groups[groups.count - 1].unbounded = true }
            default: break
            }
            index += 1
        }
        return nil
    }

    /// Whether an unbounded quantifier (`*`, `+`, `{n,}`) starts at `index`.
    private static func unboundedQuantifier(_ characters: [Character], at index: Int) -> Bool {
        guard index < characters.count else { return false }
        if characters[index] == "*" || characters[index] == "+" { return true }
        guard characters[index] == "{", let close = characters[index...].firstIndex(of: "}") else { return false }
        let body = String(characters[(index + 1)..<close])
        return body.hasSuffix(",") && Int(body.dropLast()) != nil
    }
}
