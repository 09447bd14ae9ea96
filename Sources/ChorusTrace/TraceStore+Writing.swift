import Foundation
import GRDB
import SQLiteStatement

/// How `TraceWriter` commits to SQLite: one transaction per batch, through prepared
/// statements bound by hand (RowInsert), on the writer's thread only.
final class SQLiteWriteSession: TraceWriteSession {
    private let store: TraceStore
    /// Per run: the next event's seq, the last event's hash, and the digests of the rows
    /// the next event will seal (TraceChain).
    private var chains: [String: Chain] = [:]
    private struct Chain {
        var nextSeq: Int
        var lastHash: String
        var unsealed: [String] = []
    }

    init(store: TraceStore) {
        self.store = store
    }

    /// Applies a batch in one transaction, through prepared statements bound by hand
    /// (RowInsert). Never INSERT OR REPLACE on a run: the replace is a delete, which would
    /// cascade to the run's steps and calls; steps are upserted too, which rewrites the row
    /// in place. A step's `running` row is skipped when its final row is in the same batch
    /// (a busy writer's batches hold thousands of both). Each finished row is sealed by the
    /// next event of its run, which chains to the one before (TraceChain).
    func commit(_ batch: [TraceChange]) throws {
        var finishing = Set<StepKey>()
        for change in batch {
            if case .step(let s) = change, TraceChain.isFinal(s.status) { finishing.insert(StepKey(runID: s.runID, path: s.path)) }
        }
        try store.pool.write { db in
            let sql = try statements ?? Statements(db)
            statements = sql
            for change in batch {
                switch change {
                case .run(let r):
                    let seal = try sealSeq(r.id, final: r.status != .running, digest: { TraceChain.digest(r) }, db)
                    let i = sql.run
                    i.bind(r.id); i.bind(r.workflow); i.bind(r.workflowPath); i.bind(r.inputsJSON); i.bind(r.status.rawValue)
                    i.bind(r.startedAt); i.bind(r.endedAt); i.bind(r.outputJSON); i.bind(r.error); i.bind(r.tokensIn)
                    i.bind(r.tokensOut); i.bind(r.cost); i.bind(r.parentRunID); i.bind(r.relation); i.bind(r.ownerPID.map(Int.init))
                    i.bind(r.ownerHost); i.bind(r.configPath); i.bind(seal)
                    try i.run()
                case .step(let s):
                    let final = TraceChain.isFinal(s.status)
                    if !final && finishing.contains(StepKey(runID: s.runID, path: s.path)) { continue }
                    let seal = try sealSeq(s.runID, final: final, digest: { TraceChain.digest(s) }, db)
                    let i = sql.step
                    i.bind(s.runID); i.bind(s.path); i.bind(s.node); i.bind(s.kind); i.bind(s.itemIndex); i.bind(s.agent)
                    i.bind(s.model); i.bind(s.status.rawValue); i.bind(s.startedAt); i.bind(s.endedAt); i.bind(s.outputJSON)
                    i.bind(s.provenanceJSON); i.bind(s.error); i.bind(s.attempts); i.bind(s.tokensIn); i.bind(s.tokensOut)
                    i.bind(s.cost); i.bind(seal)
                    try i.run()
                case .modelCall(var c, let request, let response):
                    c.requestHash = TraceStore.hash(request)
                    c.responseHash = response.map(TraceStore.hash)
                    try storeRequest(request, hash: c.requestHash, sql, db)
                    if let response, let hash = c.responseHash { try storeBlob(response, hash: hash, kind: 0, sql) }
                    try insert(c, sql, db)
                case .copiedModelCall(let c):
                    try insert(c, sql, db)
                case .toolCall(var t, let input, let output):
                    t.inputHash = TraceStore.hash(input)
                    t.outputHash = TraceStore.hash(output)
                    try storeBlob(input, hash: t.inputHash, kind: 0, sql)
                    try storeBlob(output, hash: t.outputHash, kind: 0, sql)
                    try insert(t, sql, db)
                case .copiedToolCall(let t):
                    try insert(t, sql, db)
                case .eval(let e):
                    try e.save(db)
                case .evalResult(let r):
                    try r.insert(db)
                case .event(let runID, let kind, let stepPath, let detail, let at):
                    var chain = try self.chain(runID, db)
                    let hash = try TraceChain.appendEvent(db, runID: runID, seq: chain.nextSeq, previous: chain.lastHash, at: at, kind: kind,
                                                          stepPath: stepPath, detailJSON: detail, sealing: chain.unsealed, insert: sql.event)
                    chain.nextSeq += 1
                    chain.lastHash = hash
                    chain.unsealed.removeAll(keepingCapacity: true)
                    chains[runID] = chain
                }
            }
        }
    }

    private struct StepKey: Hashable {
        let runID: String
        let path: String
    }

    /// The writer's prepared statements, made on its connection at the first batch.
    private var statements: Statements?
    private struct Statements {
        let run, step, call, tool, event, blobExists, blob, blobPart: RowInsert

