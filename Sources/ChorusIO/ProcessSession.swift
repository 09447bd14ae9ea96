import CUV
import Glibc

/// A subprocess on the loop: `uv_spawn` with three pipes, writes queued with `uv_write`,
/// signals, the exit reaped. The one place Chorus spawns: a long-running process spoken to
/// over its pipes (an MCP stdio server) is a session; a one-shot run (a tool, a worker's
/// child: `ChildProcess.run`) is a session whose output is collected.
///
/// A public session delivers standard output as it arrives and keeps the last 64 KiB of
/// standard error. Loop-confined state behind a thread-safe surface: every public method
/// may be called from any thread and hops to the loop. The session holds itself alive
/// (retained by libuv's handles) until the process has exited and every pipe has closed.
public final class ProcessSession: @unchecked Sendable {
    /// How the process ended.
    public struct Exit: Sendable, Equatable {
        /// The exit status, when the process exited.
        public var exitStatus: Int32?
        /// The signal that ended it, when one did.
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
    /// How the process ended, read on the loop (nil while it runs).
    var exitOnLoop: Exit? { exit }
    private var stderrTail: [UInt8] = []
    private var exitWaiters: [CheckedContinuation<Exit, Never>] = []
    private var pid: Int32 = 0
    /// A signal sent before the process was spawned, delivered as soon as it is.
    private var signalBeforeSpawn: Int32?
    private static let stderrLimit = 64 * 1024
    /// Signals go to the process's group, and what it leaves running there is killed at its exit.
    private let ownGroup: Bool

    /// What becomes of the process's output.
    enum Reading {
        /// Standard output to `output` as it arrives; the tail of standard error kept.
        case stream
        /// The first `maxBytes` of each stream kept (`collected`); the rest read and dropped.
        case collect(maxBytes: Int)
    }
    private let reading: Reading
    /// A collecting session's output, and whether either stream passed the cap.
    private(set) var collected: (stdout: [UInt8], stderr: [UInt8], truncated: Bool) = ([], [], false)
    /// How long after the exit the pipes are still read (the process's own children may hold
    /// them open): nil until end of file.
    private var drainAfterExit: Duration?
    /// Killed by `killAfter`'s deadline.
    private(set) var timedOut = false
    private var deadline: Timer?
    /// Called on the loop once every handle has closed: the output is complete.
    var whenClosed: (() -> Void)?

    init(loop: EventLoop, ownGroup: Bool = true, reading: Reading = .stream, drainAfterExit: Duration? = .seconds(1)) {
        self.loop = loop
        self.ownGroup = ownGroup
        self.reading = reading
        self.drainAfterExit = drainAfterExit
        (output, outputContinuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .unbounded)
    }

