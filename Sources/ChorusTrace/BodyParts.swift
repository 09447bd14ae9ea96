import ChorusJSON

/// Long strings inside request bodies — a system prompt, shared instructions, a document
/// every subtask quotes — stored once however many distinct requests carry them. A body
/// is content-addressed as a whole (its SHA-256 is what replay and verify check), but it
/// is kept as a skeleton whose long strings are `{"$chorus_part": SHA-256}` references to
/// part blobs; reading it puts them back, byte for byte.
///
/// Hand-written: this is a storage format of ours, not a general JSON task.
enum BodyParts {
    /// Strings at least this long (UTF-8 bytes) become parts: below it, the part's row costs
    /// more than the repeat it saves.
    static let threshold = 512
    static let marker = "$chorus_part"
    /// How deep parts may nest (a part that is itself a skeleton, when a request quotes a
    /// whole earlier body): past it, a database is forged, and reads call the part missing.
    static let maxDepth = 8

    /// The skeleton and its parts, or nil when nothing is long enough or the body would not
    /// come back byte for byte (a body Chorus did not write with sorted keys).
    static func split(_ body: [UInt8]) -> (skeleton: [UInt8], parts: [(hash: String, bytes: [UInt8])])? {
        guard body.count >= threshold, let value = try? JSONValue(parsing: body), isCanonical(value, body) else { return nil }
        var parts: [(hash: String, bytes: [UInt8])] = []
        let skeleton = replace(value, &parts)
        guard !parts.isEmpty else { return nil }
        return (skeleton.serialized(), parts)
    }

    /// Whether `value` serialises to `body` exactly. The check's copy is made at the body's
    /// size and dropped before the parts are copied out: a synthesiser's request holding
    /// 100,000 findings is 23 MB, and a copy grown by doubling, kept beside the parts, made
    /// this the largest thing a run held (heaptrack: 52 MB of a 237 MB peak).
    private static func isCanonical(_ value: JSONValue, _ body: [UInt8]) -> Bool {
        var writer = JSONWriter(capacity: body.count)
        writer.value(value)
        return writer.bytes == body
    }

    /// Whether `body` has a string literal long enough to be a part: a byte scan, so that
    /// the usual short request is not parsed and re-serialised only to find none. A literal's
    /// escaped length is never below its text's, so a body this says no to has no part.
    static func mayHaveParts(_ body: [UInt8]) -> Bool {
        guard body.count >= threshold else { return false }
        return body.withUnsafeBufferPointer { bytes in
            var i = 0
            while i < bytes.count {
                guard bytes[i] == UInt8(ascii: "\"") else { i += 1; continue }
                let start = i
                i += 1
                while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
                    i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
                }
                if i - start - 1 >= threshold { return true }
                i += 1
            }
            return false
        }
    }

    /// The original body from a skeleton, fetching each part by hash.
    static func join(_ skeleton: [UInt8], part: (String) throws -> [UInt8]?) throws -> [UInt8]? {
        guard let value = try? JSONValue(parsing: skeleton) else { return nil }
        var missing = false
        func restore(_ value: JSONValue) throws -> JSONValue {
            switch value {
            case .object(let members) where members.count == 1:
                if let hash = members[marker]?.stringValue {
                    guard let bytes = try part(hash) else { missing = true; return value }
                    return .string(String(decoding: bytes, as: UTF8.self))
                }
                return .object(try members.mapValues(restore))
            case .object(let members): return .object(try members.mapValues(restore))
            case .array(let items): return .array(try items.map(restore))
            default: return value
            }
        }
        let restored = try restore(value)
        return missing ? nil : restored.serialized()
    }

    private static func replace(_ value: JSONValue, _ parts: inout [(hash: String, bytes: [UInt8])]) -> JSONValue {
        switch value {
        case .string(let text) where text.utf8.count >= threshold:
            let bytes = Array(text.utf8)
            let hash = TraceStore.hash(bytes)
            parts.append((hash, bytes))
            return .object([marker: .string(hash)])
        case .array(let items): return .array(items.map { replace($0, &parts) })
        case .object(let members): return .object(members.mapValues { replace($0, &parts) })
        default: return value
        }
    }
}
