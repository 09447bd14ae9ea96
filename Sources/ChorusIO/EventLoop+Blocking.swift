import Dispatch

extension EventLoop {
    /// Runs `body` on the loop thread and waits for its result. For set-up code called
    /// from outside the loop; on the loop thread it runs `body` directly.
    public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        if inEventLoop { return body() }
        let box = ResultBox<T>()
        execute {
            box.value = body()
            box.done.signal()
        }
        box.done.wait()
        return box.value!
    }

    /// Runs the async `body` as a task on the loop and blocks the calling thread until it
    /// returns: the bridge from a command-line entry point to the loop. `started` gets the
    /// task at once, so that a signal handler can cancel it. Never call it on the loop thread.
    public func blockingWait<T: Sendable>(
        _ body: @escaping @Sendable () async -> T,
        started: (Task<Void, Never>) -> Void = { _ in }
    ) -> T {
        precondition(!inEventLoop, "blockingWait on the loop thread would deadlock")
        let box = ResultBox<T>()
        let task = Task(executorPreference: self) {
            box.value = await body()
            box.done.signal()
        }
        started(task)
        box.done.wait()
        return box.value!
    }
}

/// A value handed from the loop thread to a waiting thread; the semaphore orders the
/// write before the read.
private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
    let done = DispatchSemaphore(value: 0)
}
