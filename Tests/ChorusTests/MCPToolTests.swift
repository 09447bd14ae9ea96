import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// The bin directory of the venv holding the MCP servers.
let mcpBin = ProcessInfo.processInfo.environment["CHORUS_MCP_BIN"]

/// MCP tools against real servers from PyPI, spawned over stdio: the reference
/// `mcp-server-time`, and a test server written with the official `mcp` package
/// (Tests/Fixtures/mcp/test_server.py). scripts/test installs both into .venvs/mcp and
/// sets CHORUS_MCP_BIN to its bin directory.
@Suite(.enabled(if: mcpBin != nil, "CHORUS_MCP_BIN is unset: run scripts/test, which installs the MCP servers"))
struct MCPToolTests {
    static let bin = mcpBin
    static let testServer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/mcp/test_server.py").path

    private func project(_ h: RunHarness, mcp: JSONValue, foreach items: Int? = nil) throws -> String {
        try FileManager.default.createDirectory(at: h.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
        try h.write("tools/server.json", ["name": "server", "description": "An MCP server.", "mcp": mcp])
        try h.writeConfig(["small": ["model": "tooluser-small"], "planner": ["model": .string("planner-\(items ?? 0)")]])
        try h.agent(
            "asker", model: "small", prompt: items == nil ? "{{inputs.question}}" : "{{inputs.question}} {{item}}",
            extra: ["tools": ["server"]])
        if items != nil {
            try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
            return try h.workflow(
                "ask",
                nodes: [
                    "plan": ["kind": "agent", "agent": "lead"],
                    "ask": ["kind": "foreach", "agent": "asker", "over": "plan.subtasks"],
                ], output: "ask")
        }
        return try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
    }

    private func testServer(_ tools: [String], log: String? = nil, extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(
            [
                "command": .array([.string(Self.bin! + "/python"), .string(Self.testServer)] + (log.map { [.string($0)] } ?? [])),
                "tools": .array(tools.map { .string($0) }),
            ].merging(extra) { $1 })
    }

    @Test func theReferenceTimeServerIsListedAndCalled() async throws {
        let h = try RunHarness()
        let workflow = try project(
            h,
            mcp: [
                "command": [.string(Self.bin! + "/mcp-server-time"), "--local-timezone", "UTC"],
                "tools": ["get_current_time"],
            ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.tool == "get_current_time" && call.kind == "mcp")
        let output = String(decoding: try store.blobs([call.outputHash])[call.outputHash] ?? [], as: UTF8.self)
        // The simulated model sends a made-up timezone: the server answers, as an error.
        #expect(output.lowercased().contains("timezone"), "\(output)")
        let request = try #require(try store.modelCalls(ofRun: summary.runID).first)
        let body = String(decoding: try store.blobs([request.requestHash])[request.requestHash] ?? [], as: UTF8.self)
        #expect(body.contains("\"get_current_time\"") && body.contains("\"timezone\""), "the server's own schema was offered")
        await h.shutdown()
    }

    /// One server for every step of the run, started on first use and stopped at the end;
    /// a tool that fails is an error result, the others answer.
    @Test func oneServerServesEveryStepAndStopsWithTheRun() async throws {
        let h = try RunHarness()
        let log = h.directory.appendingPathComponent("starts.log").path
        let workflow = try project(h, mcp: testServer(["echo", "shout"], log: log), foreach: 6)
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        #expect(calls.count == 12, "each of 6 steps called both tools")
        let outputs = try store.blobs(Set(calls.map(\.outputHash)))
        for call in calls {
            let text = String(decoding: outputs[call.outputHash] ?? [], as: UTF8.self)
            if call.tool == "echo" {
                #expect(!call.isError && text.hasPrefix("echo: "), "\(text)")
            } else {
                #expect(call.isError && text.contains("Error executing tool shout"), "\(text)")
            }
        }
        let pids = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { Int32($0) }
        #expect(pids.count == 1, "started once: \(pids)")
        #expect(pids.allSatisfy { kill($0, 0) != 0 }, "stopped when the run ended")
        await h.shutdown()
    }

    @Test func aServerThatDiesMidCallIsAToolErrorNotAHang() async throws {
        let h = try RunHarness()
        let workflow = try project(h, mcp: testServer(["crash"]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.isError && call.error?.contains("exited with status 3") == true, "\(call.error ?? "")")
        await h.shutdown()
    }

    @Test func aReplayOffersTheRecordedMCPToolsAndStartsNoServer() async throws {
        let h = try RunHarness()
        let log = h.directory.appendingPathComponent("starts.log").path
        let workflow = try project(h, mcp: testServer(["echo"], log: log))
        let (original, _) = try await h.run(workflow)
        #expect(original.status == .succeeded, "\(original.error ?? "")")
        let report = try await h.replay(original.runID, workflow: workflow)
        #expect(report.reproduced, "\(report.divergence?.description ?? "")")
        let starts = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").count
        #expect(starts == 1, "only the original run started the server")
        await h.shutdown()
    }

    /// MCP messages are capped (issue 23: a server writing 2 GB without a newline drove
    /// Chorus to 2.2 GB; a 50 MB result ended as "no answer within 5 s"). A result past
    /// `max_message_bytes` is a clear tool error at once, and the server is stopped.
    @Test func anOversizedMessageIsAToolErrorAndTheServerIsStopped() async throws {
        let h = try RunHarness()
        var mcp = testServer(["flood"]).objectValue ?? [:]
        mcp["max_message_bytes"] = .number(Double(1 << 20))
        // A timeout far past the bound below, so "cut at once" and "timed out" stay apart on a
        // loaded machine (a 20 s bound against the default 30 s timeout took 20.6 s once).
        mcp["timeout_s"] = .number(120)
        let workflow = try project(h, mcp: .object(mcp))
        let started = ContinuousClock.now
        let (summary, store) = try await h.run(workflow)
        #expect(ContinuousClock.now - started < .seconds(60), "not a timeout")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first, "\(summary.error ?? "")")
        #expect(call.isError && call.error?.contains("larger than max_message_bytes (1048576 bytes)") == true, "\(call.error ?? "")")
        await h.shutdown()
    }

    /// A "server" that answers its first message with endless bytes and no newline: the
    /// start fails with the size error, with memory bounded by the cap.
    @Test func aServerThatNeverEndsItsMessageIsStopped() async throws {
        let h = try RunHarness()
        let flood = "import sys\nsys.stdin.readline()\nchunk = b'x' * 65536\nwhile True: sys.stdout.buffer.write(chunk)\n"
        let workflow = try project(h, mcp: ["command": [.string(Self.bin! + "/python"), "-c", .string(flood)], "max_message_bytes": 65536])
        let (summary, _) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("larger than max_message_bytes (65536 bytes) while starting") == true, "\(summary.error ?? "")")
        await h.shutdown()
    }

    /// A tool file's `arguments` are the file's: gone from the schema the model is offered,
    /// sent whatever the model says. Its `cwd` is where the server starts (the script is
    /// named relative to it here, so a server started elsewhere would not start at all).
    @Test func fixedArgumentsAreHiddenFromTheModelAndSentAndTheServerStartsInItsCwd() async throws {
        let h = try RunHarness()
        let fixtures = URL(fileURLWithPath: Self.testServer).deletingLastPathComponent().path
        let workflow = try project(
            h,
            mcp: [
                "command": [.string(Self.bin! + "/python"), "test_server.py"], "cwd": .string(fixtures), "tools": ["echo"],
                "arguments": ["text": "fixed by the tool file"],
            ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        let blobs = try store.blobs([call.inputHash, call.outputHash])
        #expect(blobs[call.inputHash] == Array("{}".utf8), "the model was offered no argument to send")
        #expect(String(decoding: blobs[call.outputHash] ?? [], as: UTF8.self) == "echo: fixed by the tool file")
        let request = try #require(try store.modelCalls(ofRun: summary.runID).first)
        let body = try JSONValue(parsing: try #require(try store.blobs([request.requestHash])[request.requestHash]))
        let offered = try #require(body["tools"]?.arrayValue?.first?["function"]?["parameters"])
        #expect(offered["properties"] == [:] && offered["required"] == [], "\(offered)")
        await h.shutdown()
    }

    /// A tool file's `defaults` are offered as the property's default, no longer required,
    /// and filled in when the model leaves them out; the simulated model takes a default.
    @Test func defaultsAreOfferedAsDefaultsAndFillWhatTheModelLeavesOut() async throws {
        let h = try RunHarness()
        let workflow = try project(h, mcp: testServer(["echo"], extra: ["defaults": ["text": "HEAD"]]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(String(decoding: try store.blobs([call.outputHash])[call.outputHash] ?? [], as: UTF8.self) == "echo: HEAD")
        let request = try #require(try store.modelCalls(ofRun: summary.runID).first)
        let body = try JSONValue(parsing: try #require(try store.blobs([request.requestHash])[request.requestHash]))
        let offered = try #require(body["tools"]?.arrayValue?.first?["function"]?["parameters"])
        #expect(offered["properties"]?["text"]?["default"] == "HEAD" && offered["required"] == [], "\(offered)")
        await h.shutdown()
    }

    /// An argument no offered tool takes is a typo the run names, before any call.
    @Test func anArgumentNoToolTakesEndsTheRunInOneLine() async throws {
        let h = try RunHarness()
        let workflow = try project(h, mcp: testServer(["echo"], extra: ["arguments": ["txt": "x"]]))
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(
            summary.error?.contains("tool 'server': arguments.txt: none of the server's tools offered takes an argument 'txt'") == true,
            "\(summary.error ?? "")")
        #expect(try store.toolCalls(ofRun: summary.runID).isEmpty)
        await h.shutdown()
    }
}
