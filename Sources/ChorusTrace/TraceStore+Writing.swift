import Foundation
import GRDB
import SQLiteStatement

/// How `TraceWriter` commits to SQLite: each batch planned (TraceBatchPlanner) and its
/// rows written in one transaction, through prepared statements bound by hand (RowInsert),
/// on the writer's thread only.
final class SQLiteWriteSession: TraceWriteSession {
    private let store: TraceStore
    private var planner = TraceBatchPlanner()
    /// The plan of the batch being committed, its capacity kept from batch to batch.
    private var writes: [TraceRowWrite] = []
    /// Set for a shared step's executor, as in `PostgresWriteSession`.
    private let staging: StagedSteps?

    init(store: TraceStore, staging: StagedSteps? = nil) {
        self.store = store
        self.staging = staging
    }

    func commit(_ batch: [TraceChange]) throws {
        let saved = planner.checkpoint
        do {
            try store.pool.write { db in
                let sql = try statements ?? Statements(db)
                statements = sql
                writes.removeAll(keepingCapacity: true)
                if let staging {
                    for record in planner.stage(batch, into: &writes) { staging.add(record) }
                } else {
                    try planner.plan(
                        batch, into: &writes, lastEvent: { try TraceChain.lastEvent($0, db) },
                        isStored: { hash in
                            sql.blobExists.bind(hash)
                            return try sql.blobExists.run()
                        })
                }
                for write in writes { try execute(write, sql, db) }
            }
        } catch {
            planner.restore(saved)
            throw error
        }
    }

    private func execute(_ write: TraceRowWrite, _ sql: Statements, _ db: Database) throws {
        var row: RowInsert
        switch write {
        case .run(let r, let seal):
            row = sql.run
            r.bind(sealSeq: seal, to: &row)
        case .step(let s, let seal):
            row = sql.step
            s.bind(sealSeq: seal, to: &row)
        case .modelCall(let c, let seal):
            row = sql.call
            c.bind(sealSeq: seal, to: &row)
        case .toolCall(let t, let seal):
            row = sql.tool
            t.bind(sealSeq: seal, to: &row)
        case .body(let body):
            row = sql.blob
            body.bind(to: &row)
        case .bodyPart(let body, let part):
            row = sql.blobPart
            row.add(body)
            row.add(part)
        case .event(let event):
            row = sql.event
            event.bind(to: &row)
        case .eval(let e):
            return try e.save(db)
        case .evalResult(let r):
            return try r.insert(db)
        }
        try row.run()
    }

    /// The writer's prepared statements, made on its connection at the first batch.
    private var statements: Statements?
    private struct Statements {
        let run, step, call, tool, event, blob, blobPart, blobExists: RowInsert

        init(_ db: Database) throws {
            func prepare(_ table: TraceTable) throws -> RowInsert { try RowInsert(db, sql: table.insertSQL(.sqlite)) }
            run = try prepare(.run)
            step = try prepare(.step)
            call = try prepare(.modelCall)
            tool = try prepare(.toolCall)
            event = try prepare(.event)
            blob = try prepare(.blob)
            blobPart = try prepare(.blobPart)
            blobExists = try RowInsert(db, sql: "SELECT 1 FROM blob WHERE hash = ?")
        }
    }
}
