import GRDB
import GRDBSQLite

/// A prepared statement the trace writer runs for every step, call and event, bound through
/// SQLite's C API. The one place outside ChorusIO that calls C: this module (named for the
/// library it calls, as the C shim targets are) holds nothing else.
///
/// Hand-written on purpose: GRDB's `StatementArguments` boxes every value in an existential
/// array, and `cachedStatement(sql:)` hashes the whole SQL text on each lookup. perf put the
/// two at about a quarter of the writer thread's time on a 10,000-call run. Everything else
/// in the store goes through GRDB.
///
/// Use it only inside the writer's `pool.write` (the connection it was prepared on), and
/// bind every parameter, in order, before `run()`.
package final class RowInsert {
    private let statement: Statement
    private var handle: OpaquePointer { statement.sqliteStatement }
    private var next: Int32 = 1

    /// Prepares `sql` on `db`, the connection of the write it will run in.
    package init(_ db: Database, sql: String) throws {
        statement = try db.makeStatement(sql: sql)
    }

    /// Binds the next parameter to text, or NULL.
    package func bind(_ value: String?) {
        defer { next += 1 }
        guard let value else { _ = sqlite3_bind_null(handle, next); return }
        var text = value
        text.withUTF8 { bytes in
            // A null pointer would bind NULL, not the empty string.
            let start = (bytes.baseAddress.map(UnsafeRawPointer.init) ?? UnsafeRawPointer(Self.empty)).assumingMemoryBound(to: CChar.self)
            _ = sqlite3_bind_text(handle, next, start, Int32(bytes.count), Self.transient)
        }
    }

    /// Binds the next parameter to an integer, or NULL.
    package func bind(_ value: Int?) {
        defer { next += 1 }
        guard let value else { _ = sqlite3_bind_null(handle, next); return }
        _ = sqlite3_bind_int64(handle, next, Int64(value))  // binds cannot fail for an in-range index; a bad one fails run()
    }

    /// Binds the next parameter to a real, or NULL.
    package func bind(_ value: Double?) {
        defer { next += 1 }
        guard let value else { _ = sqlite3_bind_null(handle, next); return }
        _ = sqlite3_bind_double(handle, next, value)
    }

    /// Binds the next parameter to a blob.
    package func bind(bytes: [UInt8]) {
        defer { next += 1 }
        bytes.withUnsafeBytes { raw in
            _ = sqlite3_bind_blob(handle, next, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), Self.transient)
        }
    }

    /// Runs the statement with the values bound since the last run; for a query, true when it
    /// returned a row.
    @discardableResult
    package func run() throws -> Bool {
        defer {
            _ = sqlite3_reset(handle)  // returns the step's error again, which run() has thrown already
            next = 1
        }
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_DONE: return false
        case SQLITE_ROW: return true
        default:
            let message = sqlite3_db_handle(handle).flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
        }
    }

    nonisolated(unsafe) private static let empty = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    /// SQLite copies the bytes before the bind returns (SQLITE_TRANSIENT).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
