import CUV
import Glibc

/// How a subprocess ended and what it wrote.
public struct ProcessResult: Sendable, Equatable {
    /// The exit status, or nil when a signal ended the process.
    public var exitStatus: Int32?
    /// The signal that ended the process (SIGKILL after a timeout, say), or nil.
    public var terminationSignal: Int32?
    /// Everything the process wrote to standard output.
    public var stdout: [UInt8]
    /// Everything the process wrote to standard error.
    public var stderr: [UInt8]
    /// True when Chorus killed the process because its wall-clock timeout passed.
    public var timedOut: Bool
    /// True when stdout or stderr wrote more than the cap: what is kept is the first part.
    public var outputTruncated = false

    /// True for a clean exit with status 0.
    public var succeeded: Bool { exitStatus == 0 && !timedOut }
}

/// Errors starting a subprocess.
public struct ProcessError: Error, CustomStringConvertible, Sendable {
    /// The program that could not be started.
    public let executable: String
    /// What libuv reported.
    public let underlying: IOError

    public var description: String { "cannot start \(executable): \(underlying)" }
}

/// Spawns a subprocess with `uv_spawn`: an argv array (never a shell string), pipes for
/// stdin/stdout/stderr, a wall-clock timeout after which the process is killed.
public enum ChildProcess {
    /// What a process may write to each of stdout and stderr before the rest is dropped.
    public static let defaultMaxOutputBytes = 16 * 1024 * 1024

    /// Runs `argv[0]` (looked up in `PATH`) with the given arguments, feeds it `stdin`,
    /// and collects its output: at most `maxOutputBytes` of each stream are kept (the rest
    /// is read and dropped, and `outputTruncated` says so). Cancelling the task sends the
    /// process `cancelSignal` (SIGKILL by default); another signal (SIGTERM, to let it stop
    /// cleanly) is followed by SIGKILL if it is still running `grace` later.
    ///
    /// With `ownProcessGroup`, the process starts a session and process group of its own
    /// (setsid) and every signal goes to the whole group; when the process ends (exit,
    /// timeout or cancel) whatever it left running in its group is killed: a tool cannot
    /// leave a background process behind.
    public static func run(_ argv: [String], stdin: [UInt8] = [], environment: [String: String]? = nil,
                           workingDirectory: String? = nil, timeout: Duration? = nil,
                           maxOutputBytes: Int = defaultMaxOutputBytes, cancelSignal: Int32 = SIGKILL, grace: Duration = .seconds(10),
                           ownProcessGroup: Bool = false, on loop: EventLoop) async throws -> ProcessResult {
        guard !argv.isEmpty else {
            throw ProcessError(executable: "", underlying: UV.error(-22, "uv_spawn: no program name"))
        }
        let context = ProcessContext(loop: loop, stdinBytes: stdin, maxOutputBytes: max(0, maxOutputBytes), ownGroup: ownProcessGroup)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProcessResult, Error>) in
                loop.execute {
                    context.start(argv: argv, environment: environment, cwd: workingDirectory,
                                  timeout: timeout, continuation: continuation)
                }
            }
        } onCancel: {
            loop.execute {
                context.kill(cancelSignal)
                if cancelSignal != SIGKILL { Timer.schedule(on: loop, after: grace) { context.kill(SIGKILL) } }
            }
        }
    }
}

/// Loop-confined state of one running subprocess. Retained while any of its handles is open.
private final class ProcessContext: @unchecked Sendable {
    let loop: EventLoop
    let stdinBytes: [UInt8]
    var process = UnsafeMutablePointer<uv_process_t>.allocate(capacity: 1)
    var pipes: [UnsafeMutablePointer<uv_pipe_t>] = (0..<3).map { _ in .allocate(capacity: 1) }
    var openHandles = 0
    var exited = false
    var result = ProcessResult(exitStatus: nil, terminationSignal: nil, stdout: [], stderr: [], timedOut: false)
    var continuation: CheckedContinuation<ProcessResult, Error>?
    var timer: Timer?
    var spawnError: ProcessError?
    var stdinBuffer: UnsafeMutableRawBufferPointer?

