import ChorusJSON

/// The part of JSONPath (RFC 9535) an expectation needs to point at one value: `$`, then
/// any number of `.name`, `['name']` / `["name"]` and `[index]` (negative counts from the
/// end). Filters, wildcards and slices select many values, which an expectation does not
/// compare, so they are refused with a message rather than half-supported. Written here:
/// no JSONPath library is among the mirrored packages, and this subset is 60 lines.
enum JSONPath {
    enum Segment: Equatable {
        case name(String)
        case index(Int)
    }

    /// The segments of `path`, or why it is not one this subset reads.
    static func parse(_ path: String) -> Result<[Segment], PathError> {
        var chars = Array(path)[...]
        guard chars.first == "$" else { return .failure(PathError("a JSONPath starts with $, as in $.answer")) }
        chars = chars.dropFirst()
        var segments: [Segment] = []
        while let first = chars.first {
            if first == "." {
                chars = chars.dropFirst()
                let name = chars.prefix { $0 != "." && $0 != "[" }
                guard !name.isEmpty, !name.contains("*") else { return .failure(PathError("expected a member name after '.'")) }
                segments.append(.name(String(name)))
                chars = chars.dropFirst(name.count)
            } else if first == "[" {
                chars = chars.dropFirst()
                if let quote = chars.first, quote == "'" || quote == "\"" {
                    let name = chars.dropFirst().prefix { $0 != quote }
                    let rest = chars.dropFirst(name.count + 1)
                    guard rest.first == quote, rest.dropFirst().first == "]" else { return .failure(PathError("unterminated ['name']")) }
                    segments.append(.name(String(name)))
                    chars = rest.dropFirst(2)
                } else {
                    let digits = chars.prefix { $0 != "]" }
                    guard chars.dropFirst(digits.count).first == "]", let index = Int(String(digits)), abs(index) < 1 << 31 else {
                        return .failure(PathError("expected [index], ['name'] or [\"name\"]; filters, wildcards and slices select several values"))
                    }
                    segments.append(.index(index))
                    chars = chars.dropFirst(digits.count + 1)
                }
            } else {
                return .failure(PathError("unexpected '\(first)': expected .name or [ ]"))
            }
            guard segments.count <= 64 else { return .failure(PathError("more than 64 segments")) }
        }
        return .success(segments)
    }

    /// Why `path` cannot be used, or nil.
    static func problem(in path: String) -> String? {
        if case .failure(let error) = parse(path) { return "\(path): \(error.message)" }
        return nil
    }

    /// The value at `path` in `value`, or nil when there is none.
    static func select(_ path: String, in value: JSONValue) -> JSONValue? {
        guard case .success(let segments) = parse(path) else { return nil }
        var current = value
        for segment in segments {
            switch segment {
            case .name(let name):
                guard let next = current.objectValue?[name] else { return nil }
                current = next
            case .index(let index):
                guard let array = current.arrayValue else { return nil }
                let position = index < 0 ? array.count + index : index
                guard array.indices.contains(position) else { return nil }
                current = array[position]
            }
        }
        return current
    }

    struct PathError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
