import CUV
import Glibc

/// A long-running subprocess spoken to over its standard input and output (an MCP stdio
/// server, say): `uv_spawn` with three pipes on the loop, writes queued with `uv_write`,
/// standard output delivered as it arrives, the last 64 KiB of standard error kept.
///
/// Loop-confined state behind a thread-safe surface: every method may be called from any
/// thread and hops to the loop. The session holds itself alive (retained by libuv's
/// handles) until the process has exited and every pipe has closed.
public final class ProcessSession: @unchecked Sendable {
    /// How the process ended.
    public struct Exit: Sendable, Equatable {
        public var exitStatus: Int32?
        public var terminationSignal: Int32?
        /// The end of what it wrote to standard error (at most 64 KiB).
        public var stderrTail: [UInt8]
    }

    /// Standard output as it arrives; finishes at end of file.
    public let output: AsyncStream<[UInt8]>
    private let outputContinuation: AsyncStream<[UInt8]>.Continuation
    private let loop: EventLoop
    private let process = UnsafeMutablePointer<uv_process_t>.allocate(capacity: 1)
    private let pipes: [UnsafeMutablePointer<uv_pipe_t>] = (0..<3).map { _ in .allocate(capacity: 1) }
    private var openHandles = 0
    private var closed = Set<UnsafeMutableRawPointer>()
    private var exit: Exit?
    private var stderrTail: [UInt8] = []
    private var exitWaiters: [CheckedContinuation<Exit, Never>] = []
    private var pid: Int32 = 0
    private static let stderrLimit = 64 * 1024

    private init(loop: EventLoop) {
        self.loop = loop
        (output, outputContinuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .unbounded)
    }

    /// Starts `argv[0]` (looked up in `PATH`) with exactly `environment` and returns once it
    /// runs. Throws `ProcessError` when it cannot be started.
    public static func start(_ argv: [String], environment: [String: String], workingDirectory: String? = nil,
                             on loop: EventLoop) async throws(ProcessError) -> ProcessSession {
        guard !argv.isEmpty else { throw ProcessError(executable: "", underlying: UV.error(-22, "uv_spawn: no program name")) }
        let session = ProcessSession(loop: loop)
        let failure: ProcessError? = await withCheckedContinuation { continuation in
            loop.execute { continuation.resume(returning: session.spawn(argv, environment: environment, cwd: workingDirectory)) }
        }
        if let failure { throw failure }
        return session
    }

