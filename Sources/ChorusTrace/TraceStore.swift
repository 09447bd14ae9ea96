import Crypto
import Glibc
import Foundation
import GRDB
import SQLiteStatement

/// Why the trace database could not be used: the path and what SQLite said.
public struct TraceStoreError: Error, CustomStringConvertible, Sendable {
    /// The database file.
    public let path: String
    /// What went wrong.
    public let reason: String

    public var description: String { "trace database \(path): \(reason)" }

    package init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// The SQLite trace store (GRDB on the system libsqlite3, WAL): opens and migrates the
/// database, writes through a `TraceWriter`, and answers queries about past runs.
public final class TraceStore: Sendable {
    /// The database file.
    public let path: String
    /// A `DatabasePool` when opened for writing; for reading, a pool, or a queue on an
    /// immutable file when the database sits where nothing may be written.
    let pool: any DatabaseWriter
    /// True when opened with `readOnly`: searches use the index as it is.
    public let isReadOnly: Bool

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// With `readOnly`, opens an existing database without writing anything to it (the
    /// `runs` commands), even on a read-only file system.
    public init(path: String, readOnly: Bool = false) throws(TraceStoreError) {
        self.path = path
        isReadOnly = readOnly
        if readOnly {
            pool = try Self.openForReading(path)
            return
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // WAL (DatabasePool's default) + NORMAL: a committed transaction survives a
            // killed process; only an OS crash can lose the last ones.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        // Several chorus processes may open a new file at the same moment (8-16 `chorus
        // run`s on one new --db, issue 17). GRDB's migrator reads which migrations are applied
        // before it takes SQLite's write lock, so two openers could both apply one ("UNIQUE
        // constraint failed: grdb_migrations.identifier"), and a file being switched to WAL
        // as another process opened it gave "no such table" and even "database disk image is
        // malformed" (16 openers × 20 rounds: 7 of 320 failed). So a database that is new
        // (absent or empty) is created, switched to WAL and migrated only under an exclusive
        // flock(2) on its directory, and so is one with migrations pending; the others wait,
        // then find nothing left to do. (Not a lock on the database file itself: closing any
        // descriptor of it drops SQLite's own POSIX locks.) An up-to-date database, every
        // open after the first, takes no lock. SQLITE_BUSY/PROTOCOL from a racing WAL switch
        // still clear on a retry.
        var attempt = 0
        while true {
            do {
                if Self.isNew(path) {
                    self.pool = try Self.whileHoldingDirectoryLock(of: path) { () throws -> DatabasePool in
                        try Self.createIfNew(path)
                        return try Self.openAndMigrate(path, configuration)
                    }
                } else {
                    let pool = try DatabasePool(path: path, configuration: configuration)
                    if try !pool.read({ try TraceSchema.migrator.hasCompletedMigrations($0) }) {
                        try Self.whileHoldingDirectoryLock(of: path) { try TraceSchema.migrator.migrate(pool) }
                    }
                    self.pool = pool
                }
                return
            } catch let error as DatabaseError where Self.losesARace(error) && attempt < 50 {
                attempt += 1
                usleep(UInt32.random(in: 10_000...100_000))
            } catch let error as TraceStoreError {
                throw error
            } catch {
                throw Self.unwritable(path) ?? TraceStoreError(path: path, reason: "\(error)")
            }
        }
    }

    private static func isNew(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) != 0 || info.st_size == 0
    }

    private static func openAndMigrate(_ path: String, _ configuration: Configuration) throws -> DatabasePool {
        let pool = try DatabasePool(path: path, configuration: configuration)
        try TraceSchema.migrator.migrate(pool)
        return pool
    }

