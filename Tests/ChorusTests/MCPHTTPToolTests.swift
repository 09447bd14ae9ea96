import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// MCP tools over Streamable HTTP (`mcp.url`) against a server written with the official
/// `mcp` package (Tests/Fixtures/mcp/http_server.py), run by uvicorn on loopback: answers as
/// event streams and as JSON, a bearer token from the environment, the host allow-list, a
/// call that never ends, and a server that dies mid-call.
@Suite(.enabled(if: mcpBin != nil, "CHORUS_MCP_BIN is unset: run scripts/test, which installs the MCP servers"))
struct MCPHTTPToolTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/mcp/http_server.py").path
    /// The variable the tool files name for their token; set once, never changed (setenv
    /// while other tests spawn processes is what to avoid).
    static let tokenVariable = "CHORUS_TEST_MCP_HTTP_TOKEN"
    static let token: String = {
        setenv(tokenVariable, "mcp-http-token-4c1d9e", 1)
        return "mcp-http-token-4c1d9e"
    }()

    /// The test server as a child process (TestSupport's `TestServer`, reaped by its pid),
    /// stopped by `stop()`; on `port`, or any free one.
    final class Server: Sendable {
        let process: TestServer
        let port: Int
        let log: String

        init(directory: URL, arguments: [String], port: Int = 0) async throws {
            let ready = directory.appendingPathComponent("ready-\(UUID().uuidString)").path
            log = directory.appendingPathComponent("requests-\(UUID().uuidString).log").path
            // The server's tracebacks (the failing tools) are not this suite's output.
            process = try TestServer(mcpBin! + "/python", [MCPHTTPToolTests.script, String(port), ready, "--log", log] + arguments)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let text = try? String(contentsOfFile: ready, encoding: .utf8), let port = Int(text) {
                    self.port = port
                    return
                }
                if !process.isRunning { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            process.stop()
            throw MCPFailureForTest("the test server did not start")
        }

        var url: String { "http://127.0.0.1:\(port)/mcp" }
        var requests: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        /// The tools called, in order (those that say so: echo, pinged, dropped).
        var calls: [String] { ((try? String(contentsOfFile: log + ".calls", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }

        func stop() { process.stop() }
    }

    struct MCPFailureForTest: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func project(_ h: RunHarness, mcp: JSONValue, model: String = "tooluser-small", agent: [String: JSONValue] = [:]) throws -> String {
        try FileManager.default.createDirectory(at: h.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
        try h.write("tools/remote.json", ["name": "remote", "description": "An MCP server over HTTP.", "mcp": mcp])
        try h.writeConfig(["small": ["model": .string(model)]])
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: ["tools": ["remote"]].merging(agent) { $1 })
        return try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
    }

    private func project(_ h: RunHarness, mcp: JSONValue) throws -> String { try Self.project(h, mcp: mcp) }

    static func remote(_ server: Server, _ tools: [String], token: String = "{{env.\(tokenVariable)}}", extra: [String: JSONValue] = [:]) -> JSONValue {
        var mcp: [String: JSONValue] = [
            "url": .string(server.url), "tools": .array(tools.map { .string($0) }),
            "headers": ["Authorization": .string("Bearer " + token)],
        ]
        mcp.merge(extra) { $1 }
        return .object(mcp)
    }

    private func remote(_ server: Server, _ tools: [String], token: String = "{{env.\(tokenVariable)}}", extra: [String: JSONValue] = [:]) -> JSONValue {
        Self.remote(server, tools, token: token, extra: extra)
    }

    static func output(_ store: TraceStore, _ call: ToolCallRecord) throws -> String {
        String(decoding: try store.blobs([call.outputHash])[call.outputHash] ?? [], as: UTF8.self)
    }

    /// Answers as event streams (log notifications before the result) and as JSON: each call
    /// is recorded, a tool error reaches the model as one; the session id and protocol version
    /// go with every request after initialize, and the run ends the session with a DELETE.
    /// A replay, with the server stopped, offers the recorded tools and calls none.
    @Test(arguments: [false, true])
    func aRunCallsTheServersToolsAndReplaysWithoutIt(json: Bool) async throws {
        let h = try RunHarness()
        let server = try await Server(directory: h.directory, arguments: ["--token", Self.token] + (json ? ["--json"] : []))
        defer { server.stop() }
        let workflow = try project(h, mcp: remote(server, ["echo", "progress", "shout"]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        #expect(Set(calls.map(\.tool)) == ["echo", "progress", "shout"], "\(calls.map(\.tool))")
        for call in calls {
            let text = try Self.output(store, call)
            #expect(call.kind == "mcp")
            switch call.tool {
            case "echo": #expect(!call.isError && text.hasPrefix("echo: "), "\(text)")
            case "progress": #expect(!call.isError && text.hasPrefix("done: "), "\(text)")
            default: #expect(call.isError && text.contains("Error executing tool shout"), "\(text)")
            }
        }
        let requests = server.requests
        #expect(requests.first == "POST - -", "initialize carries neither: \(requests)")
        #expect(requests.dropFirst().allSatisfy { $0.hasSuffix(" session version") }, "\(requests)")
        #expect(requests.last?.hasPrefix("DELETE") == true, "the session ended with the run: \(requests)")
        let blobs = try store.blobs(Set(try store.modelCalls(ofRun: summary.runID).map(\.requestHash)))
        #expect(!blobs.values.contains { String(decoding: $0, as: UTF8.self).contains(Self.token) }, "the token is in no request")

        server.stop()
        let report = try await h.replay(summary.runID, workflow: workflow)
        #expect(report.reproduced, "\(report.divergence?.description ?? "")")
        #expect(server.requests.count == requests.count, "the replay contacted no server")
        await h.shutdown()
    }

    @Test func aWrongTokenEndsTheRunInOneLineWithoutTheToken() async throws {
        let h = try RunHarness()
        let server = try await Server(directory: h.directory, arguments: ["--token", "the-right-token"])
        defer { server.stop() }
        let workflow = try project(h, mcp: remote(server, ["echo"]))
        let (summary, _) = try await h.run(workflow)
        let error = summary.error ?? ""
        #expect(summary.status == .failed)
        #expect(error.contains("tool 'remote'") && error.hasSuffix("tool 'remote': POST \(server.url): HTTP 401"), "\(error)")
        #expect(!error.contains(Self.token) && !error.contains("\n"), "\(error)")
        await h.shutdown()
    }

    @Test func aHostOutsideTheAllowListIsRefusedBeforeAByteIsSent() async throws {
        let h = try RunHarness()
        let server = try await Server(directory: h.directory, arguments: [])
        defer { server.stop() }
        let workflow = try project(h, mcp: remote(server, ["echo"], extra: ["allow_hosts": ["mcp.example.com"]]))
        let (summary, _) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("host 127.0.0.1 is not in the tool's allow_hosts (mcp.example.com)") == true, "\(summary.error ?? "")")
        #expect(server.requests.isEmpty, "\(server.requests)")
        await h.shutdown()
    }

    @Test func aCallThatNeverAnswersEndsAtTheTimeout() async throws {
        let h = try RunHarness()
        let server = try await Server(directory: h.directory, arguments: [])
        defer { server.stop() }
        let workflow = try project(h, mcp: remote(server, ["hang"], extra: ["timeout_s": 2]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.isError && call.error?.contains("no answer calling hang within 2s") == true, "\(call.error ?? "")")
        await h.shutdown()
    }

    /// The server dies in the middle of a call: that call fails in one line, the steps before
    /// it stay in the trace, and the run goes on.
    @Test func aServerKilledMidCallFailsThatCallInOneLine() async throws {
        let h = try RunHarness()
        let server = try await Server(directory: h.directory, arguments: [])
        defer { server.stop() }
        let workflow = try project(h, mcp: remote(server, ["echo", "crash"]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        let crash = try #require(calls.first { $0.tool == "crash" })
        let error = crash.error ?? ""
        #expect(crash.isError && error.contains("POST http://127.0.0.1:\(server.port)/mcp") && !error.contains("\n"), "\(error)")
        #expect(try store.modelCalls(ofRun: summary.runID).count >= 2, "the steps before and after are recorded")
        await h.shutdown()
    }
}
