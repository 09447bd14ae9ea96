import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

let mcpProxyBin = ProcessInfo.processInfo.environment["CHORUS_MCP_PROXY_BIN"]

/// A reference MCP server (`mcp-server-time`, stdio) served over Streamable HTTP by
/// `mcp-proxy` (PyPI), as servers are often deployed: written by others, with a session and
/// answers of its own choosing (JSON, here).
@Suite(
    .enabled(if: mcpBin != nil, "CHORUS_MCP_BIN is unset: run scripts/test, which installs the MCP servers"),
    .enabled(if: mcpProxyBin != nil, "CHORUS_MCP_PROXY_BIN is unset: run scripts/test, which installs mcp-proxy"))
struct MCPProxyToolTests {
    /// A run calls get_current_time through the proxy (a tool error: the simulated model sends
    /// a made-up timezone, which the server names); the replay, with the proxy stopped,
    /// offers the recorded tool and serves its result from the trace.
    @Test func theReferenceTimeServerBehindMCPProxyIsCalledAndReplayedWithoutIt() async throws {
        let h = try RunHarness()
        let proxy = try await MCPProxy(
            proxy: mcpProxyBin! + "/mcp-proxy", serving: [mcpBin! + "/mcp-server-time", "--local-timezone", "UTC"], scratch: h.directory)
        defer { proxy.stop() }
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
