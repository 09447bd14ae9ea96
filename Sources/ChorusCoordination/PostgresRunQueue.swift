import ChorusTrace
import Foundation
import GRDB
import PostgresClient

/// The run queue in PostgreSQL: rows leased with `FOR UPDATE SKIP LOCKED`, a lease that
/// expires unless its worker renews it (heartbeats), so a worker killed on any machine
/// loses its runs to the others once its leases lapse. PostgreSQL is the coordinator;
/// there is none of Chorus's own.
final class PostgresRunQueue: RunQueue {
    private let database: PostgresLink
    let location: String

    /// Connects to `url` and applies pending migrations.
    init(url: String) throws(TraceStoreError) {
        location = TraceLocation.redacted(url)
        do {
            let connection = try PostgresConnection(url: url)
            try PostgresSchema.migrate(connection)
            database = PostgresLink(url: url, location: location, connection: connection)
        } catch {
            throw TraceStoreError(path: location, reason: PostgresTraceStore.describe(error))
        }
    }

    @discardableResult
    private func locked<T>(_ body: (PostgresConnection) throws -> T) throws -> T { try database.use(body) }

    func submit(id: String, workflowPath: String, configPath: String, inputsJSON: String, now: Double) throws {
        try locked { connection in
            try connection.query(
                """
                INSERT INTO runQueue (id, workflowPath, configPath, inputsJSON, status, submittedAt, attempts, runIDs)
                VALUES ($1, $2, $3, $4, 'queued', $5, 0, '')
                """, [.text(id), .text(workflowPath), .text(configPath), .text(inputsJSON), .text(String(now))])
        }
    }

    /// Leases the oldest run that is queued or whose lease has lapsed, for `seconds`.
    func lease(owner: String, seconds: Double, now: Double) throws -> QueuedRun? {
        try locked { connection in
            try connection.query(
                """
                UPDATE runQueue SET status = 'running', leaseOwner = $1, leaseExpiresAt = $2, attempts = attempts + 1
                WHERE id = (SELECT id FROM runQueue WHERE status = 'queued' OR (status = 'running' AND leaseExpiresAt < $3)
                            ORDER BY submittedAt, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING *
                """, [.text(owner), .text(String(now + seconds)), .text(String(now))]
            ).grdbRows().first.map(Self.queued)
        }
    }

    /// Records the id of the run this lease started. False when the lease was lost.
    func started(_ id: String, runID: String, owner: String) throws -> Bool {
        try locked { connection in
            try connection.query(
                """
                UPDATE runQueue SET runIDs = CASE WHEN runIDs = '' THEN $3 ELSE runIDs || ',' || $3 END
                WHERE id = $1 AND leaseOwner = $2 AND status = 'running'
                """, [.text(id), .text(owner), .text(runID)]
            ).affected == 1
        }
    }

    /// Renews a lease; false when it was lost (it lapsed and another worker took the run).
    func heartbeat(_ id: String, owner: String, seconds: Double, now: Double) throws -> Bool {
        try locked { connection in
            try connection.query(
                "UPDATE runQueue SET leaseExpiresAt = $3 WHERE id = $1 AND leaseOwner = $2 AND status = 'running'",
                [.text(id), .text(owner), .text(String(now + seconds))]
            ).affected == 1
        }
    }

    /// Ends a run the lease holder finished (`succeeded` or `failed`).
    func finish(_ id: String, owner: String, status: String, error: String?, now: Double) throws {
        try locked { connection in
            try connection.query(
                """
                UPDATE runQueue SET status = $3, error = $4, finishedAt = $5, leaseExpiresAt = NULL
                WHERE id = $1 AND leaseOwner = $2 AND status = 'running'
                """, [.text(id), .text(owner), .text(status), error.map { .text($0) }, .text(String(now))])
        }
    }

    /// Gives a run back at once (a worker stopping): the next lease resumes it.
    func release(_ id: String, owner: String) throws {
        try locked { connection in
            try connection.query(
                "UPDATE runQueue SET leaseExpiresAt = 0 WHERE id = $1 AND leaseOwner = $2 AND status = 'running'",
                [.text(id), .text(owner)])
        }
    }

    /// A run a lapsed lease left `running` is interrupted (its process is gone or cut off,
    /// on whatever machine), so it can be resumed: sealed into its chain as the trace's own
    /// `markAbandonedRuns` seals a run.
    func markInterrupted(runID: String) throws {
        try locked { connection in _ = try PostgresTraceStore.interrupt(runID, .leaseLapsed, connection) }
    }

    /// A run's status, nil when it has no row (its process died before writing one).
    func runStatus(_ runID: String) throws -> String? {
        try locked { connection in try connection.query("SELECT status FROM run WHERE id = $1", [.text(runID)]).strings(0).first }
    }

    /// Submissions not yet finished: queued, or held by a worker (live or with a lapsing lease).
    func unfinishedCount() throws -> Int {
        try locked { connection in try connection.query("SELECT COUNT(*) FROM runQueue WHERE status IN ('queued', 'running')").int(0, 0) ?? 0 }
    }

    func all() throws -> [QueuedRun] {
        try locked { connection in
            try connection.query("SELECT * FROM runQueue ORDER BY submittedAt, id").grdbRows().map(Self.queued)
        }
    }

    private static func queued(_ row: Row) -> QueuedRun {
        let ids: String = row["runIDs"] ?? ""
        return QueuedRun(
            id: row["id"], workflowPath: row["workflowPath"], configPath: row["configPath"], inputsJSON: row["inputsJSON"],
            status: row["status"], attempts: row["attempts"], runIDs: ids.split(separator: ",").map(String.init),
            leaseOwner: row["leaseOwner"], error: row["error"])
    }
}
