import CUV
import Glibc

/// Watches one POSIX signal (SIGINT, SIGTERM, …) through a `uv_signal_t` on the loop.
///
/// While a watcher is active the signal no longer has its default action (terminating
/// the process); the callback runs on the loop thread instead. Close it to restore that.
package final class SignalWatcher: @unchecked Sendable {
    private let loop: EventLoop
    private var handle: UnsafeMutablePointer<uv_signal_t>?
    private let callback: @Sendable (Int32) -> Void

    private init(loop: EventLoop, callback: @escaping @Sendable (Int32) -> Void) {
        self.loop = loop
        self.callback = callback
    }

    /// Starts watching `signal`; `callback` runs on the loop thread each time it arrives.
    /// Callable from any thread; the watcher is active once this returns.
    package static func watch(
        _ signal: Int32, on loop: EventLoop,
        _ callback: @escaping @Sendable (Int32) -> Void
    ) throws(IOError) -> SignalWatcher {
        let watcher = SignalWatcher(loop: loop, callback: callback)
        // A parent may have spawned us with the signal blocked (a mask is inherited
        // across exec); a blocked signal would stay pending forever. Unblock it on this
        // thread and on the loop thread, where libuv's handler should run.
        unblock(signal)
        let result: Result<Void, IOError> = loop.runBlocking {
            unblock(signal)
            let handle = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
            let initCode = uv_signal_init(loop.uvLoop, handle)  // opens a pipe: EMFILE is possible
            guard initCode == 0 else {
                handle.deallocate()  // never initialised, so never closed
                return .failure(UV.error(initCode, "uv_signal_init"))
            }
            handle.pointee.data = Unmanaged.passRetained(watcher).toOpaque()
            let code = uv_signal_start(
                handle,
                { handle, signum in
                    Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data).takeUnretainedValue().callback(signum)
                }, signal)
            watcher.handle = handle
            if code != 0 {
                watcher.closeOnLoop()
                return .failure(UV.error(code, "uv_signal_start"))
            }
            return .success(())
        }
        try result.get()
        return watcher
    }

    /// Sets up a process's signals; call first thing in `main`. Unblocks SIGINT and SIGTERM
    /// (a parent may spawn us with them blocked, and Ctrl-C during start-up — opening a trace
    /// database another process has locked, say — must still stop us). Ignores SIGPIPE:
    /// libuv writes to sockets with plain write(2), so a client that hung up mid-response
    /// killed `chorus sim` (exit 141); the write now fails with EPIPE and only that
    /// connection closes. Children spawned through libuv get default dispositions back.
    /// Unblocks SIGCHLD too: libuv learns that a child exited from it, and a parent that
    /// blocked it (Foundation's Process from a dispatch thread does) left every tool and
    /// MCP server a zombie that was never reaped, its step waiting forever.
    package static func prepareProcess() {
        // Started by `chorus worker` (which sets CHORUS_PARENT_PID): die with it. If it is
        // already gone (the race before prctl), stop at once.
        if let parent = getenv("CHORUS_PARENT_PID").flatMap({ Int32(String(cString: $0)) }) {
            _ = chorus_die_with_parent()
            if getppid() != parent { _exit(1) }
        }
        unblock(SIGINT)
        unblock(SIGTERM)
        unblock(SIGCHLD)
        signal(SIGPIPE, SIG_IGN)
    }

    static func unblock(_ signal: Int32) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Stops watching; the signal's default action applies again. Idempotent.
    package func close() {
        loop.execute { [self] in closeOnLoop() }
    }

    private func closeOnLoop() {
        guard let handle else { return }
        self.handle = nil
        uv_signal_stop(handle)
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data).release()
            handle!.deallocate()
        }
    }
}
