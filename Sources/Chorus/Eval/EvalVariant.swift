import ChorusJSON

/// One model configuration an eval compares: a name and the model swaps that make it
/// (`all-large:small=large` runs every step that would use `small` on `large`). The
/// configuration as the files say, the cascade, is always there as `as-configured`.
public struct EvalVariant: Sendable, Equatable {
    /// What reports call it (`as-configured`, `all-large`).
    public var name: String
    /// Model name → model name, as `replay --model` takes them.
    public var swaps: [String: String]

    /// The project as its files say, no swap: always an eval's first variant.
    public static let asConfigured = EvalVariant(name: "as-configured", swaps: [:])

    /// A variant running every step that would use a key of `swaps` on its value.
    public init(name: String, swaps: [String: String]) {
        self.name = name
        self.swaps = swaps
    }

    /// Parses `NAME:FROM=TO,FROM=TO`; the error says what is expected.
    public init(parsing text: String) throws(EvalError) {
        guard let colon = text.firstIndex(of: ":") else {
            throw EvalError("--variant \(text): expected NAME:FROM=TO[,FROM=TO...], such as all-large:small=large")
        }
        let name = String(text[..<colon])
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw EvalError("--variant \(text): the name must be 1 to 64 letters, digits, '-', '_' or '.'")
        }
        guard name != Self.asConfigured.name else {
            throw EvalError("--variant \(text): as-configured is the configuration as the files say, always included; choose another name")
        }
        var swaps: [String: String] = [:]
        for pair in text[text.index(after: colon)...].split(separator: ",") {
            let parts = pair.split(separator: "=").map { String($0).trimmingWhitespace }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw EvalError("--variant \(text): '\(pair)' is not FROM=TO")
            }
            guard swaps[parts[0]] == nil else { throw EvalError("--variant \(text): \(parts[0]) is swapped twice") }
            swaps[parts[0]] = parts[1]
        }
        guard !swaps.isEmpty else { throw EvalError("--variant \(text): no swaps; as-configured already runs the files as they are") }
        self.init(name: name, swaps: swaps)
    }

    /// `small=large,planner=large`, in name order.
    public var swapText: String {
        swaps.isEmpty ? "(as the files say)" : swaps.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    var json: JSONValue { ["name": .string(name), "swaps": .object(swaps.mapValues { .string($0) })] }

    init?(json: JSONValue) {
        guard let name = json["name"]?.stringValue else { return nil }
        self.init(name: name, swaps: (json["swaps"]?.objectValue ?? [:]).compactMapValues(\.stringValue))
    }
}

/// Why an eval cannot run or be re-graded, one line.
public struct EvalError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}
