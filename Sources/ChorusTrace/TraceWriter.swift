import Foundation
import GRDB
import SQLiteStatement

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
    /// Insert a tool call with its input and output, stored once per content hash.
    case toolCall(ToolCallRecord, input: [UInt8], output: [UInt8])
    /// Insert a tool call whose input and output are already stored (a resumed run's reuse).
    case copiedToolCall(ToolCallRecord)
    /// Insert or update an eval.
    case eval(EvalRecord)
    /// Insert (or replace) one case's result under one variant.
    case evalResult(EvalResultRecord)
    /// Append to a run's event log; `seq` is assigned by the writer.
    case event(runID: String, kind: String, stepPath: String?, detailJSON: String?, at: Double)

    /// An event of `kind` (what every writer in Chorus appends; `kind` as text is for copies).
    public static func event(runID: String, _ kind: EventKind, stepPath: String?, detailJSON: String?, at: Double) -> TraceChange {
        .event(runID: runID, kind: kind.rawValue, stepPath: stepPath, detailJSON: detailJSON, at: at)
    }
}

/// Writes trace changes off the event loop: callers append without blocking, a thread of
/// its own commits everything pending in one transaction (group commit), and `flush()`
/// resumes once all that was appended before it is durable.
public final class TraceWriter: @unchecked Sendable {
    /// nil for a writer that records nothing (`chorus run --no-trace`).
    private let store: (any TraceBackend)?
    /// The database the writer commits to (nil when it discards).
    public var backend: (any TraceBackend)? { store }
    /// The backend's write state (prepared statements, audit chains), made on the writer thread.
    private var session: (any TraceWriteSession)?
    private let condition = NSCondition()
    private var pending: [TraceChange] = []
    /// How long a change nobody flushes may wait for others to share its transaction: what
    /// another process watching the trace (`runs watch`) may lag by.
    public static let defaultCommitDelay: TimeInterval = 0.01
    private var commitDelay = TraceWriter.defaultCommitDelay
    /// Changes that commit without waiting for a flush or the delay.
    static let batchLimit = 4096
    private var appended = 0
    private var committed = 0
    private var waiters: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
    private var stopping = false
    private var stopped = false
    /// The first write failure, if any (a full disk, a read-only file); later changes are
    /// dropped and `flush` still returns. Readable from any thread.
    public var failure: String? {
        condition.lock()
        defer { condition.unlock() }
        return failureText
    }
    private var failureText: String?
    /// Whether the first write failure was a full disk (SQLITE_FULL, or ENOSPC from
    /// PostgreSQL's server), decided here where the error's type is known.
    public var failedForSpace: Bool {
        condition.lock()
        defer { condition.unlock() }
        return diskFull
    }
    private var diskFull = false
    /// Finished steps (succeeded, not a node's result row) in batches that committed: what
    /// a run that stops on a write failure says it kept.
    public var committedSteps: Int {
        condition.lock()
        defer { condition.unlock() }
        return finishedSteps
    }
    private var finishedSteps = 0
    private let finished = DispatchSemaphore(value: 0)
    /// Told each batch once it is committed, on the writer thread (it must return at once:
    /// the live span exporter only queues what it is given).
    private let observer: (@Sendable ([TraceChange]) -> Void)?

    /// Makes the write session on the writer thread (nil: records nothing).
    private let makeSession: (@Sendable () throws -> any TraceWriteSession)?

    /// Starts a writer thread for `store`; `observer` sees every committed batch.
    public init(
        store: any TraceBackend, commitDelay: TimeInterval = TraceWriter.defaultCommitDelay,
        observer: (@Sendable ([TraceChange]) -> Void)? = nil
    ) {
        self.store = store
        self.observer = observer
        self.commitDelay = commitDelay
        makeSession = { try store.makeWriteSession() }
        let thread = Thread { [self] in run() }
        thread.name = "chorus-trace-writer"
        thread.start()
    }

    /// A writer committing through sessions `makeSession` returns: a shared step's
    /// executor stages its records for the run's coordinator (`makeWriteSession(staging:)`).
    public init(backend: any TraceBackend, session makeSession: @escaping @Sendable () throws -> any TraceWriteSession) {
        store = backend
        observer = nil
        self.makeSession = makeSession
        let thread = Thread { [self] in run() }
        thread.name = "chorus-trace-writer"
        thread.start()
    }

    /// A writer that records nothing: for benchmarks that measure what tracing costs, and
    /// throwaway runs. Such a run cannot be replayed, resumed or audited.
    public init(discarding: Void) {
        store = nil
        observer = nil
        makeSession = nil
        stopped = true
        finished.signal()
    }

    /// Queues a change. Never blocks on the database.
    public func append(_ change: TraceChange) {
        guard makeSession != nil else { return }
        condition.lock()
        pending.append(change)
        appended += 1
        // The writer needs waking only to start a batch's delay or when a batch is full; a
        // signal per change was a futex wake-up per change while the writer waited.
        if pending.count == 1 || pending.count == Self.batchLimit { condition.signal() }
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
            condition.signal()
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
            // Group commit: a batch commits when someone waits for it (a finished step's
            // flush), when it is full, or `commitDelay` after its first change, whichever
            // comes first. Committing on every append split one step's records (started,
            // its call, finished) over two or three transactions, and the step's flush
            // waited for them in turn: on a 20-step chain that was ~0.6 ms a hop.
            let deadline = Date(timeIntervalSinceNow: commitDelay)
            while waiters.isEmpty && !stopping && pending.count < Self.batchLimit {
                if !condition.wait(until: deadline) { break }
            }
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            let done = stopping && batch.isEmpty
            condition.unlock()
            if done { break }
            if failure == nil {
                do {
                    if let makeSession {
                        let session = try self.session ?? makeSession()
                        self.session = session
                        try session.commit(batch)
                        var steps = 0
                        for change in batch {
                            if case .step(let step) = change, step.status == .succeeded, !step.isNodeResult { steps += 1 }
                        }
                        condition.lock()
                        finishedSteps += steps
                        condition.unlock()
                    }
                    observer?(batch)
                } catch {
                    condition.lock()
                    failureText = "\(error)"
                    diskFull = (error as? DatabaseError)?.resultCode == .SQLITE_FULL || "\(error)".contains("No space left on device")
                    condition.unlock()
                }
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
}
