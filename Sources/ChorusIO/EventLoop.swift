import CUV
import Foundation

/// A libuv event loop running on its own thread, usable as a Swift executor.
///
/// Every job enqueued here (by an actor whose `unownedExecutor` is this loop, or by a
/// task created with `Task(executorPreference: loop)`) runs on the loop thread, so
/// scheduler state, curl callbacks and socket handles are touched by one thread only.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    /// Work waiting for the loop thread: an executor job or a plain closure.
    private enum Work {
        case job(UnownedJob)
        case closure(() -> Void)
    }

    /// The libuv loop. Touch it only from the loop thread (see `preconditionInEventLoop`).
    public let uvLoop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let lock = NSLock()
    private var pending: [Work] = []
    private var spare: [Work] = []
    private var isShutDown = false
    private var loopThread: pthread_t?
    private let started = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// SIGPIPE ignored, once per process, unless the process has a disposition of its own
    /// for it. libuv writes to pipes and sockets with plain write(2): a tool that exits
    /// without reading its input, an MCP server that died, a client that hung up would
    /// otherwise kill the whole process (an application embedding Chorus, or the test
    /// process: a full test run died so) where the write should fail with EPIPE, which each
    /// caller handles. `chorus` ignores it in main too (SignalWatcher.prepareProcess); a
    /// child libuv spawns gets the default back.
    private static let ignoringSIGPIPE: Void = {
        var current = sigaction()
        guard sigaction(SIGPIPE, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil else { return }  // nil: SIG_DFL
        signal(SIGPIPE, SIG_IGN)
    }()

    /// Creates a loop and starts its thread; the loop runs until `shutdown()`. Throws
    /// `IOError` when libuv cannot set the loop up (out of file descriptors, say).
    public init(name: String = "chorus-loop") throws(IOError) {
        _ = Self.ignoringSIGPIPE
        uvLoop = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        do {
            try UV.check(uv_loop_init(uvLoop), "uv_loop_init")
        } catch {
            uvLoop.deallocate()
            wakeup.deallocate()
            throw error
        }
        do {
            try UV.check(
                uv_async_init(
                    uvLoop, wakeup,
                    { handle in
                        EventLoop.from(handle!.pointee.data).drain()
                    }), "uv_async_init")
        } catch {
            _ = uv_loop_close(uvLoop)  // nothing was started on it, so it closes at once
            uvLoop.deallocate()
            wakeup.deallocate()
            throw error
        }
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        // Foundation's Thread.name stays in Foundation on Linux; the kernel's name (15 bytes)
        // is what /proc, top and perf show, so the loop thread can be told from the others.
        let kernelName = String(name.utf8.prefix(15)) ?? "chorus-loop"
        let thread = Thread { [self] in
            loopThread = pthread_self()
            _ = chorus_name_thread(kernelName)
            // The signal mask is left as the creating thread had it. Unblocking SIGCHLD here
            // took it from libdispatch, whose signal sources (Foundation's Process among
            // them) need it blocked: in the test process, waits for children stalled for
            // two minutes. A process that needs it unblocked says so in main
            // (SignalWatcher.prepareProcess, as chorus does).
            started.signal()
            uv_run(uvLoop, UV_RUN_DEFAULT)
            // Close whatever handles remain (timers, polls, servers) and let their
            // close callbacks free their memory before the loop itself goes.
            uv_walk(
                uvLoop,
                { handle, _ in
                    if uv_is_closing(handle) == 0 { uv_close(handle, UV.freeOnClose) }
                }, nil)
            uv_run(uvLoop, UV_RUN_DEFAULT)
            uv_loop_close(uvLoop)
            finished.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
        started.wait()
    }

    static func from(_ pointer: UnsafeMutableRawPointer?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(pointer!).takeUnretainedValue()
    }

    // MARK: Executor

    /// Queues a job to run on the loop thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    /// Runs `body` on the loop thread, soon. Safe to call from any thread.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        submit(.closure(body))
    }

    private func submit(_ work: Work) {
        lock.lock()
        if isShutDown {
            lock.unlock()
            // A job enqueued after shutdown would never run; that is a bug in the caller.
            if case .closure = work { return }
            preconditionFailure("job enqueued on an EventLoop after shutdown")
        }
        let wasEmpty = pending.isEmpty
        pending.append(work)
        lock.unlock()
        // uv_async_send coalesces, so one send per empty→non-empty transition is enough;
        // the drain below takes the whole queue.
        if wasEmpty { uv_async_send(wakeup) }
    }

    private func drain() {
        // Jobs enqueued while draining (a resumed continuation, say) run in the same
        // wake-up, up to a bound so that I/O callbacks are not starved.
        for _ in 0..<64 {
            lock.lock()
            swap(&pending, &spare)
            lock.unlock()
            if spare.isEmpty { return }
            for work in spare {
                switch work {
                case .job(let job):
                    job.runSynchronously(on: asUnownedSerialExecutor())
                case .closure(let body):
                    body()
                }
            }
            spare.removeAll(keepingCapacity: true)
        }
        uv_async_send(wakeup)
    }

    /// How many handles are open on the loop and not closing (timers, polls, servers, the
    /// loop's own wakeup): for a test that must know nothing is left that could fire, rather
    /// than wait and see.
    public func openHandles() async -> Int {
        await withCheckedContinuation { continuation in
            execute { [self] in
                var count = 0
                withUnsafeMutablePointer(to: &count) { pointer in
                    uv_walk(
                        uvLoop,
                        { handle, counter in
                            if uv_is_closing(handle) == 0 { counter?.assumingMemoryBound(to: Int.self).pointee += 1 }
                        }, pointer)
                }
                continuation.resume(returning: count)
            }
        }
    }

    /// Whether the caller runs on this loop's thread.
    public var inEventLoop: Bool {
        guard let loopThread else { return false }
        return pthread_equal(loopThread, pthread_self()) != 0
    }

    /// Traps unless called on the loop thread; states the invariant of loop-confined state.
    public func preconditionInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inEventLoop, "not on the event loop thread", file: file, line: line)
    }

    /// Lets `assumeIsolated` succeed in C callbacks (curl, libuv) that run on the loop thread.
    public func checkIsolated() {
        preconditionInEventLoop()
    }

    /// The runtime asks this before `checkIsolated`; answering avoids a trap-based probe.
    public func isIsolatingCurrentContext() -> Bool? {
        inEventLoop
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    // MARK: Lifecycle

    /// Stops the loop after the queued work, closes every handle and joins the thread.
    /// Call it once, from outside the loop thread.
    public func shutdown() {
        precondition(!inEventLoop, "EventLoop.shutdown() called on its own thread")
        lock.lock()
        if isShutDown { lock.unlock(); return }
        lock.unlock()
        execute { [self] in
            lock.lock()
            isShutDown = true
            lock.unlock()
            uv_stop(uvLoop)
        }
        finished.wait()
        uvLoop.deallocate()
    }
}

