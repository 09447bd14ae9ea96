import Foundation

/// A long-lived child a test talks to (a Python MCP server, mcp-proxy): spawned with
/// posix_spawn, its output to a file or /dev/null, reaped with waitpid by its own pid.
///
/// Not Foundation's Process: under libuv's SIGCHLD handling in the same process, a killed
/// child now and then was never reaped by it (a zombie), and `waitUntilExit` waited forever
/// on a cooperative thread — two of them froze every async test of a full run for 16 minutes.
public final class TestServer: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var exited = false

    /// Starts `path arguments`, its stdout and stderr appended to `output` (nil: discarded).
    public init(_ path: String, _ arguments: [String], output: String? = nil, workingDirectory: String? = nil) throws {
        let fd = open(output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        pid = try spawnChild(path, arguments, stdout: fd, stderr: fd, workingDirectory: workingDirectory)
    }

    /// Whether it has exited (reaped once here, never waited on twice).
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { exited = true }
        return !exited
    }

    /// SIGTERM (when `grace` is above zero, for a child that ends children of its own), then
    /// SIGKILL once `grace` has passed; returns once it is reaped. Idempotent.
    public func stop(grace: Duration = .zero) {
        guard isRunning else { return }
        if grace > .zero {
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        }
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        exited = true
    }

    /// A loopback port free a moment ago (bound to 0, then closed): another process may
    /// take it first, so a server started on it must be watched for exiting.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var address = loopback(0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts connections on the loopback `port`.
    public static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    private static func loopback(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

/// mcp-proxy (PyPI) serving a stdio MCP server over Streamable HTTP at
/// `http://127.0.0.1:PORT/mcp`. mcp-proxy cannot say which port it took when given 0, so a
/// free one is picked; if another process takes it first the proxy exits, and another is tried.
public final class MCPProxy: Sendable {
    public let port: Int
    public let log: String
    private let server: TestServer

    /// Starts `proxy` (the mcp-proxy program) serving `command`, started in `directory`;
    /// its log (uvicorn's access lines among it) goes to a file in `scratch`.
    public init(proxy: String, serving command: [String], in directory: String? = nil, scratch: URL) async throws {
        for _ in 0..<5 {
            let port = try TestServer.freePort()
            let log = scratch.appendingPathComponent("mcp-proxy-\(port).log").path
            let cwd = directory.map { ["--cwd", $0] } ?? []
            let server = try TestServer(proxy, ["--port", String(port), "--host", "127.0.0.1"] + cwd + ["--"] + command, output: log)
            let deadline = ContinuousClock.now + .seconds(30)
            while server.isRunning && ContinuousClock.now < deadline {
                if TestServer.accepts(port) {
                    (self.port, self.log, self.server) = (port, log, server)
                    return
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            server.stop()
        }
        throw POSIXError(.EADDRINUSE)
    }

    public var url: String { "http://127.0.0.1:\(port)/mcp" }

    /// Requests the proxy answered 200 (uvicorn's access lines).
    public var requestsAnswered: Int {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "\" 200").count - 1
    }

    /// SIGTERM, so that the proxy ends its stdio server too; SIGKILL after 5 s.
    public func stop() { server.stop(grace: .seconds(5)) }
}
