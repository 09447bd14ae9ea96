import CUV

/// A one-shot libuv timer: fires its callback once on the loop thread, or is cancelled.
///
/// The timer owns its `uv_timer_t`; the context handed to libuv is retained in one place
/// (`start`) and released in one place (the close callback), so no callback can see freed memory.
public final class Timer: @unchecked Sendable {  // loop-confined: every method checks the thread
    private let loop: EventLoop
    private var handle: UnsafeMutablePointer<uv_timer_t>?
    private var callback: (() -> Void)?

    private init(loop: EventLoop, callback: @escaping () -> Void) {
        self.loop = loop
        self.callback = callback
    }

    /// Starts a timer that calls `callback` on the loop thread after `delay`.
    /// Call on the loop thread; keep the result only if you may need to cancel it.
    @discardableResult
    public static func schedule(
        on loop: EventLoop, after delay: Duration,
        _ callback: @escaping () -> Void
    ) -> Timer {
        loop.preconditionInEventLoop()
        let timer = Timer(loop: loop, callback: callback)
        let handle = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        // Neither call can fail here: uv_timer_init only fills in the handle (libuv
        // src/timer.c returns 0 unconditionally), and uv_timer_start refuses only a NULL
        // callback or a closing handle. Checked all the same: were libuv ever to refuse,
        // the callback runs on the next loop turn rather than never.
        let initCode = uv_timer_init(loop.uvLoop, handle)
        guard initCode == 0 else {
            handle.deallocate()
            loop.execute { [timer] in timer.fireWithoutHandle() }
            return timer
        }
        handle.pointee.data = Unmanaged.passRetained(timer).toOpaque()
        timer.handle = handle
        let startCode = uv_timer_start(
            handle,
            { handle in
                let timer = Unmanaged<Timer>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
                let callback = timer.callback
                timer.close()
                callback?()
            }, delay.milliseconds, 0)
        if startCode != 0 {
            timer.close(keepingCallback: true)
            loop.execute { [timer] in timer.fireWithoutHandle() }
        }
        return timer
    }

    /// Stops the timer so its callback never runs. Call on the loop thread; idempotent.
    public func cancel() {
        loop.preconditionInEventLoop()
        close()
    }

    /// Runs the callback of a timer libuv refused to create, unless cancelled meanwhile.
    private func fireWithoutHandle() {
        let callback = self.callback
        self.callback = nil
        callback?()
    }

    private func close(keepingCallback: Bool = false) {
        guard let handle else { return }
        self.handle = nil
        if !keepingCallback { callback = nil }
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            Unmanaged<Timer>.fromOpaque(handle!.pointee.data).release()
            handle!.deallocate()
        }
    }
}

extension EventLoop {
    /// Suspends the calling task for `duration` using a libuv timer.
    /// Throws `CancellationError` if the task is cancelled first.
    public func sleep(for duration: Duration) async throws {
        let state = SleepState()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                execute { [self] in
                    state.start(loop: self, after: duration, continuation: continuation)
                }
            }
        } onCancel: {
            execute { state.cancel() }
        }
    }
}

/// Loop-confined bookkeeping for one `sleep`: which of fire / cancel came first.
private final class SleepState: @unchecked Sendable {
    private var continuation: CheckedContinuation<Void, Error>?
    private var timer: Timer?
    private var cancelled = false

    func start(loop: EventLoop, after duration: Duration, continuation: CheckedContinuation<Void, Error>) {
        if cancelled {
            continuation.resume(throwing: CancellationError())
            return
        }
        self.continuation = continuation
        timer = Timer.schedule(on: loop, after: duration) { [self] in
            timer = nil
            self.continuation?.resume()
            self.continuation = nil
        }
    }

    func cancel() {
        cancelled = true
        timer?.cancel()
        timer = nil
        continuation?.resume(throwing: CancellationError())
        continuation = nil
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a timer never fires early; never negative.
    public var milliseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let ms = UInt64(seconds) * 1000 + UInt64((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        return ms
    }
}
