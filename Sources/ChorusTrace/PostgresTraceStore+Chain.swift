import Foundation
import GRDB
import PostgresClient

/// The audit chain's reads on PostgreSQL, and what is chained outside the trace writer: a
/// run marked interrupted because its process is gone, as SQLite's store marks it.
extension PostgresTraceStore {
    /// Marks runs left `running` by a process on this host that is gone as interrupted, each
    /// sealed into its chain by a `run_interrupted` event, as `TraceStore.markAbandonedRuns`
    /// does. Unlike an embedded file, the database serves many hosts: a run that recorded no
    /// owner may be alive elsewhere, so it is left alone.
    public func markAbandonedRuns(except active: Set<String>) throws -> Int {
        try read { connection in
            let running = try connection.query("SELECT * FROM run WHERE status = 'running'").grdbRows().map { try RunRecord(row: $0) }
            var marked = 0
            for run in running where !active.contains(run.id) {
                guard let pid = run.ownerPID, TraceStore.processIsGone(pid, host: run.ownerHost) else { continue }
                if try Self.interrupt(run.id, .ownerGone, connection) { marked += 1 }
            }
            return marked
        }
    }

    /// Marks `runID` interrupted if it is still `running`: its row and the `run_interrupted`
    /// event that seals it (`TraceChain.interruption`), in one transaction holding the run's
    /// row, so two processes never both append. True when it was marked.
    package static func interrupt(_ runID: String, _ why: TraceChain.Interruption, _ connection: PostgresConnection) throws -> Bool {
        try connection.execute("BEGIN")
        do {
            guard
                let run = try connection.query("SELECT * FROM run WHERE id = $1 AND status = 'running' FOR UPDATE", [.text(runID)])
                    .grdbRows().first.map({ try RunRecord(row: $0) })
            else {
                try connection.execute("COMMIT")
                return false
            }
            let last = try lastEvent(runID, connection)
            let (marked, event) = TraceChain.interruption(
                of: run, after: last, unsealed: try sealedDigests(runID, connection)[last.seq + 1] ?? [], why,
                at: Date().timeIntervalSince1970)
            try connection.query(
                "UPDATE run SET status = $2, error = $3, sealSeq = $4 WHERE id = $1",
                [.text(runID), .text(marked.status.rawValue), marked.error.map { .text($0) }, .text(String(event.seq))])
            var row = PostgresRows(table: .event)
            event.bind(to: &row)
            try row.send(connection)
            try connection.execute("COMMIT")
            return true
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
    }

    /// The seq and hash of `runID`'s last event (0 and `origin` before the first).
    static func lastEvent(_ runID: String, _ connection: PostgresConnection) throws -> (seq: Int, hash: String) {
        let last = try connection.query("SELECT seq, hash FROM event WHERE runID = $1 ORDER BY seq DESC LIMIT 1", [.text(runID)])
        guard let row = last.rows.first, case .text(let seq)? = row[0], let number = Int(seq) else { return (0, TraceChain.origin) }
        if case .text(let hash)? = row[1] { return (number, hash) }
        return (number, TraceChain.origin)
    }

    /// The digests of `runID`'s sealed rows, by the seq of the event that seals them.
    static func sealedDigests(_ runID: String, _ connection: PostgresConnection) throws -> [Int: [String]] {
        var sealed: [Int: [String]] = [:]
        func collect(_ table: String, _ digest: (Row) throws -> String) throws {
            let rows = try connection.query(
                "SELECT * FROM \(table) WHERE \(table == "run" ? "id" : "runID") = $1 AND sealSeq IS NOT NULL",
                [.text(runID)]
            ).grdbRows()
            for row in rows { sealed[row["sealSeq"], default: []].append(try digest(row)) }
        }
        try collect("modelCall") { TraceChain.digest(try ModelCallRecord(row: $0)) }
        try collect("toolCall") { TraceChain.digest(try ToolCallRecord(row: $0)) }
        try collect("step") { TraceChain.digest(try StepRecord(row: $0)) }
        try collect("run") { TraceChain.digest(try RunRecord(row: $0)) }
        return sealed
    }
}
