import ChorusTrace

/// What the processes sharing one trace database coordinate through it: model
/// concurrency slots, per-minute rate windows and budgets every worker spends from, the
/// step table of shared runs and the run queue. Kept apart from the trace (which records
/// what happened) because it decides what may happen next, between processes.
public protocol Coordination: AnyObject, Sendable {
    /// Where it is, for messages (a URL without its password).
    var location: String { get }
    /// Model concurrency slots every process takes from, so `max_concurrency` holds across workers.
    var concurrency: any SharedConcurrency { get }
    /// Per-minute windows every process counts in, so requests and tokens per minute hold across workers.
    var rates: any SharedRates { get }
    /// Run budgets held in the database, for runs whose steps many processes run.
    var budgets: any SharedBudgets { get }
    /// The step table of shared runs, on a connection of its own each time (a coordinator
    /// polls on one while its executor leases on another).
    func stepQueue() -> any SharedStepQueue
    /// The queue `chorus submit` adds to and `chorus worker` leases from (connects and
    /// applies pending migrations).
    func runQueue() throws -> any RunQueue
}

extension TraceLocation {
    /// How the processes using this database coordinate: nil for SQLite (an embedded file
    /// serves one machine, and each run keeps its limits in its own process), rows in the
    /// database for PostgreSQL. Connections are opened on first use.
    public func openCoordination() -> (any Coordination)? {
        switch self {
        case .sqlite: nil
        case .postgres(let url): PostgresCoordination(url: url)
        }
    }
}
