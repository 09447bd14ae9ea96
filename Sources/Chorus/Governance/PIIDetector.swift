/// Finds personal data and secrets in text: email addresses, phone numbers, IBANs (checked
/// with their mod-97 checksum), payment card numbers (checked with Luhn), and API-key
/// shapes (`sk-…`, `sk-ant-…`, `AKIA…`, `ghp_…`, `xox[bp]-…`). Checksums keep near-misses
/// (order numbers, ISBNs, dates, version strings) out; the corpus test prints precision
/// and recall.
///
/// A hand-written scanner over the UTF-8 bytes, linear in the text: the first version used
/// Swift Regex, and `scripts/fuzz answer` found a 60 KB answer that took over 2 s (output
/// guards run on every answer, so that was a denial of service by a model or a tool).
package enum PIIDetector {
    /// One finding: its kind and where it is.
    package struct Finding: Sendable, Equatable {
        package var kind: String
        package var range: Range<String.Index>
    }

    /// Every finding in `text`, in order.
    package static func findings(in text: String) -> [Finding] {
        let bytes = Array(text.utf8)
        var spans: [(kind: String, start: Int, end: Int)] = []
        var i = 0
        while i < bytes.count {
            if let end = apiKey(bytes, i) { spans.append(("api_key", i, end)); i = end; continue }
            if let (valid, end) = iban(bytes, i) {
                // An IBAN-shaped run that fails its checksum is skipped whole: its digits are
                // not read again as a card or a phone number.
                if valid { spans.append(("iban", i, end)) }
                i = end
                continue
            }
            if let (kind, end) = digitRun(bytes, i) {
                if let kind { spans.append((kind, i, end)) }
                i = end
                continue
            }
            i += 1
        }
        spans += emails(bytes).filter { email in !spans.contains { $0.start < email.end && email.start < $0.end } }
        // Byte offsets to string indices in one forward walk (offsetBy from the start for
        // each span would be quadratic in a text full of findings).
        let utf8 = text.utf8
        var index = utf8.startIndex
        var offset = 0
        func advance(to target: Int) -> String.Index {
            index = utf8.index(index, offsetBy: target - offset)
            offset = target
            return index
        }
        return spans.sorted { $0.start < $1.start }.map { span in
            let lower = advance(to: span.start)
            return Finding(kind: span.kind, range: lower..<advance(to: span.end))
        }
    }

    /// `text` with every finding replaced by `[redacted:KIND]`.
    package static func redact(_ text: String) -> (text: String, kinds: [String]) {
        let found = findings(in: text)
        guard !found.isEmpty else { return (text, []) }
        var result = ""
        var cursor = text.startIndex
        for finding in found {
            result += text[cursor..<finding.range.lowerBound]
            result += "[redacted:\(finding.kind)]"
            cursor = finding.range.upperBound
        }
        result += text[cursor...]
        return (result, found.map(\.kind))
    }

    // MARK: scanners (each returns where its match ends, or nil)

    private static func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
    private static func isUpper(_ b: UInt8) -> Bool { b >= 65 && b <= 90 }
    private static func isLetter(_ b: UInt8) -> Bool { isUpper(b) || (b >= 97 && b <= 122) }
    private static func isWord(_ b: UInt8) -> Bool { isLetter(b) || isDigit(b) || b == 95 }
    private static func startsWord(_ bytes: [UInt8], _ i: Int) -> Bool { i == 0 || !isWord(bytes[i - 1]) }

    private static func apiKey(_ bytes: [UInt8], _ i: Int) -> Int? {
        guard startsWord(bytes, i) else { return nil }
        for (prefix, minimum, alphabet) in [("sk-", 20, 0), ("AKIA", 16, 1), ("ghp_", 36, 2), ("xoxb-", 10, 0), ("xoxp-", 10, 0)] {
            let p = Array(prefix.utf8)
            guard i + p.count <= bytes.count, Array(bytes[i..<(i + p.count)]) == p else { continue }
            var end = i + p.count
            while end < bytes.count, end - i < 256 {
                let b = bytes[end]
                let ok = alphabet == 1 ? (isUpper(b) || isDigit(b)) : alphabet == 2 ? (isLetter(b) || isDigit(b)) : (isWord(b) || b == 45)
                guard ok else { break }
                end += 1
            }
            if end - i - p.count >= minimum { return end }
        }
        return nil
    }

    /// Two capitals, two digits, then up to 30 capitals or digits in groups with single
    /// spaces: the longest prefix of 15 or more that passes the checksum (valid), else the
    /// whole shaped run (not valid); nil when the text does not start like an IBAN.
    private static func iban(_ bytes: [UInt8], _ i: Int) -> (Bool, Int)? {
        guard startsWord(bytes, i), i + 4 <= bytes.count, isUpper(bytes[i]), isUpper(bytes[i + 1]),
            isDigit(bytes[i + 2]), isDigit(bytes[i + 3])
        else { return nil }
        var characters = Array(bytes[i..<(i + 4)])
        var ends: [Int] = []  // where the text ends after each character
        ends += [i + 1, i + 2, i + 3, i + 4]
        var j = i + 4
        while j < bytes.count, characters.count < 34 {
            if bytes[j] == 32, j + 1 < bytes.count, isUpper(bytes[j + 1]) || isDigit(bytes[j + 1]) { j += 1 }
            guard isUpper(bytes[j]) || isDigit(bytes[j]) else { break }
            characters.append(bytes[j])
            j += 1
            ends.append(j)
        }
        guard characters.count >= 15 else { return nil }
        for count in stride(from: characters.count, through: 15, by: -1) {
            let end = ends[count - 1]
            if (end == bytes.count || !isWord(bytes[end])) && ibanChecksum(String(decoding: characters[0..<count], as: UTF8.self)) {
                return (true, end)
            }
        }
        return (false, ends[characters.count - 1])
    }

    /// A run of digits with single separators (space, dash, dot, parentheses, a leading
    /// plus): a card when 13 to 19 digits pass Luhn, a phone number at 9 to 12 digits,
    /// nothing otherwise (a card-length run that fails Luhn is an order number, an ISBN).
    private static func digitRun(_ bytes: [UInt8], _ i: Int) -> (String?, Int)? {
        let plus = bytes[i] == 43
        guard plus || isDigit(bytes[i]), startsWord(bytes, i) || plus else { return nil }
        var digits: [UInt8] = []
        var j = plus ? i + 1 : i
        var end = i
        var separatorsOnly = true
        while j < bytes.count, digits.count < 20 {
            let b = bytes[j]
            if isDigit(b) {
                digits.append(b)
                j += 1
                end = j
                continue
            }
            let separator = b == 32 || b == 45 || b == 46 || b == 40 || b == 41
            guard separator, j + 1 < bytes.count, isDigit(bytes[j + 1]) || (b == 32 && bytes[j + 1] == 40) else { break }
            if b == 46 { separatorsOnly = false }
            j += 1
        }
        guard !digits.isEmpty else { return nil }
        if end < bytes.count, isLetter(bytes[end]) { return (nil, end) }  // part of a word or code
        let text = String(decoding: digits, as: UTF8.self)
        if (13...19).contains(digits.count) { return (luhn(text) && !plus ? "card" : nil, end) }
        if (9...12).contains(digits.count) && (separatorsOnly || plus) { return ("phone", end) }
        return (nil, end)
    }

    /// `local@domain.tld`: the local part and domain expanded around each `@`, bounded.
    private static func emails(_ bytes: [UInt8]) -> [(kind: String, start: Int, end: Int)] {
        var result: [(String, Int, Int)] = []
        var lastEnd = 0
        for at in bytes.indices where bytes[at] == 64 && at >= lastEnd {
            var start = at
            while start > lastEnd, at - start < 64 {
                let b = bytes[start - 1]
                guard isWord(b) || b == 46 || b == 37 || b == 43 || b == 45 else { break }
                start -= 1
            }
            var end = at + 1
            var lastDot = -1
            while end < bytes.count, end - at < 255 {
                let b = bytes[end]
                if b == 46 { lastDot = end } else if !(isLetter(b) || isDigit(b) || b == 45) { break }
                end += 1
            }
            if end > 0, bytes[end - 1] == 46 { end -= 1 }  // a sentence's full stop
            guard start < at, lastDot > at + 1, lastDot < end - 2,
                bytes[(lastDot + 1)..<end].allSatisfy(isLetter)
            else { continue }
            result.append(("email", start, end))
            lastEnd = end
        }
        return result
    }

    /// The Luhn check payment card numbers carry (13 to 19 digits).
    static func luhn(_ digits: String) -> Bool {
        guard (13...19).contains(digits.count) else { return false }
        var sum = 0
        for (i, character) in digits.reversed().enumerated() {
            guard var d = character.wholeNumberValue else { return false }
            if i % 2 == 1 { d *= 2; if d > 9 { d -= 9 } }
            sum += d
        }
        return sum % 10 == 0
    }

    /// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
    static func ibanChecksum(_ iban: String) -> Bool {
        guard (15...34).contains(iban.count) else { return false }
        let rearranged = iban.dropFirst(4) + iban.prefix(4)
        var remainder = 0
        for character in rearranged {
            let value: Int
            if let digit = character.wholeNumberValue {
                value = digit
            } else if let ascii = character.asciiValue, character.isUppercase {
                value = Int(ascii) - 55
            } else {
                return false
            }
            remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97
        }
        return remainder == 1
    }
}
