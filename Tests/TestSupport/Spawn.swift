// Process spawning for every test target: one way to start a child, with nothing of the
// test process leaking into it.
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// posix_spawn of `path` with the child's 0/1/2 on `stdin`/`stdout`/`stderr` (nil: /dev/null)
/// and every other descriptor closed in the child (`closefrom(3)`), so a child never holds a
/// pipe another test reads to EOF. Foundation's Pipe is not close-on-exec, and a pipe leaked
/// into a long-lived child (a simulator living two minutes) left its reader waiting that long:
/// the stall behind the rare hang of the resume tests, which froze both of this machine's
/// cooperative threads and everything async with them. Pipes are therefore made with
/// `pipe2(O_CLOEXEC)` (`closeOnExecPipe`), never with Foundation's `Pipe`.
public func spawnChild(
    _ path: String, _ arguments: [String], environment: [String: String] = [:],
    stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil, workingDirectory: String? = nil
) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let workingDirectory { guard addChdir(&actions, workingDirectory) == 0 else { throw POSIXError(.EINVAL) } }
    for (target, source) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
        if let source {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        } else {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
        }
    }
    guard closeFrom(&actions, 3) == 0 else { throw POSIXError(.EINVAL) }
    // The test runner's threads block signals (SIGTERM, SIGCHLD); a child starts with none blocked.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    var pid: pid_t = 0
    // No lock around it: pipes are close-on-exec from birth and the child closes every
    // other descriptor, so concurrent spawns cannot leak into each other.
    let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
    guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
    return pid
}

// glibc declares these two only under _GNU_SOURCE, which Swift's Glibc module is not built
// with; they are looked up by name (glibc ≥ 2.34 has both).
private let closeFrom = unsafeBitCast(
    glibc("posix_spawn_file_actions_addclosefrom_np"),
    to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
private let pipe2 = unsafeBitCast(glibc("pipe2"), to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
private let addChdir = unsafeBitCast(
    glibc("posix_spawn_file_actions_addchdir_np"),
    to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
private func glibc(_ name: String) -> UnsafeMutableRawPointer {
    guard let symbol = dlsym(nil, name) else { fatalError("glibc has no \(name): the tests need glibc 2.34 or later") }
    return symbol
}

/// A pipe whose both ends are close-on-exec from the start: (read, write).
public func closeOnExecPipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    guard pipe2(&fds, O_CLOEXEC) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return (fds[0], fds[1])
}

/// Waits for `pid`; its exit status, or 128 + the signal that killed it, as a shell reports it.
public func waitForExit(_ pid: pid_t) -> (status: Int32, signalled: Bool) {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    return status & 0x7F == 0 ? ((status >> 8) & 0xFF, false) : (128 + (status & 0x7F), true)
}

/// A spawned process: its pid and signals to it.
public struct ChildPID: Sendable {
    public let processIdentifier: pid_t
    public init(processIdentifier: pid_t) { self.processIdentifier = processIdentifier }
    public func terminate() { kill(processIdentifier, SIGTERM) }
    public func interrupt() { kill(processIdentifier, SIGINT) }
}

/// Reads a descriptor to EOF, retrying on EINTR (FileHandle's readDataToEndOfFile traps on it).
public func readToEnd(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return data }
        data.append(contentsOf: buffer[0..<n])
    }
}

/// Runs a program to completion with stdout and stderr in files (in `scratch`); its exit
/// status (128 + the signal when one ended it) and both outputs.
public func execute(
    _ path: String, _ arguments: [String], scratch: URL = FileManager.default.temporaryDirectory,
    environment: [String: String] = [:], workingDirectory: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    try withOutputFiles(in: scratch) { out, err in
        let pid = try spawnChild(path, arguments, environment: environment, stdout: out, stderr: err, workingDirectory: workingDirectory)
        return waitForExit(pid).status
    }
}

/// Runs `body` with two fresh files open for a child's stdout and stderr (files, not pipes:
/// a child's output is read whole after it exits), and returns what it returns with both.
func withOutputFiles<T>(in scratch: URL, _ body: (Int32, Int32) throws -> T) throws -> (T, String, String) {
    let outFile = scratch.appendingPathComponent("stdout-\(UUID().uuidString)").path
    let errFile = scratch.appendingPathComponent("stderr-\(UUID().uuidString)").path
    defer { unlink(outFile); unlink(errFile) }
    let out = open(outFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    let err = open(errFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    defer { close(out); close(err) }
    guard out >= 0, err >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    let result = try body(out, err)
    let read = { (file: String) in (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
    return (result, read(outFile), read(errFile))
}

/// `execute`, but a child still running after `timeout` is SIGKILLed: a test of something
/// that must end (a budgeted run, a hostile regex) fails instead of hanging the suite.
public func execute(
    _ path: String, _ arguments: [String], timeout: Duration, scratch: URL = FileManager.default.temporaryDirectory,
    environment: [String: String] = [:]
) throws -> (status: Int32, stdout: String, stderr: String, timedOut: Bool) {
    let ((code, timedOut), stdout, stderr) = try withOutputFiles(in: scratch) { out, err -> (Int32, Bool) in
        let pid = try spawnChild(path, arguments, environment: environment, stdout: out, stderr: err)
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        var timedOut = false
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { break }
            if done == -1 && errno != EINTR { break }
            if ContinuousClock.now > deadline && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            }
            usleep(10_000)
        }
        return (status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F), timedOut)
    }
    return (code, stdout, stderr, timedOut)
}

/// A provider written for one test, in Python (an independent HTTP server, not Chorus's
/// simulator): `script` defines a `BaseHTTPRequestHandler` subclass named `H`; the server
/// listens on a free loopback port, which `port` holds. Killed by `stop`.
public final class ScriptedServer: @unchecked Sendable {
    public let port: Int
    private let pid: pid_t

    public init(handler script: String) throws {
        let pipe = try closeOnExecPipe()
        let program =
            "import http.server, json, sys, time\n" + script + """

                s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
                s.daemon_threads = True
                print(s.server_address[1], flush=True)
                s.serve_forever()
                """
        pid = try spawnChild("/usr/bin/env", ["python3", "-c", program], stdout: pipe.write)
        close(pipe.write)
        defer { close(pipe.read) }
        var text = ""
        var byte: UInt8 = 0
        while read(pipe.read, &byte, 1) == 1, byte != 10 { text.append(Character(UnicodeScalar(byte))) }
        guard let port = Int(text) else {
            kill(pid, SIGKILL)
            _ = waitForExit(pid)
            throw POSIXError(.EIO)
        }
        self.port = port
    }

    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    public func stop() {
        kill(pid, SIGKILL)
        _ = waitForExit(pid)
    }
}

/// The running processes whose command line mentions `text` (a test's own database, say):
/// the signal that a process a test started indirectly is gone, rather than a pause.
public func processes(mentioning text: String) -> [pid_t] {
    let needle = Array(text.utf8)
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry), pid != getpid(),
            let line = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { return nil }
        let bytes = Array(line)
        guard bytes.count >= needle.count else { return nil }
        return (0...(bytes.count - needle.count)).contains { bytes[$0..<($0 + needle.count)].elementsEqual(needle) } ? pid : nil
    }
}
