/// Text from outside — a provider's message, a model's answer, a person's note, anything read
/// back from a trace database someone could edit — made safe to show on a terminal. Control
/// characters are shown as escapes instead of acting: an escape sequence cannot recolour,
/// move the cursor or retitle the window, and a carriage return or line feed inside a note
/// cannot print a line of its own (a forged "approved" line, say).
package enum TerminalText {
    /// `text` with C0 controls, DEL and C1 controls escaped (`\n`, `\r`, `\t`, `\e`,
    /// `\u{9B}`); with `keepingNewlines`, line feeds and tabs are left as they are (for
    /// text whose lines are Chorus's own).
    package static func escaped(_ text: String, keepingNewlines: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepingNewlines) }) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, keepingNewlines) else { result.unicodeScalars.append(scalar); continue }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\u{1B}": result += "\\e"
            default: result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return result
    }

    private static func needsEscape(_ scalar: Unicode.Scalar, _ keepingNewlines: Bool) -> Bool {
        let value = scalar.value
        if keepingNewlines && (scalar == "\n" || scalar == "\t") { return false }
        return value < 0x20 || value == 0x7F || (0x80...0x9F).contains(value)
    }
}
