import ChorusJSON

/// A task with one right answer that the simulator can recognise in a prompt and solve:
/// what gives its models ground truth, so an eval can measure how often each is right.
///
/// Five kinds, each phrased the way `EvalTaskGenerator` writes them (a real model reads
/// them as plain instructions): arithmetic (`Compute 37 * (12 + 5).`), extracting an
/// email address or an order number from a quoted sentence, classifying a review's
/// sentiment as positive, negative or neutral, and triaging a support ticket as billing,
/// technical, general or other (what a route node's small model does).
struct EvalTask: Equatable {
    enum Kind: String, CaseIterable { case arithmetic, email, order, sentiment, ticket }

    var kind: Kind
    /// The right answer, as text: `629`, `maria.lopez@northwind.example`, `KX-48213`, `positive`.
    var answer: String

    /// The task in `prompt`, solved; nil when the prompt holds none.
    static func recognise(_ prompt: String) -> EvalTask? {
        if let expression = after("Compute ", in: prompt, until: ".\n"), let value = Arithmetic.evaluate(expression) {
            return EvalTask(kind: .arithmetic, answer: String(value))
        }
        if let text = quoted(after: "Extract the email address from:", in: prompt),
            let email = words(text).first(where: { $0.contains("@") })
        {
            return EvalTask(kind: .email, answer: email)
        }
        if let text = quoted(after: "Extract the order number from:", in: prompt),
            let order = words(text).first(where: isOrderNumber)
        {
            return EvalTask(kind: .order, answer: order)
        }
        if let text = quoted(after: "Classify the sentiment of this review as positive, negative or neutral:", in: prompt) {
            let tokens = words(text).map { $0.lowercased() }
            let score = tokens.filter(Lexicon.positive.contains).count - tokens.filter(Lexicon.negative.contains).count
            return EvalTask(kind: .sentiment, answer: score > 0 ? "positive" : score < 0 ? "negative" : "neutral")
        }
        if let text = quoted(after: Self.ticketMarker, in: prompt) {
            let tokens = Set(words(text).map { $0.lowercased() })
            let billing = !tokens.isDisjoint(with: Lexicon.billing)
            let technical = !tokens.isDisjoint(with: Lexicon.technical)
            // Both at once is a ticket no one specialist owns: the generalist's "other".
            return EvalTask(kind: .ticket, answer: billing && technical ? "other" : billing ? "billing" : technical ? "technical" : "general")
        }
        return nil
    }

    /// How a triage prompt asks, before the quoted ticket.
    static let ticketMarker = "Classify this support ticket as billing, technical, general or other:"
    static let ticketLabels = ["billing", "technical", "general", "other"]

    /// A judging prompt — a `Reference answer: …` line and a `Candidate answer: …` line —
    /// graded the way a careful judge would: the candidate passes when it contains the
    /// reference, letters compared without case. Nil when the prompt is not one.
    static func judge(_ prompt: String) -> (pass: Bool, reason: String)? {
        guard let reference = after("Reference answer:", in: prompt, until: "\n"),
            let candidate = after("Candidate answer:", in: prompt, until: "\n")
        else { return nil }
        let wanted = reference.trimming(" \"").lowercased()
        guard !wanted.isEmpty else { return nil }
        return candidate.lowercased().contains(wanted)
            ? (true, "the candidate gives the reference answer \(wanted)")
            : (false, "the candidate does not give the reference answer \(wanted)")
    }

    /// A wrong answer of the right shape (it passes a schema; only a grader can tell).
    func wrongAnswer(_ rng: inout SplitMix64) -> String {
        switch kind {
        case .arithmetic:
            let value = Int(answer) ?? 0
            let offset = 1 + Int(rng.next() % 9)
            return String(rng.next() % 2 == 0 ? value + offset : value - offset)
        case .email:
            let parts = answer.split(separator: "@", maxSplits: 1)
            let local = parts.first.map(String.init) ?? "info"
            let domain = parts.count > 1 ? String(parts[1]) : "example.org"
            let others = Lexicon.domains.filter { $0 != domain }
            return rng.next() % 2 == 0 && local != "info" ? "info@" + domain : local + "@" + others[Int(rng.next() % UInt64(others.count))]
        case .order:
            var digits = Array(answer.suffix(5))
            digits.swapAt(1, 3)
            if digits[1] == digits[3] { digits[4] = digits[4] == "9" ? "0" : "9" }
            return String(answer.prefix(3)) + String(digits)
        case .sentiment:
            let others = ["positive", "negative", "neutral"].filter { $0 != answer }
            return others[Int(rng.next() % 2)]
        case .ticket:
            let others = Self.ticketLabels.filter { $0 != answer }
            return others[Int(rng.next() % UInt64(others.count))]
        }
    }