/// Helpers for calling libuv: turning return codes into typed errors.
enum UV {
    /// Turns a libuv return code into an `IOError` naming `call`. Never a trap: several of
    /// these run where the process may be out of file descriptors (`uv_loop_init` opens an
    /// epoll and an eventfd, `uv_signal_init` a pipe).
    static func check(_ code: Int32, _ call: StaticString) throws(IOError) {
        if code != 0 { throw IOError(code: code, call: "\(call)") }
    }

    static func error(_ code: Int32, _ call: String) -> IOError {
        IOError(code: code, call: call)
    }

    /// Queues a copy of `bytes` on `stream` with uv_write; the copy is freed when the write
    /// completes. Returns libuv's code (non-zero: nothing was queued) or UV_ENOMEM.
    static func writeCopy(_ bytes: ArraySlice<UInt8>, to stream: UnsafeMutablePointer<uv_stream_t>) -> Int32 {
        guard !bytes.isEmpty else { return 0 }
        guard let copy = malloc(bytes.count) else { return Int32(UV_ENOMEM.rawValue) }
        bytes.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        request.pointee.data = copy
        var buf = uv_buf_init(copy.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let code = uv_write(request, stream, &buf, 1) { request, _ in
            // A failed write (EPIPE, a reset) shows as the peer closing; nothing to report here.
            free(request!.pointee.data)
            request!.deallocate()
        }
        if code != 0 {
            free(copy)
            request.deallocate()
        }
        return code
    }

    /// Close callback for handles allocated with `UnsafeMutablePointer.allocate` whose
    /// `data` needs no release (or was released already).
    static let freeOnClose: uv_close_cb = { handle in
        handle?.deallocate()
    }
}

/// A failed libuv call: the error code, its name, and the call that failed.
public struct IOError: Error, CustomStringConvertible, Sendable {
    /// The negative libuv error code (e.g. `UV_EADDRINUSE`).
    public let code: Int32
    /// The libuv function that failed.
    public let call: String

    /// libuv's short name for the error, such as `EADDRINUSE`.
    public var name: String { String(cString: uv_err_name(code)) }

    public var description: String {
        "\(call): \(String(cString: uv_strerror(code)))"
    }
}
