import Chorus
import ChorusJSON
import ChorusSim
import ChorusTrace
import Foundation
import Testing

/// MCP over Streamable HTTP as deployments behave, against the Python test server
/// (Tests/Fixtures/mcp/http_server.py): the server's own messages on the GET stream, an
/// answer stream cut mid-call and resumed with Last-Event-ID (or not, when the server keeps
/// no events), and a server restarted mid-run (its sessions gone: 404) or down for good.
@Suite(.enabled(if: mcpBin != nil, "CHORUS_MCP_BIN is unset: run scripts/test, which installs the MCP servers"))
struct MCPHTTPResilienceTests {
    typealias Server = MCPHTTPToolTests.Server
    let token = MCPHTTPToolTests.token

    private func run(
        _ server: Server, _ tools: [String], latencyMs: Int = 0,
        model: String = "tooluser-small", agent: [String: JSONValue] = [:], timeout: Int = 10,
        during: @escaping @Sendable () async throws -> Void = {}
    ) async throws -> (RunHarness, RunSummary, TraceStore) {
        let h = try RunHarness { $0.latencyMs = latencyMs }
        let workflow = try MCPHTTPToolTests.project(
            h, mcp: MCPHTTPToolTests.remote(server, tools, extra: ["timeout_s": .number(Double(timeout))]), model: model, agent: agent)
        async let during: Void = during()
        let (summary, store) = try await h.run(workflow)
        try await during
        return (h, summary, store)
    }

