import ChorusTrace
import Foundation
import PostgresClient

/// Coordination in PostgreSQL: every worker on every machine takes slots, rate entries,
/// budget holds, steps and runs from the same rows. The tables are migrations 3 to 5 of
/// the trace's schema (`PostgresSchema`), so a database keeps one migration history.
final class PostgresCoordination: Coordination {
    let location: String
    private let url: String
    let concurrency: any SharedConcurrency
    // Budgets and rate windows each on a connection of their own: a call may take a slot,
    // a rate entry and a budget hold, and one connection would serialize them.
    let rates: any SharedRates
    let budgets: any SharedBudgets

    init(url: String) {
        self.url = url
        location = TraceLocation.redacted(url)
        concurrency = PostgresSlots(url: url, location: location)
        rates = PostgresShared(url: url, location: location)
        budgets = PostgresShared(url: url, location: location)
    }

    func stepQueue() -> any SharedStepQueue { PostgresStepQueue(url: url, location: location) }

    func runQueue() throws -> any RunQueue { try PostgresRunQueue(url: url) }
}

/// One connection of its own, opened on first use and again when lost, used by one caller
/// at a time; libpq errors become `TraceStoreError`s naming the database (no password).
/// The queue, the step table, slots, budgets and rate windows each keep one, so a call
/// taking a slot, a window entry and a budget hold never waits on another's round trip.
final class PostgresLink: @unchecked Sendable {
    private let url: String
    private let location: String
    private let lock = NSLock()
    private var connection: PostgresConnection?

    /// `connection`, when given, is used until it is lost.
    init(url: String, location: String, connection: PostgresConnection? = nil) {
        self.url = url
        self.location = location
        self.connection = connection
    }

    @discardableResult
    func use<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try lock.withLock {
            do {
                if connection == nil || connection?.isOK == false { connection = try PostgresConnection(url: url) }
                return try body(connection!)
            } catch let error as PostgresError {
                throw TraceStoreError(path: location, reason: PostgresTraceStore.describe(error))
            }
        }
    }
}
