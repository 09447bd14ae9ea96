import Foundation
import GRDB

/// A change to the trace, applied by `TraceWriter` in arrival order.
public enum TraceChange: Sendable {
    /// Insert or replace a run.
    case run(RunRecord)
    /// Insert or replace a step (its identity is run id + path).
    case step(StepRecord)
    /// Insert a model call and its request/response bodies, stored once per content hash.
    /// The writer computes the hashes (SHA-256, off the event loop) and fills them in.
    case modelCall(ModelCallRecord, request: [UInt8], response: [UInt8]?)
    /// Append to a run's event log; `seq` is assigned by the writer.
    case event(runID: String, kind: String, stepPath: String?, detailJSON: String?, at: Double)
}

/// Writes trace changes off the event loop: callers append without blocking, a thread of
/// its own commits everything pending in one transaction (group commit), and `flush()`
/// resumes once all that was appended before it is durable.
public final class TraceWriter: @unchecked Sendable {
    private let store: TraceStore
    private let condition = NSCondition()
    private var pending: [TraceChange] = []
    private var appended = 0
    private var committed = 0
    private var waiters: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
    private var stopping = false
    private var stopped = false
    private var nextSeq: [String: Int] = [:]
    /// The first write failure, if any; later changes are dropped and `flush` still returns.
    public private(set) var failure: String?
    private let finished = DispatchSemaphore(value: 0)

    /// Starts a writer thread for `store`.
    public init(store: TraceStore) {
        self.store = store
        let thread = Thread { [self] in run() }
        thread.name = "chorus-trace-writer"
        thread.start()
    }

    /// Queues a change. Never blocks on the database.
    public func append(_ change: TraceChange) {
        condition.lock()
        pending.append(change)
        appended += 1
        condition.signal()
        condition.unlock()
    }

    /// Returns once every change appended before this call is committed (or has failed).
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if committed >= appended || stopped {
                condition.unlock()
                continuation.resume()
                return
            }
            waiters.append((appended, continuation))
            condition.unlock()
        }
    }

    /// Commits what is pending and stops the thread. Blocks the caller until done.
    public func close() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        finished.wait()
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            let done = stopping && batch.isEmpty
            condition.unlock()
            if done { break }
            if failure == nil {
                do { try write(batch) } catch { failure = "\(error)" }
            }
            condition.lock()
            committed += batch.count
            let ready = waiters.filter { $0.target <= committed }
            waiters.removeAll { $0.target <= committed }
            condition.unlock()
            for waiter in ready { waiter.continuation.resume() }
        }
        condition.lock()
        stopped = true
        let remaining = waiters
        waiters.removeAll()
        condition.unlock()
        for waiter in remaining { waiter.continuation.resume() }
        finished.signal()
    }

    /// Applies a batch in one transaction (never INSERT OR REPLACE on a run: the replace
    /// is a delete, which would cascade to the run's steps and calls) through cached prepared statements (GRDB's
    /// record `save` runs an UPDATE then an INSERT per row; perf put it at a quarter of a
    /// 10,000-call run's CPU).
    private func write(_ batch: [TraceChange]) throws {
        try store.pool.write { db in
            for change in batch {
                switch change {
                case .run(let r):
                    try db.cachedStatement(sql: """
                        INSERT INTO run (id, workflow, workflowPath, inputsJSON, status, startedAt, endedAt, outputJSON,
                        error, tokensIn, tokensOut, cost, parentRunID, ownerPID, ownerHost) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                        ON CONFLICT(id) DO UPDATE SET status = excluded.status, endedAt = excluded.endedAt,
                        outputJSON = excluded.outputJSON, error = excluded.error, tokensIn = excluded.tokensIn,
                        tokensOut = excluded.tokensOut, cost = excluded.cost
                        """).execute(arguments: [r.id, r.workflow, r.workflowPath, r.inputsJSON, r.status, r.startedAt, r.endedAt,
                                                 r.outputJSON, r.error, r.tokensIn, r.tokensOut, r.cost, r.parentRunID,
                                                 r.ownerPID, r.ownerHost])
                case .step(let s):
                    try db.cachedStatement(sql: """
                        INSERT OR REPLACE INTO step (runID, path, node, kind, itemIndex, agent, model, status, startedAt, endedAt,
                        outputJSON, provenanceJSON, error, attempts, tokensIn, tokensOut, cost) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                        """).execute(arguments: [s.runID, s.path, s.node, s.kind, s.itemIndex, s.agent, s.model, s.status, s.startedAt,
                                                 s.endedAt, s.outputJSON, s.provenanceJSON, s.error, s.attempts, s.tokensIn, s.tokensOut, s.cost])
                case .modelCall(var c, let request, let response):
                    c.requestHash = TraceStore.hash(request)
                    c.responseHash = response.map(TraceStore.hash)
                    try storeBlob(request, hash: c.requestHash, db)
                    if let response, let hash = c.responseHash { try storeBlob(response, hash: hash, db) }
                    try db.cachedStatement(sql: """
                        INSERT INTO modelCall (runID, stepPath, attempt, model, providerModel, url, requestHash, responseHash, httpStatus,
                        error, tokensIn, tokensOut, cost, latencyMs, startedAt) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                        """).execute(arguments: [c.runID, c.stepPath, c.attempt, c.model, c.providerModel, c.url, c.requestHash,
                                                 c.responseHash, c.httpStatus, c.error, c.tokensIn, c.tokensOut, c.cost, c.latencyMs, c.startedAt])
                case .event(let runID, let kind, let stepPath, let detail, let at):
                    let seq = try nextEventSeq(runID, db)
                    try db.cachedStatement(sql: "INSERT INTO event (runID, seq, at, kind, stepPath, detailJSON) VALUES (?,?,?,?,?,?)")
                        .execute(arguments: [runID, seq, at, kind, stepPath, detail])
                }
            }
        }
    }

    private func storeBlob(_ bytes: [UInt8], hash: String, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob (hash, size, bytes) VALUES (?, ?, ?)")
            .execute(arguments: [hash, bytes.count, Data(bytes)])
    }

    private func nextEventSeq(_ runID: String, _ db: Database) throws -> Int {
        let seq: Int
        if let known = nextSeq[runID] { seq = known } else {
            seq = (try Int.fetchOne(db, sql: "SELECT MAX(seq) FROM event WHERE runID = ?", arguments: [runID]) ?? 0) + 1
        }
        nextSeq[runID] = seq + 1
        return seq
    }
}