    /// Starts `argv[0]` (looked up in `PATH`) with exactly `environment` and returns once it
    /// runs. Throws `ProcessError` when it cannot be started.
    public static func start(
        _ argv: [String], environment: [String: String], workingDirectory: String? = nil,
        on loop: EventLoop
    ) async throws(ProcessError) -> ProcessSession {
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

    /// Sends `signal` to the process's group (it leads one of its own) unless it has exited.
    public func kill(_ signal: Int32 = SIGKILL) {
        loop.execute { [self] in send(signal) }
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

    /// Sends `signal` (to the group when the process leads one) unless it has exited.
    func send(_ signal: Int32) {
        guard exit == nil, !closed.contains(UnsafeMutableRawPointer(process)) else { return }
        // Not spawned yet (a task cancelled at once: its cancel reaches the loop before its
        // start): delivered once it is. Never kill(0, …) or uv_process_kill on an unspawned
        // handle: either would signal this process's own group.
        guard pid > 0 else { signalBeforeSpawn = signal; return }
        if ownGroup { _ = Glibc.kill(-pid, signal); return }
        _ = uv_process_kill(process, signal)  // ESRCH: it is exiting, and the exit callback is on the way
    }

    /// Kills the process (SIGKILL) if it is still running after `timeout`; its output is then
    /// not waited for (its own children may hold the pipes open).
    func killAfter(_ timeout: Duration) {
        deadline = Timer.schedule(on: loop, after: timeout) { [self] in
            deadline = nil
            guard exit == nil else { return }
            timedOut = true
            drainAfterExit = .zero
            send(SIGKILL)
        }
    }

    /// Writes `bytes` to standard input, then closes it (at once when there are none).
    func writeAllInput(_ bytes: [UInt8]) {
        let pipe = pipes[0]
        guard !bytes.isEmpty, exit == nil, !closed.contains(UnsafeMutableRawPointer(pipe)) else { return close(pipe) }
        let stream = UnsafeMutableRawPointer(pipe).assumingMemoryBound(to: uv_stream_t.self)
        guard UV.writeCopy(bytes[...], to: stream) == 0 else { return close(pipe) }
        // Closed once the write is done: libuv runs a shutdown after the writes queued before it.
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let code = uv_shutdown(request, stream) { request, _ in
            // A child that exits without reading its input fails the write (EPIPE); its exit
            // status tells the story, so the error is not reported separately.
            let session = Unmanaged<ProcessSession>.fromOpaque(request!.pointee.data).takeUnretainedValue()
            request!.deallocate()
            session.close(session.pipes[0])
        }
        if code != 0 {
            request.deallocate()
            close(pipe)
        }
    }

    func spawn(_ argv: [String], environment: [String: String]?, cwd: String?) -> ProcessError? {
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
        let code = spawnWithPipes(
            loop, process: process, pipes: pipes, argv: argv, environment: environment, cwd: cwd,
            ownGroup: ownGroup
        ) { handle, status, signal in
            Unmanaged<ProcessSession>.fromOpaque(handle!.pointee.data).takeUnretainedValue().didExit(status: status, signal: signal)
        }
        process.pointee.data = me
        openHandles += 1
        if code != 0 { return fail(ProcessError(executable: argv[0], underlying: UV.error(code, "uv_spawn"))) }
        pid = process.pointee.pid
        if let signal = signalBeforeSpawn { send(signal) }
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
        let code = uv_read_start(
            stream,
            { _, suggested, buf in
                let bytes = malloc(suggested)  // nil: libuv reports UV_ENOBUFS to the read callback
                buf!.pointee = uv_buf_init(bytes?.assumingMemoryBound(to: CChar.self), bytes == nil ? 0 : UInt32(suggested))
            },
            { stream, nread, buf in
                let session = Unmanaged<ProcessSession>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
                defer { free(buf!.pointee.base) }
                let pipe = UnsafeMutableRawPointer(stream!).assumingMemoryBound(to: uv_pipe_t.self)
                if nread > 0 {
                    session.received(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread), stdout: pipe == session.pipes[1])
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

    private func received(_ bytes: UnsafeRawBufferPointer, stdout: Bool) {
        switch reading {
        case .stream where stdout:
            outputContinuation.yield(Array(bytes))
        case .stream:
            stderrTail += bytes
            if stderrTail.count > Self.stderrLimit { stderrTail.removeFirst(stderrTail.count - Self.stderrLimit) }
        case .collect(let maxBytes):
            let room = max(0, maxBytes - (stdout ? collected.stdout.count : collected.stderr.count))
            if bytes.count > room { collected.truncated = true }
            if stdout { collected.stdout += bytes.prefix(room) } else { collected.stderr += bytes.prefix(room) }
        }
    }

    private func didExit(status: Int64, signal: Int32) {
        let ended = Exit(
            exitStatus: signal == 0 ? Int32(truncatingIfNeeded: status) : nil,
            terminationSignal: signal == 0 ? nil : signal, stderrTail: stderrTail)
        exit = ended
        deadline?.cancel()
        deadline = nil
        // What it left running in its group goes with it; the group outlives its leader while
        // any member does, so its id is still ours.
        if ownGroup && pid > 0 { _ = Glibc.kill(-pid, SIGKILL) }
        for waiter in exitWaiters { waiter.resume(returning: ended) }
        exitWaiters.removeAll()
        close(process)
        close(pipes[0])
        // What it wrote last is still read up to end of file, or (its own children may hold
        // the pipes open) for `drainAfterExit` at most.
        switch drainAfterExit {
        case nil: break
        case .zero?: closePipes()
        case let drain?: Timer.schedule(on: loop, after: drain) { [self] in closePipes() }
        }
    }

    private func closePipes() {
        outputContinuation.finish()
        for pipe in pipes { close(pipe) }
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
        deadline?.cancel()
        deadline = nil
        let whenClosed = self.whenClosed
        self.whenClosed = nil
        whenClosed?()
        Unmanaged.passUnretained(self).release()
    }

    deinit {
        process.deallocate()
        for pipe in pipes { pipe.deallocate() }
    }
}

/// A NULL-terminated `char *[]` built from Swift strings, freed on deinit.
final class CStringArray {
    let pointers: [UnsafeMutablePointer<CChar>?]
    let base: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    init(_ strings: [String]) {
        pointers = strings.map { strdup($0) } + [nil]
        base = .allocate(capacity: pointers.count)
        base.initialize(from: pointers, count: pointers.count)
    }

    deinit {
        for pointer in pointers { free(pointer) }
        base.deallocate()
    }
}

func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

/// `uv_spawn` of `argv` with `pipes` (initialised) as its standard input, output and error,
/// `environment` (nil: this process's) and `cwd` (with `ownGroup`, in a session of its own); every other descriptor is marked
/// close-on-exec first. Returns libuv's code.
func spawnWithPipes(
    _ loop: EventLoop, process: UnsafeMutablePointer<uv_process_t>, pipes: [UnsafeMutablePointer<uv_pipe_t>],
    argv: [String], environment: [String: String]?, cwd: String?, ownGroup: Bool = false, exit: uv_exit_cb
) -> Int32 {
    var stdio = [uv_stdio_container_t](repeating: uv_stdio_container_t(), count: 3)
    for i in 0..<3 {
        stdio[i].flags = uv_stdio_flags(UV_CREATE_PIPE.rawValue | (i == 0 ? UV_READABLE_PIPE.rawValue : UV_WRITABLE_PIPE.rawValue))
        stdio[i].data.stream = UnsafeMutableRawPointer(pipes[i]).assumingMemoryBound(to: uv_stream_t.self)
    }
    markDescriptorsCloseOnExec()
    let cArgs = CStringArray(argv)
    let cEnv = environment.map { CStringArray($0.map { "\($0.key)=\($0.value)" }) }
    // libuv reads argv and the environment during uv_spawn: both must live until it returns
    // (Swift may free an object after its last use, which is before the call).
    return withExtendedLifetime((cArgs, cEnv)) {
        stdio.withUnsafeMutableBufferPointer { stdioBuffer in
            var options = uv_process_options_t()
            options.exit_cb = exit
            options.file = UnsafePointer(cArgs.pointers[0])
            options.args = cArgs.base
            options.env = cEnv?.base
            options.stdio_count = 3
            // setsid in the child: a session and process group of its own, killed as one.
            if ownGroup { options.flags = UInt32(UV_PROCESS_DETACHED.rawValue) }
            options.stdio = stdioBuffer.baseAddress
            return withOptionalCString(cwd) { cwdPointer in
                options.cwd = cwdPointer
                return uv_spawn(loop.uvLoop, process, &options)
            }
        }
    }
}

/// Marks every descriptor above standard error close-on-exec, so a spawned program (a tool,
/// an MCP server) inherits only its three pipes: not a connection to a model provider, not
/// the trace database, not what Chorus itself inherited. curl's sockets are opened
/// close-on-exec (CURLOPT_SOCKOPTFUNCTION), but its multi handle's wake-up socketpair and
/// descriptors opened by other libraries are not; libuv closes nothing in the child. Runs on
/// the loop thread just before uv_spawn: one read of /proc/self/fd (tens of microseconds).
func markDescriptorsCloseOnExec() {
    let direntNameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
    guard let directory = opendir("/proc/self/fd") else { return }
    defer { closedir(directory) }
    let own = dirfd(directory)
    while let entry = readdir(directory) {
        // The name in place: a dirent may be shorter than MemoryLayout<dirent>.size (d_reclen),
        // so copying `entry.pointee` can read past the end of readdir's buffer (it crashed).
        let name = String(cString: (UnsafeRawPointer(entry) + direntNameOffset).assumingMemoryBound(to: CChar.self))
        guard let fd = Int32(name), fd > 2, fd != own else { continue }
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 && flags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
}
