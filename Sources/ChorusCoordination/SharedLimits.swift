import Foundation

/// A model's per-minute windows in the database: sliding, over the last 60 s, like the
/// process's own (`ModelLimiter`).
public protocol SharedRates: AnyObject, Sendable {
    /// Admits a request estimated at `tokens` to `key`'s windows: the entry's id (to settle
    /// its tokens), or how many seconds until the oldest entry leaves the window.
    func take(key: String, requestsPerMinute: Int?, tokensPerMinute: Int?, tokens: Int, now: Double) throws -> RateDecision
    /// Replaces the entry's estimate with the tokens really used.
    func settle(entry: Int64, tokens: Int) throws
}

/// What `SharedRates.take` decided.
public enum RateDecision: Sendable, Equatable {
    /// Admitted: the window entry's id, to `settle` once the tokens are known.
    case admitted(Int64)
    /// Full: try again after this long.
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
    /// What `key` has spent so far, in micro-dollars, tokens and calls.
    func spent(key: String) throws -> (microUSD: Int64, tokens: Int, calls: Int)
}

/// What `SharedBudgets.reserve` decided.
public enum BudgetDecision: Sendable, Equatable {
    /// Reserved: the hold's id, to `settle` when the call ends.
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
    /// Frees a slot `holder` held (a lapsed lease's slot may already be another's: then nothing).
    func release(key: String, slot: Int, holder: String) throws
}