    private static func after(_ marker: String, in text: String, until stops: String) -> String? {
        guard let start = text.range(of: marker) else { return nil }
        let rest = text[start.upperBound...].prefix(200)
        let end = rest.firstIndex { stops.contains($0) } ?? rest.endIndex
        return String(rest[..<end])
    }

    private static func quoted(after marker: String, in text: String) -> String? {
        guard let start = text.range(of: marker) else { return nil }
        let rest = text[start.upperBound...].prefix(600)
        guard let open = rest.firstIndex(of: "\"") else { return nil }
        let inside = rest[rest.index(after: open)...]
        guard let close = inside.firstIndex(of: "\"") else { return nil }
        return String(inside[..<close])
    }

    /// Words without the punctuation around them (an email keeps its inner dots).
    private static func words(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map {
            String($0).trimming(",.;:!?()'")
        }.filter { !$0.isEmpty }
    }

    static func isOrderNumber(_ word: String) -> Bool {
        let chars = Array(word)
        return chars.count == 8 && chars[0...1].allSatisfy { $0.isASCII && $0.isUppercase } && chars[2] == "-"
            && chars[3...].allSatisfy { $0.isASCII && $0.isNumber }
    }
}

extension String {
    fileprivate func trimming(_ set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}

/// Integer arithmetic over `+ - *` and parentheses, by recursive descent: the tasks the
/// generator writes, and nothing else (deeper than 8 levels or past 64 bits is no task).
enum Arithmetic {
    static func evaluate(_ text: String) -> Int? {
        var parser = Parser(tokens: Array(text.utf8))
        guard let value = parser.sum(depth: 0) else { return nil }
        parser.skipSpaces()
        return parser.position == parser.tokens.count ? value : nil
    }

    private struct Parser {
        let tokens: [UInt8]
        var position = 0

        mutating func skipSpaces() { while position < tokens.count && tokens[position] == 32 { position += 1 } }

        mutating func sum(depth: Int) -> Int? {
            guard depth < 8, var value = product(depth: depth) else { return nil }
            while true {
                skipSpaces()
                guard position < tokens.count, tokens[position] == UInt8(ascii: "+") || tokens[position] == UInt8(ascii: "-") else { return value }
                let plus = tokens[position] == UInt8(ascii: "+")
                position += 1
                guard let next = product(depth: depth) else { return nil }
                let (result, overflow) = plus ? value.addingReportingOverflow(next) : value.subtractingReportingOverflow(next)
                guard !overflow else { return nil }
                value = result
            }
        }

        mutating func product(depth: Int) -> Int? {
            guard var value = factor(depth: depth) else { return nil }
            while true {
                skipSpaces()
                guard position < tokens.count, tokens[position] == UInt8(ascii: "*") else { return value }
                position += 1
                guard let next = factor(depth: depth) else { return nil }
                let (result, overflow) = value.multipliedReportingOverflow(by: next)
                guard !overflow else { return nil }
                value = result
            }
        }

        mutating func factor(depth: Int) -> Int? {
            skipSpaces()
            guard position < tokens.count else { return nil }
            if tokens[position] == UInt8(ascii: "(") {
                position += 1
                guard let value = sum(depth: depth + 1) else { return nil }
                skipSpaces()
                guard position < tokens.count, tokens[position] == UInt8(ascii: ")") else { return nil }
                position += 1
                return value
            }
            var value = 0
            let start = position
            while position < tokens.count, (48...57).contains(tokens[position]), position - start < 12 {
                value = value * 10 + Int(tokens[position] - 48)
                position += 1
            }
            return position > start ? value : nil
        }
    }
}

/// The words the sentiment tasks are written from and solved by.
enum Lexicon {
    static let positive: Set<String> = ["excellent", "superb", "delightful", "reliable", "fast", "comfortable", "sharp", "friendly", "great", "sturdy"]
    static let negative: Set<String> = ["terrible", "flimsy", "slow", "noisy", "broken", "disappointing", "awful", "rude", "sluggish", "dim"]
    static let neutral = ["ordinary", "beige", "rectangular", "standard", "medium-sized", "typical", "plain", "regular"]
    static let domains = ["northwind.example", "contoso.example", "fabrikam.example", "tailspin.example", "adatum.example"]
    /// Words that make a support ticket a billing one, or a technical one (both: other).
    static let billing: Set<String> = ["charged", "refund", "invoice", "payment", "billed", "receipt", "subscription", "overcharged"]
    static let technical: Set<String> = ["crashes", "error", "login", "password", "install", "freezes", "update", "sync"]
}

/// Writes eval cases of the four task kinds with their right answers, in the eval case
/// format (`schemas/eval-case.schema.json`): generated from word lists and a seed, so the
/// dataset is ours and the same seed writes the same file.
public enum EvalTaskGenerator {
    private static let first = ["maria", "tom", "aiko", "sven", "lena", "omar", "priya", "jonas", "chen", "fatima", "diego", "ines"]
    private static let last = ["lopez", "berg", "tanaka", "novak", "okafor", "schmidt", "rossi", "haddad", "silva", "kowalski"]
    private static let nouns = ["invoice", "contract", "laptop", "battery", "screen", "keyboard", "delivery", "warranty", "printer", "headset"]
    private static let cities = ["Lisbon", "Oslo", "Osaka", "Lagos", "Quito", "Krakow", "Dublin", "Tunis"]
    private static let months = ["January", "March", "May", "July", "September", "November"]