    /// Queues `bytes` for the process's standard input. Bytes written after it exited are dropped.
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        loop.execute { [self] in writeOnLoop(bytes) }
    }

    /// Closes standard input: a well-behaved server exits on end of file.
    public func closeInput() {
        loop.execute { [self] in close(pipes[0]) }
    }

    /// Sends `signal` unless the process has exited.
    /// Sends `signal` to the process's group (it leads one of its own) unless it has exited.
    public func kill(_ signal: Int32 = SIGKILL) {
        loop.execute { [self] in
            guard exit == nil, !closed.contains(UnsafeMutableRawPointer(process)) else { return }
            // Never kill(0, …): that would be this process's own group.
            if pid > 0 { _ = Glibc.kill(-pid, signal) }  // ESRCH: it is exiting, and the exit callback is on the way
        }
    }

    /// Waits until the process has exited.
    public func wait() async -> Exit {
        await withCheckedContinuation { continuation in
            loop.execute { [self] in
                if let exit { continuation.resume(returning: exit) } else { exitWaiters.append(continuation) }
            }
        }
    }

    // MARK: loop thread

    private func spawn(_ argv: [String], environment: [String: String], cwd: String?) -> ProcessError? {
        let me = Unmanaged.passRetained(self).toOpaque()  // released when the last handle closes
        for (index, pipe) in pipes.enumerated() {
            let code = uv_pipe_init(loop.uvLoop, pipe, 0)  // cannot fail on Unix today; checked all the same
            guard code == 0 else {
                closed.formUnion([UnsafeMutableRawPointer(process)] + pipes[index...].map { UnsafeMutableRawPointer($0) })
                return fail(ProcessError(executable: argv[0], underlying: UV.error(code, "uv_pipe_init")))
            }
            pipe.pointee.data = me
            openHandles += 1
        }
        // A group of its own: stopping the server stops whatever it started too.
        let code = spawnWithPipes(loop, process: process, pipes: pipes, argv: argv, environment: environment, cwd: cwd,
                                  ownGroup: true) { handle, status, signal in
            Unmanaged<ProcessSession>.fromOpaque(handle!.pointee.data).takeUnretainedValue().didExit(status: status, signal: signal)
        }
        process.pointee.data = me
        openHandles += 1
        if code != 0 { return fail(ProcessError(executable: argv[0], underlying: UV.error(code, "uv_spawn"))) }
        pid = process.pointee.pid
        for i in 1...2 { startReading(pipes[i]) }
        return nil
    }

    /// Ends a start that failed: closes what was opened, finishes the output.
    private func fail(_ error: ProcessError) -> ProcessError {
        exit = Exit(exitStatus: nil, terminationSignal: nil, stderrTail: [])
        outputContinuation.finish()
        if openHandles == 0 {
            openHandles = 1
            handleClosed()
        } else {
            close(process)
            for pipe in pipes { close(pipe) }
        }
        return error
    }

    private func writeOnLoop(_ bytes: [UInt8]) {
        let pipe = pipes[0]
        guard exit == nil, !closed.contains(UnsafeMutableRawPointer(pipe)) else { return }
        // A write that fails (EPIPE: the process is gone) shows as the process's exit.
        _ = UV.writeCopy(bytes[...], to: UnsafeMutableRawPointer(pipe).assumingMemoryBound(to: uv_stream_t.self))
    }

    private func startReading(_ pipe: UnsafeMutablePointer<uv_pipe_t>) {
        let stream = UnsafeMutableRawPointer(pipe).assumingMemoryBound(to: uv_stream_t.self)
        let code = uv_read_start(stream, { _, suggested, buf in
            let bytes = malloc(suggested)  // nil: libuv reports UV_ENOBUFS to the read callback
            buf!.pointee = uv_buf_init(bytes?.assumingMemoryBound(to: CChar.self), bytes == nil ? 0 : UInt32(suggested))
        }, { stream, nread, buf in
            let session = Unmanaged<ProcessSession>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            defer { free(buf!.pointee.base) }
            let pipe = UnsafeMutableRawPointer(stream!).assumingMemoryBound(to: uv_pipe_t.self)
            if nread > 0 {
                session.received(Array(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)), stdout: pipe == session.pipes[1])
            } else if nread < 0 {
                if pipe == session.pipes[1] { session.outputContinuation.finish() }
                session.close(pipe)
            }
        })
        if code != 0 {
            if pipe == pipes[1] { outputContinuation.finish() }
            close(pipe)
        }
    }

    private func received(_ bytes: [UInt8], stdout: Bool) {
        if stdout {
            outputContinuation.yield(bytes)
        } else {
            stderrTail += bytes
            if stderrTail.count > Self.stderrLimit { stderrTail.removeFirst(stderrTail.count - Self.stderrLimit) }
        }
    }

    private func didExit(status: Int64, signal: Int32) {
        let ended = Exit(exitStatus: signal == 0 ? Int32(truncatingIfNeeded: status) : nil,
                         terminationSignal: signal == 0 ? nil : signal, stderrTail: stderrTail)
        exit = ended
        if pid > 0 { _ = Glibc.kill(-pid, SIGKILL) }  // what it left running in its group goes with it
        for waiter in exitWaiters { waiter.resume(returning: ended) }
        exitWaiters.removeAll()
        close(process)
        close(pipes[0])
        // What it wrote last is still read up to end of file; its own children may hold the
        // pipes open, so after a second nothing more is waited for.
        Timer.schedule(on: loop, after: .seconds(1)) { [self] in
            outputContinuation.finish()
            for pipe in pipes { close(pipe) }
        }
    }

    private func close<T>(_ handle: UnsafeMutablePointer<T>) {
        let raw = UnsafeMutableRawPointer(handle)
        guard !closed.contains(raw) else { return }
        closed.insert(raw)
        uv_close(raw.assumingMemoryBound(to: uv_handle_t.self)) { handle in
            Unmanaged<ProcessSession>.fromOpaque(handle!.pointee.data).takeUnretainedValue().handleClosed()
        }
    }

    private func handleClosed() {
        openHandles -= 1
        guard openHandles == 0 else { return }
        if let exit {  // a failed start: waiters hear it too
            for waiter in exitWaiters { waiter.resume(returning: exit) }
            exitWaiters.removeAll()
        }
        Unmanaged.passUnretained(self).release()
    }

    deinit {
        process.deallocate()
        for pipe in pipes { pipe.deallocate() }
    }
}
