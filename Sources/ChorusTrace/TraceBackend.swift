import Foundation
import Glibc

/// What the scheduler, replay, resume, eval and the `runs` commands need of a trace
/// database: the seam between them and a backend. `TraceStore` (SQLite, embedded, the
/// default) is one; a second (PostgreSQL, issue 16) implements the same and passes the
/// same conformance suite. Reads are synchronous: callers on the event loop wrap them in
/// `OffLoop`; writes go through `TraceWriter`, whose thread commits each batch through
/// the backend's `TraceWriteSession`.
public protocol TraceBackend: AnyObject, Sendable {
    /// Where it is, for messages: a file path, or a URL without its password.
    var path: String { get }
    /// Opened only to read: no migration, no write.
    var isReadOnly: Bool { get }

    /// Where it was opened, a PostgreSQL URL with its password (for messages, `path`): what
    /// the coordination between processes (ChorusCoordination) opens on the same database.
    var location: TraceLocation { get }

    /// The state a writer thread commits batches with (prepared statements, audit chains).
    /// With `staging` (a shared step's executor), bodies are stored and every other record
    /// is kept there for the run's coordinator, which writes it into the run's own chain.
    func makeWriteSession(staging: StagedSteps?) throws -> any TraceWriteSession

    func runs(limit: Int) throws -> [RunRecord]
    /// The run with this id, or the only run whose id starts with it.
    func run(matching id: String) throws -> RunRecord?
    func runs(parent id: String) throws -> [RunRecord]
    func steps(ofRun id: String) throws -> [StepRecord]
    func modelCalls(ofRun id: String) throws -> [ModelCallRecord]
    func toolCalls(ofRun id: String) throws -> [ToolCallRecord]
    func events(ofRun id: String) throws -> [EventRecord]
    /// The bytes stored under a content hash (a body kept as parts put back together).
    func blob(_ hash: String) throws -> [UInt8]?
    func blobs(_ hashes: Set<String>) throws -> [String: [UInt8]]
    /// Rows per table.
    func counts() throws -> [String: Int]
    func integrityCheck() throws -> String
    /// Marks runs left `running` by processes that are gone as interrupted.
    func markAbandonedRuns(except active: Set<String>) throws -> Int

    /// Recomputes a run's audit chain.
    func verify(_ runID: String) throws -> VerifyReport
    /// The resume lock: one resume of a run at a time.
    func lockRun(_ runID: String, pid: Int32) throws
    func unlockRun(_ runID: String, pid: Int32) throws
    /// Bytes the database takes.
    func fileSize() -> Int64
    func prune(olderThan: Double?, keep: Int?, now: Double) throws -> PruneReport
    func orphanBlobCount() throws -> Int
    func search(_ text: String, raw: Bool, limit: Int) throws -> [SearchHit]

    func evals(limit: Int) throws -> [EvalRecord]
    func eval(matching id: String) throws -> EvalRecord?
    func evalResults(of id: String) throws -> [EvalResultRecord]
}

/// Commits trace batches, each in one transaction, on one thread (the writer's).
public protocol TraceWriteSession: AnyObject {
    func commit(_ batch: [TraceChange]) throws
}

extension TraceBackend {
    public func makeWriteSession() throws -> any TraceWriteSession { try makeWriteSession(staging: nil) }
    public func runs() throws -> [RunRecord] { try runs(limit: 50) }
    public func markAbandonedRuns() throws -> Int { try markAbandonedRuns(except: []) }
    public func lockRun(_ runID: String) throws { try lockRun(runID, pid: getpid()) }
    public func unlockRun(_ runID: String) throws { try unlockRun(runID, pid: getpid()) }
    public func prune(olderThan: Double?, keep: Int?) throws -> PruneReport {
        try prune(olderThan: olderThan, keep: keep, now: Date().timeIntervalSince1970)
    }
    public func evals() throws -> [EvalRecord] { try evals(limit: 50) }
}

extension TraceStore: TraceBackend {
    public var location: TraceLocation { .sqlite(path: path) }
    public func makeWriteSession(staging: StagedSteps?) throws -> any TraceWriteSession { SQLiteWriteSession(store: self, staging: staging) }
}

/// Where a trace database is, from `--db` or `CHORUS_DB`: a file path or `sqlite:///path`
/// (SQLite, the default), or `postgres://user@host/db` (PostgreSQL).
public enum TraceLocation: Equatable, Sendable {
    case sqlite(path: String)
    case postgres(url: String)

    /// Parses `text`; a plain path is SQLite.
    public init(_ text: String) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text)
        } else if text.hasPrefix("sqlite://") {
            // sqlite:///abs/path (three slashes: an absolute path), sqlite://relative/path.
            self = .sqlite(path: String(text.dropFirst("sqlite://".count)))
        } else if text.hasPrefix("sqlite:") {
            self = .sqlite(path: String(text.dropFirst("sqlite:".count)))
        } else {
            self = .sqlite(path: text)
        }
    }

    /// Opens the database (migrating it unless `readOnly`).
    public func open(readOnly: Bool = false) throws(TraceStoreError) -> any TraceBackend {
        switch self {
        case .sqlite(let path):
            return try TraceStore(path: path, readOnly: readOnly)
        case .postgres(let url):
            return try PostgresTraceStore(url: url, readOnly: readOnly)
        }
    }

    /// A URL without its password.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}
