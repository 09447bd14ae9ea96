import ChorusIO

/// A counting semaphore whose waiters queue in FIFO order on the event loop; used for
/// the global `--max-parallel` and each fan-out's `max_parallel`.
package actor LoopSemaphore: LoopWaiting {
    nonisolated let loop: EventLoop
    package nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    private var available: Int
    /// Waiting for a permit: true when given one, false when cancelled.
    var waiters = WaiterQueue<Void, Bool>()

    /// A semaphore with `permits` permits.
    package init(permits: Int, loop: EventLoop) {
        available = max(1, permits)
        self.loop = loop
    }

    /// Waits for a permit. Throws `CancellationError` if the task is cancelled first.
    package func acquire() async throws {
        // Once per step: a free permit is taken without a continuation or a job on the loop.
        if decideAtOnce(()) == true { return }
        guard await wait((), cancelled: false) else { throw CancellationError() }
    }

    func admission(_ request: Void, first: Bool) -> Admission<Bool> {
        guard first, available > 0 else { return .blocks }
        available -= 1
        return .decided(true)
    }

    /// Returns a permit, waking the longest waiter.
    package func release() {
        available += 1
        wakeWaiters()
    }
}
