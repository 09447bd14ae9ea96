import ChorusIO

/// A counting semaphore whose waiters queue in FIFO order on the event loop; used for
/// the global `--max-parallel` and each fan-out's `max_parallel`.
public actor LoopSemaphore {
    nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    private var available: Int
    private var waiters: [(id: Int, continuation: CheckedContinuation<Void, Error>)] = []
    private var nextID = 0

    /// A semaphore with `permits` permits.
    public init(permits: Int, loop: EventLoop) {
        available = max(1, permits)
        self.loop = loop
    }

    /// Waits for a permit. Throws `CancellationError` if the task is cancelled first.
    public func acquire() async throws {
        // The common case, decided and acted on in one synchronous step: no continuation,
        // no extra job on the loop (this runs once per step, on the hot path).
        if available > 0 && waiters.isEmpty && !Task.isCancelled {
            available -= 1
            return
        }
        nextID += 1
        let id = nextID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                // Checked and queued in one step: a release between a check made earlier and
                // the wait would find no waiter and leave this one asleep (see BudgetLedger).
                if Task.isCancelled { continuation.resume(throwing: CancellationError()) }
                else if available > 0 && waiters.isEmpty { available -= 1; continuation.resume() }
                else { waiters.append((id, continuation)) }
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    private func cancel(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// Returns a permit, waking the longest waiter.
    public func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().continuation.resume() }
    }
}
