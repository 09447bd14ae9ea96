import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

let mcpProxyBin = ProcessInfo.processInfo.environment["CHORUS_MCP_PROXY_BIN"]

/// A reference MCP server (`mcp-server-time`, stdio) served over Streamable HTTP by
/// `mcp-proxy` (PyPI), as servers are often deployed: written by others, with a session and
/// answers of its own choosing (JSON, here).
@Suite(
    .enabled(if: mcpBin != nil, "CHORUS_MCP_BIN is unset: run scripts/test, which installs the MCP servers"),
    .enabled(if: mcpProxyBin != nil, "CHORUS_MCP_PROXY_BIN is unset: run scripts/test, which installs mcp-proxy"))
struct MCPProxyToolTests {
    /// mcp-proxy serving mcp-server-time at http://127.0.0.1:PORT/mcp. mcp-proxy cannot tell
    /// which port it took when given 0, so a free port is picked here; another process may
    /// take it first, and then the proxy exits and another port is tried.
    final class Proxy: @unchecked Sendable {
        let process = Process()
        let port: Int

        private init(port: Int) throws {
            self.port = port
            process.executableURL = URL(fileURLWithPath: mcpProxyBin! + "/mcp-proxy")
            process.arguments = ["--port", String(port), "--host", "127.0.0.1", "--", mcpBin! + "/mcp-server-time", "--local-timezone", "UTC"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        static func start() async throws -> Proxy {
            for _ in 0..<5 {
                let proxy = try Proxy(port: try freePort())
                let deadline = ContinuousClock.now + .seconds(30)
                while proxy.process.isRunning && ContinuousClock.now < deadline {
                    if accepts(proxy.port) { return proxy }
                    try await Task.sleep(for: .milliseconds(50))
                }
                proxy.stop()
            }
            throw MCPHTTPToolTests.MCPFailureForTest("mcp-proxy did not start")
        }

        var url: String { "http://127.0.0.1:\(port)/mcp" }

        /// SIGTERM, so that the proxy ends its stdio server too (SIGKILL after 5 s).
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        private static func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw MCPHTTPToolTests.MCPFailureForTest("socket: \(errno)") }
            defer { close(fd) }
            var address = loopback(0)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw MCPHTTPToolTests.MCPFailureForTest("bind: \(errno)") }
            return Int(UInt16(bigEndian: address.sin_port))
        }

        private static func accepts(_ port: Int) -> Bool {
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
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            return address
        }
    }

    /// A run calls get_current_time through the proxy (a tool error: the simulated model sends
    /// a made-up timezone, which the server names); the replay, with the proxy stopped,
    /// offers the recorded tool and serves its result from the trace.
    @Test func theReferenceTimeServerBehindMCPProxyIsCalledAndReplayedWithoutIt() async throws {
        let proxy = try await Proxy.start()
        defer { proxy.stop() }
        let h = try RunHarness()
        let workflow = try MCPHTTPToolTests.project(h, mcp: ["url": .string(proxy.url), "tools": ["get_current_time"]])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.tool == "get_current_time" && call.kind == "mcp")
        let output = try MCPHTTPToolTests.output(store, call)
        #expect(output.lowercased().contains("timezone"), "\(output)")
        let request = try #require(try store.modelCalls(ofRun: summary.runID).first)
        let body = String(decoding: try store.blobs([request.requestHash])[request.requestHash] ?? [], as: UTF8.self)
        #expect(body.contains("\"get_current_time\"") && body.contains("\"timezone\""), "the server's own schema was offered")

        proxy.stop()
        let report = try await h.replay(summary.runID, workflow: workflow)
        #expect(report.reproduced, "\(report.divergence?.description ?? "")")
        await h.shutdown()
    }
}
