import Foundation
import Dispatch
import Synchronization

/// Runs blocking work (SQLite reads, a lock taken under a 10 s busy timeout) on a
/// background thread, so the event loop — timers, signals, I/O — never waits for it.
enum OffLoop {
    /// `work`'s result. Cancelling the calling task returns at once with
    /// `CancellationError`: the work finishes on its thread and its result is dropped
    /// (a Ctrl-C during a resume blocked on a database lock is honoured now, not in 10 s).
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await run(work, on: { DispatchQueue.global().async(execute: $0) })
    }

    /// `work` — CPU work: a regex, a scan — on `ComputePool`'s threads rather than the
    /// dispatch pool, so a hostile pattern holding a thread for its whole time budget never
    /// delays a lease renewal or a budget settle queued behind it. Cancels as `run` does.
    static func compute<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await run(work, on: ComputePool.shared.submit)
    }

    private static func run<T: Sendable>(
        _ work: @escaping @Sendable () throws -> T,
        on start: (@escaping @Sendable () -> Void) -> Void
    ) async throws -> T {
        let slot = Slot<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard slot.install(continuation) else { return }
                start { slot.finish(Result { try work() }) }
            }
        } onCancel: {
            slot.finish(.failure(CancellationError()))
        }
    }

    /// `work`'s result; when the calling task is cancelled first, the caller returns at once
    /// as with `run`, and `undo` is applied to the result the abandoned work produced,
    /// whenever it comes. For work whose effect outlives the call: a lease, a hold or a slot
    /// taken in the database and then forgotten would stay taken until it lapsed.
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T, undo: @escaping @Sendable (T) -> Void) async throws -> T {
        let box = Mutex<(value: T?, abandoned: Bool)>((nil, false))
        do {
            return try await run {
                let value = try work()
                let abandoned = box.withLock { box -> Bool in
                    if box.abandoned { return true }
                    box.value = value
                    return false
                }
                if abandoned { undo(value) }
                return value
            }
        } catch is CancellationError {
            // Either the work has finished (its value is here: undo it) or it will see the flag.
            if let finished = box.withLock({ box -> T? in
                box.abandoned = true; return box.value
            }) {
                DispatchQueue.global().async { undo(finished) }
            }
            throw CancellationError()
        }
    }

    /// `work`'s result, waited for even when the calling task is cancelled: for a short
    /// write that must land (what a call spent; steps handed back as a process stops). Its
    /// thread is a dispatch worker's, not one of the few the Swift runtime schedules tasks on.
    static func runToCompletion<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Resumes the continuation exactly once, whichever comes first: the result or the cancellation.
    private final class Slot<T: Sendable>: Sendable {
        private let state = Mutex<(continuation: CheckedContinuation<T, Error>?, early: Result<T, Error>?, done: Bool)>((nil, nil, false))

        /// False when the cancellation came first (the continuation was resumed here).
        func install(_ continuation: CheckedContinuation<T, Error>) -> Bool {
            let early: Result<T, Error>? = state.withLock { state in
                if let early = state.early { state.done = true; return early }
                state.continuation = continuation
                return nil
            }
            if let early { continuation.resume(with: early); return false }
            return true
        }

        func finish(_ result: Result<T, Error>) {
            let continuation: CheckedContinuation<T, Error>? = state.withLock { state in
                guard !state.done else { return nil }
                guard let continuation = state.continuation else {
                    if state.early == nil { state.early = result }
                    return nil
                }
                state.done = true
                state.continuation = nil
                return continuation
            }
            continuation?.resume(with: result)
        }
    }
}

/// A few threads of Chorus's own for CPU work (one per core, at least two), fed first come
/// first served. Apart from the dispatch pool, whose threads the database work uses.
final class ComputePool: @unchecked Sendable {  // state behind `condition`
    static let shared = ComputePool(threads: max(2, ProcessInfo.processInfo.activeProcessorCount))
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []

    init(threads: Int) {
        for index in 0..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "chorus-compute-\(index)"
            thread.start()
        }
    }

    /// Queues `job`; one of the pool's threads runs it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