    let maxOutputBytes: Int
    /// The process leads a process group of its own: signals go to the group.
    let ownGroup: Bool
    private var pid: Int32 = 0
    /// A signal sent before the process was spawned (a task cancelled at once: its cancel
    /// runs on the loop before its start), delivered as soon as it is.
    private var signalBeforeSpawn: Int32?

    init(loop: EventLoop, stdinBytes: [UInt8], maxOutputBytes: Int, ownGroup: Bool) {
        self.loop = loop
        self.stdinBytes = stdinBytes
        self.maxOutputBytes = maxOutputBytes
        self.ownGroup = ownGroup
    }

    /// Keeps what fits under the cap; notes that the rest was dropped.
    func keep(_ bytes: UnsafeRawBufferPointer, stdout: Bool) {
        let room = max(0, maxOutputBytes - (stdout ? result.stdout.count : result.stderr.count))
        if bytes.count > room { result.outputTruncated = true }
        if stdout { result.stdout.append(contentsOf: bytes.prefix(room)) } else { result.stderr.append(contentsOf: bytes.prefix(room)) }
    }

    func start(argv: [String], environment: [String: String]?, cwd: String?, timeout: Duration?,
               continuation: CheckedContinuation<ProcessResult, Error>) {
        self.continuation = continuation
        let me = Unmanaged.passRetained(self).toOpaque()  // released when the last handle closes
        for (index, pipe) in pipes.enumerated() {
            // uv_pipe_init cannot fail on Unix today (it only fills in the handle); checked
            // so that a libuv that can fails this spawn instead of trapping.
            let code = uv_pipe_init(loop.uvLoop, pipe, 0)
            guard code == 0 else {
                failBeforeSpawn(ProcessError(executable: argv[0], underlying: UV.error(code, "uv_pipe_init")),
                                uninitialized: [UnsafeMutableRawPointer(process)] + pipes[index...].map { UnsafeMutableRawPointer($0) })
                return
            }
            pipe.pointee.data = me
            openHandles += 1
        }
        let code = spawnWithPipes(loop, process: process, pipes: pipes, argv: argv, environment: environment, cwd: cwd,
                                  ownGroup: ownGroup) { handle, status, signal in
            Unmanaged<ProcessContext>.fromOpaque(handle!.pointee.data).takeUnretainedValue().didExit(status: status, signal: signal)
        }
        process.pointee.data = me
        openHandles += 1
        if code != 0 {
            spawnError = ProcessError(executable: argv[0], underlying: UV.error(code, "uv_spawn"))
            exited = true
            closeAll()
            return
        }
        pid = process.pointee.pid
        if let signal = signalBeforeSpawn { kill(signal) }
        writeStdin()
        for i in 1...2 { startReading(pipes[i]) }
        if let timeout {
            timer = Timer.schedule(on: loop, after: timeout) { [self] in
                timer = nil
                result.timedOut = true
                kill(SIGKILL)
            }
        }
    }

    /// Ends a start that failed before uv_spawn: closes the handles that were initialised
    /// (the others are only freed) and reports `error` once the last one has closed.
    private func failBeforeSpawn(_ error: ProcessError, uninitialized: [UnsafeMutableRawPointer]) {
        spawnError = error
        exited = true
        closed.formUnion(uninitialized)
        if openHandles == 0 {
            openHandles = 1  // handleClosed counts down to zero, reports and releases
            handleClosed()
        } else {
            closeAll()
        }
    }

