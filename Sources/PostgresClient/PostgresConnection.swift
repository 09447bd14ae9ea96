import CPQ
import Foundation

/// A PostgreSQL connection over libpq (Debian's libpq-dev): the PostgreSQL trace store's
/// client. Like SQLiteStatement for SQLite, this module holds the C calls and nothing else.
///
/// Why libpq and not vapor/postgres-nio (both mirrored): measured on this 2-core machine,
/// postgres-nio and its SwiftNIO dependencies took 10 min 25 s to build in release and
/// added 64 MB to the build; a libpq probe built in 2 s and inserted ~106,000 rows/s in
/// batches of 100 on a loopback server. The trace store's calls are synchronous by design
/// (reads run off the event loop in `OffLoop`, writes on the trace writer's own thread), so
/// libpq's blocking API costs the loop nothing.
///
/// Not thread-safe: one thread at a time (the store serialises reads with a lock; the
/// writer's session has a connection of its own).
package final class PostgresConnection {
    private let connection: OpaquePointer

    /// Connects to `url` (postgres://user[:password]@host[:port]/database?options).
    package init(url: String) throws(PostgresError) {
        guard let connection = PQconnectdb(url) else { throw PostgresError(message: "out of memory connecting", state: nil) }
        self.connection = connection
        guard PQstatus(connection) == CONNECTION_OK else {
            // deinit runs PQfinish: every stored property is set, so a throw here still deinitialises.
            throw PostgresError(message: String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines), state: nil)
        }
        // Notices (a table that already exists, say) would go to stderr by default.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
    }

    deinit { PQfinish(connection) }

    /// Runs one statement with `$1…$n` parameters (nil is NULL; bytes go binary). Results
    /// come back as text (bytea decoded), typed by column.
    @discardableResult
    package func query(_ sql: String, _ parameters: [PostgresValue?] = []) throws(PostgresError) -> PostgresResult {
        var buffers: [[CChar]?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        buffers.reserveCapacity(parameters.count)
        for parameter in parameters {
            switch parameter {
            case nil:
                buffers.append(nil); lengths.append(0); formats.append(0)
            case .text(let text)?:
                buffers.append(Array(text.utf8CString)); lengths.append(0); formats.append(0)
            case .bytes(let bytes)?:
                buffers.append(bytes.map { CChar(bitPattern: $0) }); lengths.append(Int32(bytes.count)); formats.append(1)
            }
        }
        let result: OpaquePointer? = withPointers(buffers) { pointers in
            PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, lengths, formats, 0)
        }
        return try PostgresResult(result, connection: connection)
    }

    /// Runs one or more statements without parameters (migrations, BEGIN/COMMIT).
    package func execute(_ sql: String) throws(PostgresError) {
        _ = try PostgresResult(PQexec(connection, sql), connection: connection)
    }

    /// Whether the connection is still usable.
    package var isOK: Bool { PQstatus(connection) == CONNECTION_OK }

    private func withPointers<T>(_ buffers: [[CChar]?], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
        var pointers: [UnsafePointer<CChar>?] = []
        pointers.reserveCapacity(buffers.count)
        // The arrays stay alive for the call: each buffer is pinned by a nested closure.
        func pin(_ index: Int) -> T {
            if index == buffers.count { return body(pointers) }
            guard let buffer = buffers[index] else {
                pointers.append(nil)
                return pin(index + 1)
            }
            return buffer.withUnsafeBufferPointer { pointer in
                // An empty bytea has no base address; libpq only needs a non-null pointer.
                pointers.append(pointer.baseAddress ?? UnsafePointer(bitPattern: 1))
                return pin(index + 1)
            }
        }
        return pin(0)
    }
}

/// A parameter value.
package enum PostgresValue: Sendable {
    case text(String)
    case bytes([UInt8])
}

/// What a statement returned: its columns and rows, every value as text or bytes.
package struct PostgresResult: Sendable {
    package enum Kind: Sendable { case integer, real, boolean, bytes, text }
    package enum Cell: Sendable {
        case text(String)
        case bytes([UInt8])
    }

    package let columns: [String]
    package let kinds: [Kind]
    package let rows: [[Cell?]]
    /// Rows an INSERT, UPDATE or DELETE touched.
    package let affected: Int

    init(_ result: OpaquePointer?, connection: OpaquePointer) throws(PostgresError) {
        guard let result else {
            throw PostgresError(message: String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines), state: nil)
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let message = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(message: message, state: state)
        }
        let columnCount = Int(PQnfields(result))
        columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        kinds = (0..<columnCount).map { column in
            switch PQftype(result, Int32(column)) {
            case 20, 21, 23, 26: return .integer  // int8, int2, int4, oid
            case 700, 701, 1700: return .real  // float4, float8, numeric
            case 16: return .boolean
            case 17: return .bytes
            default: return .text
            }
        }
        let kinds = self.kinds
        rows = (0..<Int(PQntuples(result))).map { row in
            (0..<columnCount).map { column -> Cell? in
                if PQgetisnull(result, Int32(row), Int32(column)) != 0 { return nil }
                let value = PQgetvalue(result, Int32(row), Int32(column))!
                if kinds[column] == .bytes {
                    var length = 0
                    guard let decoded = PQunescapeBytea(UnsafeRawPointer(value).assumingMemoryBound(to: UInt8.self), &length) else { return .bytes([]) }
                    defer { PQfreemem(decoded) }
                    return .bytes(Array(UnsafeBufferPointer(start: decoded, count: length)))
                }
                return .text(String(cString: value))
            }
        }
        affected = Int(String(cString: PQcmdTuples(result))) ?? 0
    }
}

/// A PostgreSQL error: the server's message and its SQLSTATE code (23505 unique
/// violation, 40001 serialization failure, 40P01 deadlock…), or a connection failure.
package struct PostgresError: Error, Sendable, CustomStringConvertible {
    package var message: String
    package var state: String?
    package var description: String { message.isEmpty ? "PostgreSQL error \(state ?? "")" : message }
}
