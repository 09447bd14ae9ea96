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

/// Runs a subprocess to its end with `uv_spawn`: an argv array (never a shell string), pipes
/// for stdin/stdout/stderr, a wall-clock timeout after which the process is killed. A
/// `ProcessSession` that collects its output.
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
    public static func run(
        _ argv: [String], stdin: [UInt8] = [], environment: [String: String]? = nil,
        workingDirectory: String? = nil, timeout: Duration? = nil,
        maxOutputBytes: Int = defaultMaxOutputBytes, cancelSignal: Int32 = SIGKILL, grace: Duration = .seconds(10),
        ownProcessGroup: Bool = false, on loop: EventLoop
    ) async throws -> ProcessResult {
        guard !argv.isEmpty else {
            throw ProcessError(executable: "", underlying: UV.error(-22, "uv_spawn: no program name"))
        }
        // Its output is read to end of file: the call ends when every pipe has closed.
        let session = ProcessSession(
            loop: loop, ownGroup: ownProcessGroup, reading: .collect(maxBytes: max(0, maxOutputBytes)),
            drainAfterExit: nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProcessResult, Error>) in
                loop.execute {
                    if let failure = session.spawn(argv, environment: environment, cwd: workingDirectory) {
                        return continuation.resume(throwing: failure)
                    }
                    session.whenClosed = { [unowned session] in continuation.resume(returning: session.result) }
                    session.writeAllInput(stdin)
                    if let timeout { session.killAfter(timeout) }
                }
            }
        } onCancel: {
            loop.execute {
                session.send(cancelSignal)
                if cancelSignal != SIGKILL { Timer.schedule(on: loop, after: grace) { session.send(SIGKILL) } }
            }
        }
    }
}

extension ProcessSession {
    /// A collecting session's result, once every handle has closed.
    fileprivate var result: ProcessResult {
        let exit = self.exitOnLoop
        return ProcessResult(
            exitStatus: exit?.exitStatus, terminationSignal: exit?.terminationSignal, stdout: collected.stdout,
            stderr: collected.stderr, timedOut: timedOut, outputTruncated: collected.truncated)
    }
}