    private func writeStdin() {
        let stream = UnsafeMutableRawPointer(pipes[0]).assumingMemoryBound(to: uv_stream_t.self)
        if stdinBytes.isEmpty {
            close(pipes[0])
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: stdinBytes.count, alignment: 1)
        buffer.copyBytes(from: stdinBytes)
        stdinBuffer = buffer
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var buf = uv_buf_init(buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(buffer.count))
        let code = uv_write(request, stream, &buf, 1) { request, _ in
            let context = Unmanaged<ProcessContext>.fromOpaque(request!.pointee.data).takeUnretainedValue()
            request!.deallocate()
            context.stdinBuffer?.deallocate()
            context.stdinBuffer = nil
            // A child that exits without reading its input gets EPIPE here; its exit
            // status tells the story, so the write error is not reported separately.
            context.close(context.pipes[0])
        }
        if code != 0 {
            request.deallocate()
            buffer.deallocate()
            stdinBuffer = nil
            close(pipes[0])
        }
    }

    private func startReading(_ pipe: UnsafeMutablePointer<uv_pipe_t>) {
        let stream = UnsafeMutableRawPointer(pipe).assumingMemoryBound(to: uv_stream_t.self)
        let code = uv_read_start(stream, { _, suggested, buf in
            // Out of memory, an empty buffer: libuv then reports UV_ENOBUFS to the read callback.
            let bytes = malloc(suggested)
            buf!.pointee = uv_buf_init(bytes?.assumingMemoryBound(to: CChar.self), bytes == nil ? 0 : UInt32(suggested))
        }, { stream, nread, buf in
            let context = Unmanaged<ProcessContext>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            defer { free(buf!.pointee.base) }
            let pipe = UnsafeMutableRawPointer(stream!).assumingMemoryBound(to: uv_pipe_t.self)
            if nread > 0 {
                let bytes = UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)
                context.keep(bytes, stdout: pipe == context.pipes[1])
            } else if nread < 0 {
                context.close(pipe)  // EOF or a read error: either way this stream is done.
            }
        })
        if code != 0 { close(pipe) }  // nothing will be read from it; the exit status still arrives
    }

    func didExit(status: Int64, signal: Int32) {
        exited = true
        if signal != 0 { result.terminationSignal = signal } else { result.exitStatus = Int32(truncatingIfNeeded: status) }
        timer?.cancel()
        timer = nil
        close(process)
        // What the process left running in its group (a tool's background job) goes with it;
        // the group outlives its leader while any member does, so its id is still ours.
        if ownGroup && pid > 0 { _ = Glibc.kill(-pid, SIGKILL) }
        if result.timedOut {
            // A killed child's own children may hold the pipes open; don't wait for them.
            closeAll()
        }
    }

    func kill(_ signal: Int32) {
        guard !exited else { return }
        // Not spawned yet: libuv would signal pid 0, which is this process's own group.
        guard pid > 0 else { signalBeforeSpawn = signal; return }
        if ownGroup && pid > 0 { _ = Glibc.kill(-pid, signal); return }  // the whole group: a timeout leaves nothing behind
        _ = uv_process_kill(process, signal)  // ESRCH: it exited already, and its exit callback is on the way
    }

    private func closeAll() {
        close(process)
        for pipe in pipes { close(pipe) }
    }

    private var closed = Set<UnsafeMutableRawPointer>()

    private func close<T>(_ handle: UnsafeMutablePointer<T>) {
        let raw = UnsafeMutableRawPointer(handle)
        guard !closed.contains(raw) else { return }
        closed.insert(raw)
        uv_close(raw.assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let context = Unmanaged<ProcessContext>.fromOpaque(handle!.pointee.data)
            context.takeUnretainedValue().handleClosed()
        }
    }

    private func handleClosed() {
        openHandles -= 1
        guard openHandles == 0 else { return }
        let continuation = self.continuation
        self.continuation = nil
        if let spawnError { continuation?.resume(throwing: spawnError) } else { continuation?.resume(returning: result) }
        process.deallocate()
        for pipe in pipes { pipe.deallocate() }
        Unmanaged.passUnretained(self).release()
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
func spawnWithPipes(_ loop: EventLoop, process: UnsafeMutablePointer<uv_process_t>, pipes: [UnsafeMutablePointer<uv_pipe_t>],
                    argv: [String], environment: [String: String]?, cwd: String?, ownGroup: Bool = false, exit: uv_exit_cb) -> Int32 {
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
