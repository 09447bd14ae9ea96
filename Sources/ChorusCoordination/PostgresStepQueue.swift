import ChorusTrace
import Foundation
import PostgresClient

/// The steps of shared runs in PostgreSQL (`stepTask`, `sharedRun`; migration 4). Each
/// call is one statement, so one round trip; leases are taken with `FOR UPDATE SKIP
/// LOCKED`, so executors on many machines never wait on each other's rows. (The rows to
/// lease are picked in CTEs: as `path IN (SELECT … LIMIT n)` the planner may run the
/// subquery more than once and lease more than `n` — the tests caught 10 for 4. Queued
/// and lapsed rows are picked apart, each an index range read in `seq` order: with one
/// `status = 'queued' OR …` condition PostgreSQL bitmap-scanned every queued row of the
/// run on each lease — perf: most of PostgreSQL's time on a 12,000-step run.)
final class PostgresStepQueue: SharedStepQueue {
    private let database: PostgresLink

    init(url: String, location: String) { database = PostgresLink(url: url, location: location) }

    @discardableResult
    private func locked<T>(_ body: (PostgresConnection) throws -> T) throws -> T { try database.use(body) }

    func open(runKey: String, runID: String, workflowPath: String, configPath: String, budgetJSON: String?) throws {
        try locked { connection in
            try connection.query(
                """
                INSERT INTO sharedRun (runKey, runID, workflowPath, configPath, status, updatedAt, budgetJSON)
                VALUES ($1, $2, $3, $4, 'running', $5, $6)
                ON CONFLICT (runKey) DO UPDATE SET runID = excluded.runID, workflowPath = excluded.workflowPath,
                configPath = excluded.configPath, status = 'running', updatedAt = excluded.updatedAt, budgetJSON = excluded.budgetJSON
                """,
                [
                    .text(runKey), .text(runID), .text(workflowPath), .text(configPath), .text(String(Date().timeIntervalSince1970)),
                    budgetJSON.map { .text($0) },
                ])
        }
    }

    func close(runKey: String, status: String) throws {
        try locked { connection in
            try connection.query(
                "UPDATE sharedRun SET status = $2, updatedAt = $3 WHERE runKey = $1",
                [.text(runKey), .text(status), .text(String(Date().timeIntervalSince1970))])
            // A run that ended (not one interrupted, which a takeover continues) has every result
            // it will use in its trace: the rows keep who ran what; steps it never needed are
            // dropped (never leased again; their executors' completions are refused).
            if status == "succeeded" || status == "failed" {
                try connection.query(
                    """
                    UPDATE stepTask SET resultJSON = NULL, variablesJSON = '',
                    status = CASE WHEN status = 'done' THEN 'done' ELSE 'dropped' END, leaseExpiresAt = NULL WHERE runKey = $1
                    """, [.text(runKey)])
            }
        }
    }

    func run(_ runKey: String) throws -> SharedRunInfo? {
        try locked { connection in
            Self.runs(
                try connection.query(
                    "SELECT runKey, runID, workflowPath, configPath, status, budgetJSON FROM sharedRun WHERE runKey = $1",
                    [.text(runKey)])
            ).first
        }
    }

    func enqueue(runKey: String, _ steps: [SharedStep], now: Double) throws -> [FinishedSharedStep] {
        guard !steps.isEmpty else { return [] }
        return try locked { connection in
            var inserted = Set<String>()
            for start in stride(from: 0, to: steps.count, by: 500) {
                let chunk = steps[start..<min(start + 500, steps.count)]
                var sql = "INSERT INTO stepTask (runKey, path, node, kind, itemIndex, agent, variablesJSON, status, queuedAt) VALUES "
                var parameters: [PostgresValue?] = []
                for (index, step) in chunk.enumerated() {
                    let base = index * 8
                    sql +=
                        (index == 0 ? "" : ", ")
                        + "($\(base + 1),$\(base + 2),$\(base + 3),$\(base + 4),$\(base + 5),$\(base + 6),$\(base + 7),'queued',$\(base + 8))"
                    parameters += [
                        .text(runKey), .text(step.path), .text(step.node), .text(step.kind), step.itemIndex.map { .text(String($0)) },
                        .text(step.agent), .text(step.variablesJSON), .text(String(now)),
                    ]
                }
                sql += " ON CONFLICT (runKey, path) DO NOTHING RETURNING path"
                inserted.formUnion(try connection.query(sql, parameters).strings(0))
            }
            // Steps already there: a coordinator taking over finds those done before it.
            let existing = steps.map(\.path).filter { !inserted.contains($0) }
            guard !existing.isEmpty else { return [] }
            return Self.finished(
                try connection.query(
                    """
                    SELECT path, resultJSON, doneBy, leases FROM stepTask WHERE runKey = $1 AND status = 'done' AND path = ANY($2::text[])
                    """, [.text(runKey), .text(Self.arrayLiteral(existing))]))
        }
    }