    /// Creates the directory and the file when missing. The trace holds every prompt and
    /// answer: a new directory and database are readable by their owner only (SQLite gives
    /// the -wal and -shm files the database file's mode).
    private static func createIfNew(_ path: String) throws(TraceStoreError) {
        do {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            if !FileManager.default.fileExists(atPath: directory) {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700])
            }
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            }
        } catch {
            throw Self.unwritable(path) ?? TraceStoreError(path: path, reason: "\(error)")
        }
    }

    /// Runs `body` holding an exclusive flock on the directory of `path` (released when the
    /// descriptor closes, also when the process dies).
    private static func whileHoldingDirectoryLock<T>(of path: String, _ body: () throws -> T) throws -> T {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if !FileManager.default.fileExists(atPath: directory) { try createIfNew(path) }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return try body() }  // cannot lock (no permission to read it): migrate as before
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        return try body()
    }

    /// Why the database cannot be written, in words, when that is the cause: SQLite says
    /// only "unable to open database file" for a read-only mount or a directory without
    /// write permission.
    private static func unwritable(_ path: String) -> TraceStoreError? {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        for target in [path, directory] where FileManager.default.fileExists(atPath: target) {
            guard access(target, W_OK) != 0 else { continue }
            let why = errno == EROFS ? "is on a read-only file system" : "is not writable (permission denied)"
            return TraceStoreError(
                path: path,
                reason: "\(target == path ? "the file" : "its directory") \(why); "
                    + "chorus records every step, so choose a writable --db (the runs commands can still read it)")
        }
        return nil
    }

    /// Opens an existing database for reading only; migrations are not applied (a database
    /// an older chorus wrote must be opened for writing once).
    private static func openForReading(_ path: String) throws(TraceStoreError) -> any DatabaseWriter {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TraceStoreError(path: path, reason: "no such file (a run creates it)")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let reader: any DatabaseWriter
        do {
            do {
                reader = try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CANTOPEN && unwritable(path) != nil {
                // A WAL database needs its -shm file, which a read-only location cannot
                // create. Opened as immutable, SQLite reads the file as it is, without locks:
                // right for a mount nothing can change. (Needs URI filenames, which Debian's
                // libsqlite3 enables: SQLITE_USE_URI.)
                var components = URLComponents()
                components.scheme = "file"
                components.path = path
                components.queryItems = [URLQueryItem(name: "immutable", value: "1")]
                reader = try DatabaseQueue(path: components.string ?? path, configuration: configuration)
            }
            guard try reader.read({ try TraceSchema.migrator.hasCompletedMigrations($0) }) else {
                throw TraceStoreError(
                    path: path,
                    reason: "written by an older chorus; a run, resume or replay "
                        + "with this --db migrates it")
            }
        } catch let error as TraceStoreError {
            throw error
        } catch {
            throw TraceStoreError(path: path, reason: "\(error)")
        }
        return reader
    }

    private static func losesARace(_ error: DatabaseError) -> Bool {
        switch error.resultCode {
        // SQLITE_PROTOCOL: another connection was switching the new file to WAL as this one
        // took a lock (seen as "locking protocol" at COMMIT); SQLite's advice is to retry.
        case .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_PROTOCOL: return true
        case .SQLITE_ERROR:
            let message = error.message ?? ""
            return message.contains("already exists") || message.contains("duplicate column")
        default: return false
        }
    }

    /// SHA-256 of `bytes`, lowercase hex: the key of a content-addressed blob.
    public static func hash(_ bytes: [UInt8]) -> String {
        // Hex by table: String(format:) per byte cost a fifth of a 10,000-call run's CPU (perf).
        hex(SHA256.hash(data: bytes))
    }

    /// A digest in lowercase hex.
    static func hex(_ digest: SHA256.Digest) -> String {
        var hex = [UInt8](repeating: 0, count: 64)
        var i = 0
        for byte in digest {
            hex[i] = hexDigits[Int(byte >> 4)]
            hex[i + 1] = hexDigits[Int(byte & 0x0F)]
            i += 2
        }
        return String(decoding: hex, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Runs newest first.
    public func runs(limit: Int = 50) throws -> [RunRecord] {
        try pool.read { db in
            try RunRecord.order(Column("startedAt").desc).limit(limit).fetchAll(db)
        }
    }

    /// The run with this id, or the only run whose id starts with it.
    public func run(matching id: String) throws -> RunRecord? {
        try pool.read { db in
            if let exact = try RunRecord.fetchOne(db, key: id) { return exact }
            let matches = try RunRecord.filter(Column("id").like("\(id)%")).limit(2).fetchAll(db)
            return matches.count == 1 ? matches[0] : nil
        }
    }

    /// Runs whose parent is `id` (its replays, forks and resumes), oldest first.
    public func runs(parent id: String) throws -> [RunRecord] {
        try pool.read { db in
            try RunRecord.filter(Column("parentRunID") == id).order(Column("startedAt")).fetchAll(db)
        }
    }

    /// A run's steps in path order.
    public func steps(ofRun id: String) throws -> [StepRecord] {
        try pool.read { db in
            try StepRecord.filter(Column("runID") == id).order(Column("startedAt"), Column("path")).fetchAll(db)
        }
    }

    /// A run's model calls in the order they started.
    public func modelCalls(ofRun id: String) throws -> [ModelCallRecord] {
        try pool.read { db in
            try ModelCallRecord.filter(Column("runID") == id).order(Column("startedAt"), Column("attempt")).fetchAll(db)
        }
    }

    /// A run's tool calls in the order they were asked for.
    public func toolCalls(ofRun id: String) throws -> [ToolCallRecord] {
        try pool.read { db in
            try ToolCallRecord.filter(Column("runID") == id).order(Column("stepPath"), Column("attempt"), Column("callIndex")).fetchAll(db)
        }
    }

    /// A run's event log in order.
    public func events(ofRun id: String) throws -> [EventRecord] {
        try pool.read { db in
            try EventRecord.filter(Column("runID") == id).order(Column("seq")).fetchAll(db)
        }
    }

    /// The bytes stored under `hash` (a body kept as a skeleton and parts is put back together).
    public func blob(_ hash: String) throws -> [UInt8]? {
        try pool.read { db in try Self.body(hash, db) }
    }

    /// Several bodies in one read transaction.
    public func blobs(_ hashes: Set<String>) throws -> [String: [UInt8]] {
        try pool.read { db in
            var found: [String: [UInt8]] = [:]
            for hash in hashes { found[hash] = try Self.body(hash, db) }
            return found
        }
    }

    static func body(_ hash: String, _ db: Database, depth: Int = 0) throws -> [UInt8]? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT bytes, kind FROM blob WHERE hash = ?"), arguments: [hash]) else { return nil }
        let bytes = Array(row["bytes"] as Data)
        guard row["kind"] as Int == 1 else { return bytes }
        // A part is found by its hash whatever its row's kind: the same text stored first as
        // a whole body (a tool's output the next request quotes) is that part, byte for byte,
        // and may itself be a skeleton. Each level is shorter than the one above it; a deeper
        // chain than `BodyParts.maxDepth` is a forged database, read as a missing part.
        guard depth < BodyParts.maxDepth else { return nil }
        return try BodyParts.join(bytes) { part in try Self.body(part, db, depth: depth + 1) }
    }

    /// Counts of rows per table, for audits and benchmarks.
    public func counts() throws -> [String: Int] {
        try pool.read { db in
            var result: [String: Int] = [:]
            for table in ["run", "step", "modelCall", "blob", "event"] {
                result[table] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0
            }
            return result
        }
    }

    /// `PRAGMA integrity_check`'s verdict: "ok" when the file is sound.
    public func integrityCheck() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }

    /// This machine's host name, recorded with each run's owner process.
    public static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Marks runs left `running` by a process that died as `interrupted`. A run whose owner
    /// process is still alive on this host (another `chorus run` on the same database) is
    /// left alone, and so is one owned by another host, whose liveness cannot be seen.
    /// The change is sealed into the run's audit chain by a `run_interrupted` event, along
    /// with the rows the dead process wrote after its last event.
    @discardableResult
    public func markAbandonedRuns(except active: Set<String> = []) throws -> Int {
        try pool.write { db in
            let stale = try RunRecord.filter(Column("status") == "running").fetchAll(db).filter { run in
                !active.contains(run.id) && Self.ownerIsGone(run)
            }
            for run in stale {
                let last = try TraceChain.lastEvent(run.id, db)
                let (marked, event) = TraceChain.interruption(
                    of: run, after: last, unsealed: try Self.sealedDigests(run.id, db)[last.seq + 1] ?? [], .ownerGone,
                    at: Date().timeIntervalSince1970)
                try db.execute(
                    sql: "UPDATE run SET status = ?, error = ?, sealSeq = ? WHERE id = ?",
                    arguments: [marked.status, marked.error, event.seq, run.id])
                var statement = try RowInsert(db, sql: TraceTable.event.insertSQL(.sqlite))
                event.bind(to: &statement)
                try statement.run()
            }
            return stale.count
        }
    }

    private static func ownerIsGone(_ run: RunRecord) -> Bool {
        guard let pid = run.ownerPID else { return true }
        return processIsGone(pid, host: run.ownerHost)
    }

    package static func processIsGone(_ pid: Int32, host: String?) -> Bool {
        guard host == hostName else { return false }
        // ESRCH: no such process. (A recycled pid keeps the run `running`: the safe mistake.)
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}
