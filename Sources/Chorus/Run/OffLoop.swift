import Dispatch
import Synchronization

/// Runs blocking work (SQLite reads, a lock taken under a 10 s busy timeout) on a
/// background thread, so the event loop — timers, signals, I/O — never waits for it.
enum OffLoop {
    /// `work`'s result. Cancelling the calling task returns at once with
    /// `CancellationError`: the work finishes on its thread and its result is dropped
    /// (a Ctrl-C during a resume blocked on a database lock is honoured now, not in 10 s).
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let slot = Slot<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard slot.install(continuation) else { return }
                DispatchQueue.global().async {
                    slot.finish(Result { try work() })
                }
            }
        } onCancel: {
            slot.finish(.failure(CancellationError()))
        }
    }

    /// `work`'s result, even when the calling task is cancelled meanwhile: for work whose
    /// effect the caller must know of (a lease taken in the database is the caller's to run
    /// or hand back; dropping the answer would strand it until the lease lapses).
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
