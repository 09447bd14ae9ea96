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

    /// The state a writer thread commits batches with (prepared statements, audit chains).
    func makeWriteSession() throws -> any TraceWriteSession

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

    /// Concurrency slots shared by every process on this database (PostgreSQL: rows), so a
    /// model's `max_concurrency` holds across workers; nil when each process counts alone.
    var sharedConcurrency: (any SharedConcurrency)? { get }
    /// A queue for the steps of runs shared between workers (a new connection each time);
    /// nil when the database serves one machine.
    var sharedSteps: (any SharedStepQueue)? { get }
    /// Run budgets held in the database, for runs whose steps many processes run.
    var sharedBudgets: (any SharedBudgets)? { get }
    /// Per-minute rate windows held in the database, so a model's requests and tokens per
    /// minute hold across every process using it.
    var sharedRates: (any SharedRates)? { get }
}

/// A model's per-minute windows in the database: sliding, over the last 60 s, like the
/// process's own (`ModelLimiter`).
public protocol SharedRates: AnyObject, Sendable {
    /// Admits a request estimated at `tokens` to `key`'s windows: the entry's id (to settle
    /// its tokens), or how many seconds until the oldest entry leaves the window.
    func take(key: String, requestsPerMinute: Int?, tokensPerMinute: Int?, tokens: Int, now: Double) throws -> RateDecision
    /// Replaces the entry's estimate with the tokens really used.
    func settle(entry: Int64, tokens: Int) throws
}

public enum RateDecision: Sendable, Equatable {
    case admitted(Int64)
    case wait(seconds: Double)
}

/// A budget held in the database: what every process running a run's steps has spent,
/// and holds reserved for calls in flight (each hold leased, so a process that died frees
/// its holds when they lapse).
public protocol SharedBudgets: AnyObject, Sendable {
    /// Creates `key`'s row with its limits and what was already spent; an existing row keeps
    /// what it has spent (a takeover continues the count).
    func open(key: String, limitMicroUSD: Int64?, limitTokens: Int?, limitCalls: Int?, spent: (microUSD: Int64, tokens: Int, calls: Int)) throws
    /// Reserves a call of at most `microUSD` and `tokens`.
    func reserve(key: String, microUSD: Int64, tokens: Int, holder: String, leaseSeconds: Double, now: Double) throws -> BudgetDecision
    /// Ends a hold: what the call really used is spent (even if the hold had lapsed).
    func settle(key: String, hold: Int64, microUSD: Int64, tokens: Int, madeCall: Bool) throws
    func spent(key: String) throws -> (microUSD: Int64, tokens: Int, calls: Int)
}

public enum BudgetDecision: Sendable, Equatable {
    case held(Int64)
    /// Holds of calls in flight leave no room now; one may free it.
    case wait
    /// Nothing is held and it still does not fit.
    case refused
    /// The budget has no row (never opened).
    case unknown
}

/// Model concurrency slots held in the database: `limit` slots per key, each held by one
/// call of any process until released or its lease lapses (a process that died).
public protocol SharedConcurrency: AnyObject, Sendable {
    /// One free slot of `key` (of `limit`), held for `holder`; nil when all are taken.
    func tryAcquire(key: String, limit: Int, holder: String, leaseSeconds: Double) throws -> Int?
    func release(key: String, slot: Int, holder: String) throws
}

/// Commits trace batches, each in one transaction, on one thread (the writer's).
public protocol TraceWriteSession: AnyObject {
    func commit(_ batch: [TraceChange]) throws
}

extension TraceBackend {
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
    public func makeWriteSession() throws -> any TraceWriteSession { SQLiteWriteSession(store: self) }
    /// An embedded file serves one machine's processes; limits stay per run.
    public var sharedConcurrency: (any SharedConcurrency)? { nil }
    public var sharedSteps: (any SharedStepQueue)? { nil }
    public var sharedBudgets: (any SharedBudgets)? { nil }
    public var sharedRates: (any SharedRates)? { nil }
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