    private func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-mcp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The server pings the client in the middle of a call; the ping reaches the client only
    /// on the GET stream opened after initialize, and the call answers once the client has.
    @Test func aPingOnTheGetStreamIsAnsweredMidCall() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["pinged"], timeout: 5)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        let text = try MCPHTTPToolTests.output(store, call)
        #expect(!call.isError && text.hasPrefix("pinged: the client answered"), "\(text) \(call.error ?? "")")
        #expect(server.requests.filter { $0.hasPrefix("GET") } == ["GET session version"], "one GET stream: \(server.requests)")
        #expect(server.requests.last?.hasPrefix("DELETE") == true, "the GET stream ended before the DELETE: \(server.requests)")
        await h.shutdown()
    }

    /// A server that offers no GET stream (405) is asked once, and the calls go on.
    @Test func aServerWithoutAGetStreamIsAskedOnce() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token, "--no-get"])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["echo", "progress"])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(try store.toolCalls(ofRun: summary.runID).allSatisfy { !$0.isError })
        #expect(server.requests.filter { $0.hasPrefix("GET") }.count == 1, "\(server.requests)")
        await h.shutdown()
    }

    /// The answer stream of a call is cut after its first event; the server keeps its events,
    /// so the client reconnects with Last-Event-ID and the replay brings the result.
    @Test func aDroppedAnswerStreamIsResumedWithLastEventID() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token, "--resumable"])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["dropped", "echo"])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        let dropped = try #require(calls.first { $0.tool == "dropped" })
        let text = try MCPHTTPToolTests.output(store, dropped)
        #expect(!dropped.isError && text.hasPrefix("survived: "), "\(text) \(dropped.error ?? "")")
        #expect(server.requests.contains("GET session version resume"), "\(server.requests)")
        #expect(server.calls.filter { $0 == "dropped" }.count == 1, "resumed, not called again: \(server.calls)")
        await h.shutdown()
    }

    /// The same cut on a server that keeps no events (its stream has no ids: nothing to resume
    /// from), or that has ids but refuses the GET that would resume (405): the call fails in
    /// one line naming it, and the run goes on.
    @Test(arguments: [
        ([], "before the response, with no event id to resume from"),
        (["--resumable", "--no-get"], "before the response, and the server cannot resume it (GET with Last-Event-ID: HTTP 405)"),
    ])
    func aDroppedStreamThatCannotBeResumedFailsTheCallInOneLine(arguments: [String], expected: String) async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token] + arguments)
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["dropped", "echo"])
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        let dropped = try #require(calls.first { $0.tool == "dropped" })
        let error = dropped.error ?? ""
        #expect(
            dropped.isError && error.hasPrefix("calling dropped: POST \(server.url): the answer stream dropped")
                && error.hasSuffix(expected), "\(error)")
        #expect(!error.contains("\n") && !error.contains(token), "\(error)")
        #expect(calls.contains { $0.tool == "echo" && !$0.isError }, "the other call answered")
        await h.shutdown()
    }

    /// A server that answers 404 to every call in every session: one new session (a second
    /// initialize), one retry, then the call fails in one line; the run goes on.
    @Test func aSessionForgottenTwiceFailsTheCallInOneLine() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token, "--forget"])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["echo"])
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        let error = call.error ?? ""
        #expect(
            call.isError && error == "calling echo: POST \(server.url): HTTP 404 (the server no longer knows this session), nor the new one",
            "\(error)")
        #expect(server.requests.filter { $0 == "POST - -" }.count == 2, "one new session: \(server.requests)")
        await h.shutdown()
    }

    /// The server forgets the session and then refuses new ones (503): the call that found
    /// it gone fails saying the new session failed, and each later call first tries a new
    /// session, fails in one line, and sends no call on the dead one. The run goes on as the
    /// model decides; the trace holds every call.
    @Test func aSessionThatCannotBeRenewedFailsEachLaterCallInOneLine() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token, "--forget-then-refuse"])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["echo"], model: "toolloop-small", agent: ["max_tool_rounds": 3])
        #expect(summary.status == .failed && (summary.error ?? "").contains("max_tool_rounds (3)"), "\(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID).sorted { $0.startedAt < $1.startedAt }
        #expect(calls.count == 3 && calls.allSatisfy(\.isError))
        let first = calls.first?.error ?? ""
        #expect(
            first.contains("HTTP 404 (the server no longer knows this session), and a new session failed:") && first.contains("HTTP 503"),
            "\(first)")
        for call in calls.dropFirst() {
            let error = call.error ?? ""
            #expect(error.contains("no session with the MCP server:") && error.contains("HTTP 503") && !error.contains("\n"), "\(error)")
            #expect(!error.contains(token))
        }
        #expect(server.calls.isEmpty, "no call ran: \(server.calls)")
        #expect(server.requests.filter { $0 == "POST - -" }.count == 4, "the first session, then one new one tried per call: \(server.requests)")
        await h.shutdown()
    }

    /// Three calls of one answer, at once, on a session the server has forgotten (progress's
    /// 404 300 ms after the others'): they share one new session — the first renewal does not
    /// fail progress's request still pending on the old client, as disconnecting that client
    /// at once did ("Client disconnected") — each is retried, and each fails in one line.
    @Test func concurrentCallsOnAForgottenSessionShareOneNewSession() async throws {
        let server = try await Server(directory: try directory(), arguments: ["--token", token, "--forget"])
        defer { server.stop() }
        let (h, summary, store) = try await run(server, ["echo", "progress", "shout"])
        #expect(summary.status == .succeeded, "the model answers from the errors: \(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        #expect(calls.count == 3)
        for call in calls {
            #expect(call.isError && (call.error ?? "").hasSuffix("(the server no longer knows this session), nor the new one"), "\(call.error ?? "")")
        }
        #expect(server.requests.filter { $0 == "POST - -" }.count == 2, "one new session for the three: \(server.requests)")
        await h.shutdown()
    }

    /// The server is killed after the first call of a run that calls a tool every round, and
    /// (when `restart`) started again on the same port: a new process that knows no session.
    /// Calls while it is down fail in one line each; the first call that reaches the new
    /// server gets a 404, a new session (initialize, tools listed) and its retry answers. A
    /// server that stays down fails every later call, and the run ends as such a run does
    /// (at max_tool_rounds), its trace holding every call.
    @Test(arguments: [true, false])
    func aServerRestartedMidRunIsGivenANewSession(restart: Bool) async throws {
        let directory = try directory()
        let first = try await Server(directory: directory, arguments: ["--token", token])
        let port = first.port
        let restarted = Restarted()
        let rounds = 20  // 8 s of model latency for the server to come back, under load too
        let (h, summary, store) = try await run(
            first, ["echo"], latencyMs: 400, model: "toolloop-small", agent: ["max_tool_rounds": .number(Double(rounds))]
        ) {
            let deadline = ContinuousClock.now + .seconds(30)
            while first.calls.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            first.stop()
            if restart { restarted.server = try await Server(directory: directory, arguments: ["--token", self.token], port: port) }
        }
        defer { restarted.server?.stop() }
        let error = summary.error ?? ""
        #expect(summary.status == .failed && error.contains("still asking for tools after max_tool_rounds (\(rounds))"), "\(error)")
        let calls = try store.toolCalls(ofRun: summary.runID).sorted { $0.startedAt < $1.startedAt }
        #expect(calls.count == rounds, "every call is in the trace")
        #expect(calls.first?.isError == false, "\(calls.first?.error ?? "")")
        for call in calls where call.isError {
            let error = call.error ?? ""
            #expect(error.hasPrefix("calling echo: POST http://127.0.0.1:\(port)/mcp: ") && !error.contains("\n") && !error.contains(token), "\(error)")
        }
        if let second = restarted.server {
            #expect(second.requests.filter { $0 == "POST - -" }.count == 1, "one new session: \(second.requests)")
            #expect(calls.last?.isError == false, "the calls after the restart answer: \(calls.map { $0.error ?? "ok" })")
            let renewed = try #require(calls.first { !$0.isError && $0.startedAt > calls[0].startedAt }, "\(calls.map { $0.error ?? "ok" })")
            // A 404, a new session and the call again: 138 ms on an idle machine (a call alone
            // takes 5-7 ms); under load, more, with the new server still starting up.
            #expect(renewed.latencyMs < 30_000, "\(renewed.latencyMs) ms")
        } else {
            #expect(calls.suffix(3).allSatisfy { $0.isError }, "\(calls.map { $0.error ?? "ok" })")
        }
        await h.shutdown()
    }

    final class Restarted: @unchecked Sendable {
        var server: Server?
    }
}