        init(_ db: Database) throws {
            run = try RowInsert(db, sql: """
                INSERT INTO run (id, workflow, workflowPath, inputsJSON, status, startedAt, endedAt, outputJSON,
                error, tokensIn, tokensOut, cost, parentRunID, relation, ownerPID, ownerHost, configPath, sealSeq)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT(id) DO UPDATE SET status = excluded.status, endedAt = excluded.endedAt,
                outputJSON = excluded.outputJSON, error = excluded.error, tokensIn = excluded.tokensIn,
                tokensOut = excluded.tokensOut, cost = excluded.cost, sealSeq = excluded.sealSeq
                """)
            step = try RowInsert(db, sql: """
                INSERT INTO step (runID, path, node, kind, itemIndex, agent, model, status, startedAt, endedAt,
                outputJSON, provenanceJSON, error, attempts, tokensIn, tokensOut, cost, sealSeq)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT(runID, path) DO UPDATE SET node = excluded.node, kind = excluded.kind, itemIndex = excluded.itemIndex,
                agent = excluded.agent, model = excluded.model, status = excluded.status, startedAt = excluded.startedAt,
                endedAt = excluded.endedAt, outputJSON = excluded.outputJSON, provenanceJSON = excluded.provenanceJSON,
                error = excluded.error, attempts = excluded.attempts, tokensIn = excluded.tokensIn, tokensOut = excluded.tokensOut,
                cost = excluded.cost, sealSeq = excluded.sealSeq
                """)
            call = try RowInsert(db, sql: """
                INSERT INTO modelCall (runID, stepPath, attempt, model, providerModel, url, requestHash, responseHash, httpStatus,
                error, tokensIn, tokensOut, cost, latencyMs, startedAt, finishReason, firstTokenMs, outcome, sealSeq)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """)
            tool = try RowInsert(db, sql: """
                INSERT INTO toolCall (runID, stepPath, attempt, callIndex, callID, tool, kind, inputHash, outputHash, isError,
                exitStatus, error, latencyMs, startedAt, sealSeq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """)
            event = try RowInsert(db, sql: TraceChain.insertSQL)
            blobExists = try RowInsert(db, sql: "SELECT 1 FROM blob WHERE hash = ?")
            blob = try RowInsert(db, sql: "INSERT OR IGNORE INTO blob (hash, size, bytes, kind) VALUES (?, ?, ?, ?)")
            blobPart = try RowInsert(db, sql: "INSERT OR IGNORE INTO blobPart (body, part) VALUES (?, ?)")
        }
    }

    private func insert(_ c: ModelCallRecord, _ sql: Statements, _ db: Database) throws {
        let seal = try sealSeq(c.runID, final: true, digest: { TraceChain.digest(c) }, db)
        let i = sql.call
        i.bind(c.runID); i.bind(c.stepPath); i.bind(c.attempt); i.bind(c.model); i.bind(c.providerModel); i.bind(c.url)
        i.bind(c.requestHash); i.bind(c.responseHash); i.bind(c.httpStatus); i.bind(c.error); i.bind(c.tokensIn)
        i.bind(c.tokensOut); i.bind(c.cost); i.bind(c.latencyMs); i.bind(c.startedAt); i.bind(c.finishReason)
        i.bind(c.firstTokenMs); i.bind(c.outcome?.rawValue); i.bind(seal)
        try i.run()
    }

    private func insert(_ t: ToolCallRecord, _ sql: Statements, _ db: Database) throws {
        let seal = try sealSeq(t.runID, final: true, digest: { TraceChain.digest(t) }, db)
        let i = sql.tool
        i.bind(t.runID); i.bind(t.stepPath); i.bind(t.attempt); i.bind(t.callIndex); i.bind(t.callID); i.bind(t.tool); i.bind(t.kind)
        i.bind(t.inputHash); i.bind(t.outputHash); i.bind(t.isError ? 1 : 0); i.bind(t.exitStatus); i.bind(t.error)
        i.bind(t.latencyMs); i.bind(t.startedAt); i.bind(seal)
        try i.run()
    }

    /// A request body, its long strings (a repeated system prompt) stored once as parts.
    private func storeRequest(_ bytes: [UInt8], hash: String, _ sql: Statements, _ db: Database) throws {
        guard BodyParts.mayHaveParts(bytes) else { return try storeBlob(bytes, hash: hash, kind: 0, sql) }
        sql.blobExists.bind(hash)
        if try sql.blobExists.run() { return }
        guard let (skeleton, parts) = BodyParts.split(bytes) else { return try storeBlob(bytes, hash: hash, kind: 0, sql) }
        sql.blob.bind(hash); sql.blob.bind(bytes.count); sql.blob.bind(bytes: skeleton); sql.blob.bind(1)
        try sql.blob.run()
        for part in parts {
            try storeBlob(part.bytes, hash: part.hash, kind: 2, sql)
            sql.blobPart.bind(hash); sql.blobPart.bind(part.hash)
            try sql.blobPart.run()
        }
    }

    private func storeBlob(_ bytes: [UInt8], hash: String, kind: Int, _ sql: Statements) throws {
        sql.blob.bind(hash); sql.blob.bind(bytes.count); sql.blob.bind(bytes: bytes); sql.blob.bind(kind)
        try sql.blob.run()
    }

    /// The seq of the event that will seal a final row of `runID` (nil for a row still in
    /// progress), noting the row's digest for that event.
    private func sealSeq(_ runID: String, final: Bool, digest: () -> String, _ db: Database) throws -> Int? {
        guard final else { return nil }
        var chain = try self.chain(runID, db)
        chain.unsealed.append(digest())
        chains[runID] = chain
        return chain.nextSeq
    }

    private func chain(_ runID: String, _ db: Database) throws -> Chain {
        if let known = chains[runID] { return known }
        let last = try TraceChain.lastEvent(runID, db)
        return Chain(nextSeq: last.seq + 1, lastHash: last.hash)
    }
}