    /// The kinds `cases` writes in turn (tickets go to `triageCases`: they need a workflow with a route).
    private static let taskKinds: [EvalTask.Kind] = [.arithmetic, .email, .order, .sentiment]

    /// `count` cases, the four task kinds in turn.
    public static func cases(count: Int, seed: UInt64) -> [JSONValue] {
        var rng = SplitMix64(seed: seed ^ 0xE7A1)
        return (0..<max(0, count)).map { index in
            let kind = taskKinds[index % taskKinds.count]
            let number = index / taskKinds.count + 1
            let (task, expect) = make(kind, &rng)
            return [
                "id": .string("\(kind.rawValue)-\(String(format3: number))"), "inputs": ["task": .string(task)],
                "expect": .array([expect]), "tags": [.string(kind.rawValue)],
            ]
        }
    }

    private static func pick<T>(_ items: [T], _ rng: inout SplitMix64) -> T { items[Int(rng.next() % UInt64(items.count))] }

    /// A word of `sentiment` (positive, negative, else neutral) from the lexicon.
    private static func word(of sentiment: String, _ rng: inout SplitMix64) -> String {
        switch sentiment {
        case "positive": pick(Lexicon.positive, &rng)
        case "negative": pick(Lexicon.negative, &rng)
        default: pick(Lexicon.neutral, &rng)
        }
    }
    private static func pick(_ items: Set<String>, _ rng: inout SplitMix64) -> String { pick(items.sorted(), &rng) }

    private static func make(_ kind: EvalTask.Kind, _ rng: inout SplitMix64) -> (String, JSONValue) {
        let n = { (low: Int, high: Int, rng: inout SplitMix64) in low + Int(rng.next() % UInt64(high - low + 1)) }
        switch kind {
        case .arithmetic:
            let (a, b, c) = (n(2, 99, &rng), n(2, 99, &rng), n(2, 20, &rng))
            let expression = pick(["\(a) + \(b)", "\(a) - \(b)", "\(a) * \(c)", "(\(a) + \(b)) * \(c)", "\(a) * \(c) - \(b)", "\(a) * (\(b) - \(c))"], &rng)
            let value = Arithmetic.evaluate(expression) ?? 0
            return (
                "Compute \(expression). Reply with the number only.",
                ["json_path": "$.answer", "number": .number(Double(value)), "tolerance": 0]
            )
        case .email:
            let name = (pick(first, &rng), pick(last, &rng))
            let email = "\(name.0).\(name.1)@\(pick(Lexicon.domains, &rng))"
            let display = name.0.capitalized + " " + name.1.capitalized
            let sentence = pick(
                [
                    "Please forward the \(pick(nouns, &rng)) to \(email) before Friday.",
                    "For questions about the \(pick(nouns, &rng)), write to \(email) or call the front desk.",
                    "\(display) (\(email)) will lead the \(pick(nouns, &rng)) review next week.",
                ], &rng)
            return ("Extract the email address from: \"\(sentence)\"", ["json_path": "$.answer", "equals": .string(email)])
        case .order:
            let letters = Array("ABCDEFGHJKLMNPQRSTUVWXYZ")
            let order = String(pick(letters, &rng)) + String(pick(letters, &rng)) + "-" + String(n(10000, 99999, &rng))
            let sentence = pick(
                [
                    "Order \(order) shipped on \(n(1, 28, &rng)) \(pick(months, &rng)) to \(pick(cities, &rng)).",
                    "\(pick(first, &rng).capitalized) asked where order \(order) is; it left \(pick(cities, &rng)) on \(n(1, 28, &rng)) \(pick(months, &rng)).",
                    "Refund requested for \(order): the \(pick(nouns, &rng)) arrived late.",
                ], &rng)
            return ("Extract the order number from: \"\(sentence)\"", ["json_path": "$.answer", "regex": .string("^\\s*\(order)\\s*$")])
        case .sentiment:
            let label = pick(["positive", "negative", "neutral"], &rng)
            let words = { (rng: inout SplitMix64) in word(of: label, &rng) }
            let (noun1, noun2) = (pick(nouns, &rng), pick(nouns, &rng))
            let review = pick(
                [
                    "The \(noun1) is \(words(&rng)) and the \(noun2) is \(words(&rng)).",
                    "Honestly, the \(noun1) felt \(words(&rng)); the \(noun2) was \(words(&rng)) too.",
                    "My \(noun1) came in a \(pick(Lexicon.neutral, &rng)) box and it is \(words(&rng)).",
                ], &rng)
            return (
                "Classify the sentiment of this review as positive, negative or neutral: \"\(review)\"",
                ["json_path": "$.answer", "equals": .string(label), "ignore_case": true]
            )
        case .ticket:
            return ("", .null)
        }
    }