    func collect(runKey: String) throws -> [FinishedSharedStep] {
        try locked { connection in
            Self.finished(
                try connection.query(
                    """
                    UPDATE stepTask SET collected = true WHERE runKey = $1 AND status = 'done' AND NOT collected
                    RETURNING path, resultJSON, doneBy, leases
                    """, [.text(runKey)]))
        }
    }

    func lease(runKey: String, owner: String, limit: Int, seconds: Double, now: Double) throws -> [SharedStep] {
        guard limit > 0 else { return [] }
        return try locked { connection in
            let result = try connection.query(
                """
                WITH lapsed AS (
                    SELECT path, seq FROM stepTask WHERE runKey = $1 AND status = 'leased' AND leaseExpiresAt < $4
                    ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED),
                queued AS (
                    SELECT path, seq FROM stepTask WHERE runKey = $1 AND status = 'queued' ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED),
                picked AS (SELECT path FROM (SELECT * FROM lapsed UNION ALL SELECT * FROM queued) p ORDER BY seq LIMIT $5)
                UPDATE stepTask t SET status = 'leased', leaseOwner = $2, leaseExpiresAt = $3, leases = t.leases + 1
                FROM picked WHERE t.runKey = $1 AND t.path = picked.path
                RETURNING t.path, t.node, t.kind, t.itemIndex, t.agent, t.variablesJSON, t.leases, t.seq
                """, [.text(runKey), .text(owner), .text(String(now + seconds)), .text(String(now)), .text(String(limit))])
            return result.rows.compactMap { row -> (Int, SharedStep)? in
                guard case .text(let path)? = row[0], case .text(let node)? = row[1], case .text(let kind)? = row[2],
                    case .text(let agent)? = row[4], case .text(let variables)? = row[5]
                else { return nil }
                var step = SharedStep(path: path, node: node, kind: kind, itemIndex: Self.int(row[3]), agent: agent, variablesJSON: variables)
                step.leases = Self.int(row[6]) ?? 1
                return (Self.int(row[7]) ?? 0, step)
            }.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    func renew(runKey: String, paths: [String], owner: String, seconds: Double, now: Double) throws -> Int {
        guard !paths.isEmpty else { return 0 }
        return try locked { connection in
            try connection.query(
                """
                UPDATE stepTask SET leaseExpiresAt = $3 WHERE runKey = $1 AND leaseOwner = $2 AND status = 'leased' AND path = ANY($4::text[])
                """, [.text(runKey), .text(owner), .text(String(now + seconds)), .text(Self.arrayLiteral(paths))]
            ).affected
        }
    }

    func complete(runKey: String, owner: String, results: [(path: String, resultJSON: String)], now: Double) throws -> Set<String> {
        guard !results.isEmpty else { return [] }
        return try locked { connection in
            var done = Set<String>()
            for start in stride(from: 0, to: results.count, by: 200) {
                let chunk = results[start..<min(start + 200, results.count)]
                var parameters: [PostgresValue?] = [.text(runKey), .text(owner), .text(String(now))]
                var rows: [String] = []
                for result in chunk {
                    rows.append("($\(parameters.count + 1), $\(parameters.count + 2))")
                    parameters += [.text(result.path), .text(result.resultJSON)]
                }
                done.formUnion(
                    try connection.query(
                        """
                        UPDATE stepTask t SET status = 'done', resultJSON = v.result, doneBy = $2, doneAt = $3, leaseExpiresAt = NULL,
                        variablesJSON = '' FROM (VALUES \(rows.joined(separator: ", "))) AS v(path, result)
                        WHERE t.runKey = $1 AND t.path = v.path AND t.leaseOwner = $2 AND t.status = 'leased'
                        RETURNING t.path
                        """, parameters
                    ).strings(0))
            }
            return done
        }
    }

    func giveBack(runKey: String, paths: [String], owner: String) throws {
        guard !paths.isEmpty else { return }
        try locked { connection in
            try connection.query(
                """
                UPDATE stepTask SET leaseExpiresAt = 0 WHERE runKey = $1 AND leaseOwner = $2 AND status = 'leased' AND path = ANY($3::text[])
                """, [.text(runKey), .text(owner), .text(Self.arrayLiteral(paths))])
        }
    }

    func runsWithWork(now: Double, waitedSeconds: Double) throws -> [SharedRunInfo] {
        try locked { connection in
            Self.runs(
                try connection.query(
                    """
                    SELECT r.runKey, r.runID, r.workflowPath, r.configPath, r.status, r.budgetJSON FROM sharedRun r
                    WHERE r.status = 'running' AND EXISTS (SELECT 1 FROM stepTask t WHERE t.runKey = r.runKey
                        AND ((t.status = 'queued' AND t.queuedAt < $2) OR (t.status = 'leased' AND t.leaseExpiresAt < $1)))
                    ORDER BY r.updatedAt
                    """, [.text(String(now)), .text(String(now - waitedSeconds))]))
        }
    }

    func stepCounts(runKey: String) throws -> (steps: Int, done: Int, leases: Int) {
        try counts(runKey)[runKey] ?? (0, 0, 0)
    }

    func stepCounts() throws -> [String: (steps: Int, done: Int, leases: Int)] { try counts(nil) }

    /// Steps, done steps and leases taken, by run: one run's, or every run's in one query.
    private func counts(_ runKey: String?) throws -> [String: (steps: Int, done: Int, leases: Int)] {
        try locked { connection in
            let result = try connection.query(
                """
                SELECT runKey, COUNT(*), COUNT(*) FILTER (WHERE status = 'done'), COALESCE(SUM(leases), 0) FROM stepTask
                WHERE $1::text IS NULL OR runKey = $1 GROUP BY runKey
                """, [runKey.map { .text($0) }])
            var counts: [String: (steps: Int, done: Int, leases: Int)] = [:]
            for index in result.rows.indices {
                if case .text(let key)? = result.rows[index][0] {
                    counts[key] = (result.int(index, 1) ?? 0, result.int(index, 2) ?? 0, result.int(index, 3) ?? 0)
                }
            }
            return counts
        }
    }

    func doneBy(runKey: String) throws -> [String: Int] {
        try locked { connection in
            let result = try connection.query(
                "SELECT doneBy, COUNT(*) FROM stepTask WHERE runKey = $1 AND status = 'done' GROUP BY doneBy",
                [.text(runKey)])
            var counts: [String: Int] = [:]
            for index in result.rows.indices {
                if case .text(let owner)? = result.rows[index][0] { counts[owner] = result.int(index, 1) ?? 0 }
            }
            return counts
        }
    }

    // MARK: Rows

    private static func int(_ cell: PostgresResult.Cell?) -> Int? {
        if case .text(let text)? = cell { Int(text) } else { nil }
    }

    private static func finished(_ result: PostgresResult) -> [FinishedSharedStep] {
        result.rows.compactMap { row in
            guard case .text(let path)? = row[0], case .text(let json)? = row[1] else { return nil }
            var owner = ""
            if case .text(let text)? = row[2] { owner = text }
            return FinishedSharedStep(path: path, resultJSON: json, doneBy: owner, leases: int(row[3]) ?? 1)
        }
    }

    private static func runs(_ result: PostgresResult) -> [SharedRunInfo] {
        result.rows.compactMap { row in
            guard case .text(let key)? = row[0], case .text(let id)? = row[1], case .text(let workflow)? = row[2],
                case .text(let config)? = row[3], case .text(let status)? = row[4]
            else { return nil }
            var budget: String?
            if row.count > 5, case .text(let text)? = row[5] { budget = text }
            return SharedRunInfo(runKey: key, runID: id, workflowPath: workflow, configPath: config, status: status, budgetJSON: budget)
        }
    }

    /// A text[] literal: every element double-quoted, `"` and `\` escaped.
    static func arrayLiteral(_ items: [String]) -> String {
        "{"
            + items.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }
}
