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

    /// The newest `limit` runs, newest first.
    func runs(limit: Int) throws -> [RunRecord]
    /// The run with this id, or the only run whose id starts with it.
    func run(matching id: String) throws -> RunRecord?
    /// The runs made from run `id` (its replays, forks and resumes), oldest first.
    func runs(parent id: String) throws -> [RunRecord]
    /// A run's steps, in the order they started.
    func steps(ofRun id: String) throws -> [StepRecord]
    /// A run's model calls, in the order they started.
    func modelCalls(ofRun id: String) throws -> [ModelCallRecord]
    /// A run's tool calls, by step, request and place in the answer.
    func toolCalls(ofRun id: String) throws -> [ToolCallRecord]
    /// A run's event log, by `seq`.
    func events(ofRun id: String) throws -> [EventRecord]
    /// The bytes stored under a content hash (a body kept as parts put back together).
    func blob(_ hash: String) throws -> [UInt8]?
    /// The bytes of every hash found, in one query; a hash not stored is left out.
    func blobs(_ hashes: Set<String>) throws -> [String: [UInt8]]
    /// Rows per table.
    func counts() throws -> [String: Int]
    /// The database's own consistency check: "ok", or what it found.
    func integrityCheck() throws -> String
    /// Marks runs left `running` by processes that are gone as interrupted.
    func markAbandonedRuns(except active: Set<String>) throws -> Int

    /// Recomputes a run's audit chain.
    func verify(_ runID: String) throws -> VerifyReport
    /// The resume lock: one resume of a run at a time.
    func lockRun(_ runID: String, pid: Int32) throws
    /// Releases the resume lock `lockRun` took for process `pid`.
    func unlockRun(_ runID: String, pid: Int32) throws
    /// Bytes the database takes.
    func fileSize() -> Int64
    /// Removes runs that started more than `olderThan` seconds before `now` and all but the
    /// newest `keep`, then the bodies no remaining call uses; runs still running stay.
    func prune(olderThan: Double?, keep: Int?, now: Double) throws -> PruneReport
    /// Blobs no row refers to (what `prune` would remove).
    func orphanBlobCount() throws -> Int
    /// Full-text search of prompts and responses, best match first; `raw` passes `text` to the
    /// database's query syntax instead of matching it as words.
    func search(_ text: String, raw: Bool, limit: Int) throws -> [SearchHit]

    /// The newest `limit` evals, newest first.
    func evals(limit: Int) throws -> [EvalRecord]
    /// The eval with this id, or the only eval whose id starts with it.
    func eval(matching id: String) throws -> EvalRecord?
    /// An eval's results, by variant and then case.
    func evalResults(of id: String) throws -> [EvalResultRecord]
}

/// Commits trace batches, each in one transaction, on one thread (the writer's).
public protocol TraceWriteSession: AnyObject {
    /// Commits `batch` in one transaction, in order; a throw fails the writer (`TraceWriter.failure`).
    func commit(_ batch: [TraceChange]) throws
}

extension TraceBackend {
    /// A write session for an ordinary run (no staging).
    public func makeWriteSession() throws -> any TraceWriteSession { try makeWriteSession(staging: nil) }
    /// The newest 50 runs.
    public func runs() throws -> [RunRecord] { try runs(limit: 50) }
    /// Marks every run left `running` by a process that is gone as interrupted.
    public func markAbandonedRuns() throws -> Int { try markAbandonedRuns(except: []) }
    /// Takes the resume lock for this process.
    public func lockRun(_ runID: String) throws { try lockRun(runID, pid: getpid()) }
    /// Releases this process's resume lock.
    public func unlockRun(_ runID: String) throws { try unlockRun(runID, pid: getpid()) }
    /// Prunes as of now.
    public func prune(olderThan: Double?, keep: Int?) throws -> PruneReport {
        try prune(olderThan: olderThan, keep: keep, now: Date().timeIntervalSince1970)
    }
    /// The newest 50 evals.
    public func evals() throws -> [EvalRecord] { try evals(limit: 50) }
}

extension TraceStore: TraceBackend {
    public var location: TraceLocation { .sqlite(path: path) }
    public func makeWriteSession(staging: StagedSteps?) throws -> any TraceWriteSession { SQLiteWriteSession(store: self, staging: staging) }
}

/// Where a trace database is, from `--db` or `CHORUS_DB`: a file path or `sqlite:///path`
/// (SQLite, the default), or `postgres://user@host/db` (PostgreSQL).
public enum TraceLocation: Equatable, Sendable {
    /// An SQLite file.
    case sqlite(path: String)
    /// A PostgreSQL database, by its URL (password included).
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
