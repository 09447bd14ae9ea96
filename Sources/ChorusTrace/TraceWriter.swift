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
    /// Insert a model call whose bodies are already stored (hashes filled in): a call a
    /// resumed run reuses from the run it resumes.
    case copiedModelCall(ModelCallRecord)
    /// Append to a run's event log; `seq` is assigned by the writer.
    case event(runID: String, kind: String, stepPath: String?, detailJSON: String?, at: Double)
}

/// Writes trace changes off the event loop: callers append without blocking, a thread of
/// its own commits everything pending in one transaction (group commit), and `flush()`
/// resumes once all that was appended before it is durable.
public final class TraceWriter: @unchecked Sendable {
    /// nil for a writer that records nothing (`chorus run --no-trace`).
    private let store: TraceStore?
    private let condition = NSCondition()
    private var pending: [TraceChange] = []
    private var appended = 0
    private var committed = 0
    private var waiters: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
    private var stopping = false
    private var stopped = false
    /// Per run: the next event's seq, the last event's hash, and the digests of the rows
    /// the next event will seal (TraceChain).
    private var chains: [String: Chain] = [:]
    private struct Chain {
        var nextSeq: Int
        var lastHash: String
        var unsealed: [String] = []
    }
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

    /// A writer that records nothing: for benchmarks that measure what tracing costs, and
    /// throwaway runs. Such a run cannot be replayed, resumed or audited.
    public init(discarding: Void) {
        store = nil
        stopped = true
        finished.signal()
    }

    /// Queues a change. Never blocks on the database.
    public func append(_ change: TraceChange) {
        guard store != nil else { return }
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
    /// is a delete, which would cascade to the run's steps and calls) through cached prepared
    /// statements (GRDB's record `save` runs an UPDATE then an INSERT per row; perf put it at
    /// a quarter of a 10,000-call run's CPU). Each finished row is sealed by the next event of
    /// its run, which chains to the one before (TraceChain).
    private func write(_ batch: [TraceChange]) throws {
        guard let store else { return }
        try store.pool.write { db in
            for change in batch {
                switch change {
                case .run(let r):
                    let seal = try sealSeq(r.id, final: TraceChain.isFinal(r.status), digest: { TraceChain.digest(r) }, db)
                    try db.cachedStatement(sql: """
                        INSERT INTO run (id, workflow, workflowPath, inputsJSON, status, startedAt, endedAt, outputJSON,
                        error, tokensIn, tokensOut, cost, parentRunID, relation, ownerPID, ownerHost, sealSeq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                        ON CONFLICT(id) DO UPDATE SET status = excluded.status, endedAt = excluded.endedAt,
                        outputJSON = excluded.outputJSON, error = excluded.error, tokensIn = excluded.tokensIn,
                        tokensOut = excluded.tokensOut, cost = excluded.cost, sealSeq = excluded.sealSeq
                        """).execute(arguments: [r.id, r.workflow, r.workflowPath, r.inputsJSON, r.status, r.startedAt, r.endedAt,
                                                 r.outputJSON, r.error, r.tokensIn, r.tokensOut, r.cost, r.parentRunID,
                                                 r.relation, r.ownerPID, r.ownerHost, seal])
                case .step(let s):
                    let seal = try sealSeq(s.runID, final: TraceChain.isFinal(s.status), digest: { TraceChain.digest(s) }, db)
                    try db.cachedStatement(sql: """
                        INSERT OR REPLACE INTO step (runID, path, node, kind, itemIndex, agent, model, status, startedAt, endedAt,
                        outputJSON, provenanceJSON, error, attempts, tokensIn, tokensOut, cost, sealSeq)
                        VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                        """).execute(arguments: [s.runID, s.path, s.node, s.kind, s.itemIndex, s.agent, s.model, s.status, s.startedAt,
                                                 s.endedAt, s.outputJSON, s.provenanceJSON, s.error, s.attempts, s.tokensIn, s.tokensOut,
                                                 s.cost, seal])
                case .modelCall(var c, let request, let response):
                    c.requestHash = TraceStore.hash(request)
                    c.responseHash = response.map(TraceStore.hash)
                    try storeRequest(request, hash: c.requestHash, db)
                    if let response, let hash = c.responseHash { try storeBlob(response, hash: hash, db) }
                    try insert(c, db)
                case .copiedModelCall(let c):
                    try insert(c, db)
                case .event(let runID, let kind, let stepPath, let detail, let at):
                    var chain = try self.chain(runID, db)
                    let hash = try TraceChain.appendEvent(db, runID: runID, seq: chain.nextSeq, previous: chain.lastHash, at: at, kind: kind,
                                                          stepPath: stepPath, detailJSON: detail, sealing: chain.unsealed)
                    chain.nextSeq += 1
                    chain.lastHash = hash
                    chain.unsealed.removeAll(keepingCapacity: true)
                    chains[runID] = chain
                }
            }
        }
    }

    private func insert(_ c: ModelCallRecord, _ db: Database) throws {
        let seal = try sealSeq(c.runID, final: true, digest: { TraceChain.digest(c) }, db)
        try db.cachedStatement(sql: """
            INSERT INTO modelCall (runID, stepPath, attempt, model, providerModel, url, requestHash, responseHash, httpStatus,
            error, tokensIn, tokensOut, cost, latencyMs, startedAt, sealSeq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """).execute(arguments: [c.runID, c.stepPath, c.attempt, c.model, c.providerModel, c.url, c.requestHash,
                                     c.responseHash, c.httpStatus, c.error, c.tokensIn, c.tokensOut, c.cost, c.latencyMs, c.startedAt, seal])
    }

    /// A request body, its long strings (a repeated system prompt) stored once as parts.
    private func storeRequest(_ bytes: [UInt8], hash: String, _ db: Database) throws {
        if try Int.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM blob WHERE hash = ?"), arguments: [hash]) != nil { return }
        guard let (skeleton, parts) = BodyParts.split(bytes) else { return try storeBlob(bytes, hash: hash, db) }
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob (hash, size, bytes, kind) VALUES (?, ?, ?, 1)")
            .execute(arguments: [hash, bytes.count, Data(skeleton)])
        for part in parts {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob (hash, size, bytes, kind) VALUES (?, ?, ?, 2)")
                .execute(arguments: [part.hash, part.bytes.count, Data(part.bytes)])
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO blobPart (body, part) VALUES (?, ?)").execute(arguments: [hash, part.hash])
        }
    }

    private func storeBlob(_ bytes: [UInt8], hash: String, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob (hash, size, bytes) VALUES (?, ?, ?)")
            .execute(arguments: [hash, bytes.count, Data(bytes)])
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