    /// `count` support tickets for `workflows/triage.json`, the four labels in turn (billing,
    /// technical, general, other), each with the route it should take (`expect_route`) and the
    /// answer its specialist should give: a billing ticket's order number, a technical one's
    /// account email, a general one's sentiment; other goes to the large generalist, which
    /// should answer something.
    public static func triageCases(count: Int, seed: UInt64) -> [JSONValue] {
        var rng = SplitMix64(seed: seed ^ 0x7817)
        let letters = Array("ABCDEFGHJKLMNPQRSTUVWXYZ")
        return (0..<max(0, count)).map { index in
            let label = EvalTask.ticketLabels[index % EvalTask.ticketLabels.count]
            let number = index / EvalTask.ticketLabels.count + 1
            let n = { (low: Int, high: Int, rng: inout SplitMix64) in low + Int(rng.next() % UInt64(high - low + 1)) }
            let order = String(pick(letters, &rng)) + String(pick(letters, &rng)) + "-" + String(n(10000, 99999, &rng))
            let email = "\(pick(first, &rng)).\(pick(last, &rng))@\(pick(Lexicon.domains, &rng))"
            let noun = pick(nouns.filter { !Lexicon.billing.contains($0) }, &rng)
            let ticket: String
            let expect: JSONValue
            switch label {
            case "billing":
                ticket = pick(
                    [
                        "I was charged twice for order \(order); please refund the second payment.",
                        "The invoice for order \(order) shows the \(noun) at the wrong price. Can I get a corrected receipt?",
                        "My subscription renewed under order \(order) after I cancelled it. I want a refund.",
                    ], &rng)
                expect = ["json_path": "$.answer", "regex": .string("^\\s*\(order)\\s*$")]
            case "technical":
                ticket = pick(
                    [
                        "Since the last update the app crashes on start. My account is \(email).",
                        "I cannot reset my password: the login page shows an error. Please reach me at \(email).",
                        "The \(noun) will not sync and the install freezes at 90%. Account: \(email).",
                    ], &rng)
                expect = ["json_path": "$.answer", "equals": .string(email)]
            case "general":
                let sentiment = pick(["positive", "negative", "neutral"], &rng)
                let word = { (rng: inout SplitMix64) in Self.word(of: sentiment, &rng) }
                ticket = pick(
                    [
                        "The staff at your \(pick(cities, &rng)) store were \(word(&rng)) and the \(noun) is \(word(&rng)). Are you open on Sundays?",
                        "Just a note: the \(noun) I bought is \(word(&rng)). Do you ship to \(pick(cities, &rng))?",
                    ], &rng)
                expect = ["json_path": "$.answer", "equals": .string(sentiment), "ignore_case": true]
            default:
                ticket = pick(
                    [
                        "The payment page shows an error and I was charged anyway for order \(order).",
                        "After the update my invoice will not download and the app crashes. Account: \(email).",
                    ], &rng)
                expect = ["json_path": "$.answer", "regex": "\\S"]
            }
            return [
                "id": .string("\(label)-\(String(format3: number))"), "inputs": ["ticket": .string(ticket)],
                "expect_route": .string(label), "expect": .array([expect]), "tags": [.string(label)],
            ]
        }
    }
}

extension String {
    fileprivate init(format3 number: Int) {
        let digits = "\(number)"
        self = String(repeating: "0", count: Swift.max(0, 3 - digits.utf8.count)) + digits
    }

    fileprivate var capitalized: String { prefix(1).uppercased() + dropFirst() }
}
