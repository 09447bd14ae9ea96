import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Agents that call tools, end to end: the simulator's `tooluser-` model asks for the tools
/// a request offers, Chorus runs them (real subprocesses, real HTTP on loopback), records
/// every call, and the model answers from the results.
@Suite struct ToolRunTests {
    private let objectSchema: JSONValue = ["type": "object", "required": ["text"], "properties": ["text": ["type": "string"]]]

    /// One agent node `ask` with `tools`; the model is a `tooluser-` (or `toolloop-`) model.
    private func project(
        _ h: RunHarness, tools: [String: JSONValue], model: String = "tooluser-small",
        provider: String = "openai", agentExtra: [String: JSONValue] = [:]
    ) throws -> String {
        try FileManager.default.createDirectory(at: h.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
        for (name, body) in tools {
            var file = body.objectValue ?? [:]
            file["name"] = .string(name)
            file["description"] = file["description"] ?? .string("The \(name) tool.")
            try h.write("tools/\(name).json", .object(file))
        }
        try h.writeConfig(["small": ["model": .string(model), "provider": .string(provider)]])
        var extra: [String: JSONValue] = ["tools": .array(tools.keys.sorted().map { .string($0) })]
        extra.merge(agentExtra) { $1 }
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: extra)
        return try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
    }

    private func subprocess(_ argv: [String], _ extra: [String: JSONValue] = [:], schema: JSONValue? = nil) -> JSONValue {
        var process: [String: JSONValue] = ["argv": .array(argv.map { .string($0) })]
        process.merge(extra) { $1 }
        return ["input_schema": schema ?? objectSchema, "subprocess": .object(process)]
    }

    @Test(arguments: ["openai", "anthropic"])
    func aSubprocessToolsOutputReachesTheModelAndEveryCallIsTraced(provider: String) async throws {
        let h = try RunHarness()
        let workflow = try project(h, tools: ["echo": subprocess(["cat"])], provider: provider)
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let answer = try #require(summary.output?.stringValue)
        let calls = try store.toolCalls(ofRun: summary.runID)
        try #require(calls.count == 1)
        #expect(calls[0].tool == "echo" && calls[0].kind == "subprocess" && !calls[0].isError && calls[0].exitStatus == 0)
        let blobs = try store.blobs([calls[0].inputHash, calls[0].outputHash])
        let input = try JSONValue(parsing: try #require(blobs[calls[0].inputHash]))
        #expect(input["text"]?.stringValue != nil, "the input satisfies the tool's schema")
        #expect(blobs[calls[0].outputHash] == blobs[calls[0].inputHash], "cat echoes the JSON on stdin")
        #expect(answer.hasPrefix("From the tools: {"), "the model answered from the tool's output: \(answer)")
        let modelCalls = try store.modelCalls(ofRun: summary.runID)
        #expect(modelCalls.map(\.callOutcome) == [.toolCalls, .answered])
        #expect(try store.verify(summary.runID).intact)
        await h.shutdown()
    }

    /// A key a tool file passes in `env`, printed by the tool (issue 23: stored verbatim):
    /// masked before the model or the trace sees it, in stdout and stderr alike.
    @Test func aKeyAToolIsGivenIsRedactedFromWhatItPrints() async throws {
        let key = "sk-tool-" + UUID().uuidString
        setenv("CHORUS_TEST_TOOL_KEY", key, 1)
        defer { unsetenv("CHORUS_TEST_TOOL_KEY") }
        let h = try RunHarness()
        let workflow = try project(
            h,
            tools: [
                "leaky": subprocess(
                    ["sh", "-c", "cat >/dev/null; echo \"key=$CHORUS_TEST_TOOL_KEY\"; exit 1"],
                    ["env": ["PATH", "CHORUS_TEST_TOOL_KEY"]])
            ])
        let (summary, _) = try await h.run(workflow)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: h.dbPath))
        #expect(bytes.range(of: Data(key.utf8)) == nil, "the key is not in the trace database")
        let answer = summary.output?.text ?? ""
        #expect(answer.contains("key=[redacted]") && !answer.contains(key), "the model saw it masked too: \(answer)")
        let store = try TraceStore(path: h.dbPath)
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        let output = String(decoding: try store.blobs([call.outputHash])[call.outputHash] ?? [], as: UTF8.self)
        #expect(output.contains("key=[redacted]"), "\(output)")
        // Output cut at max_output_bytes in the middle of the key: its first part is masked too.
        let cut = try project(
            h,
            tools: [
                "leaky": subprocess(
                    ["sh", "-c", "cat >/dev/null; printf 'key=%s' \"$CHORUS_TEST_TOOL_KEY\""],
                    ["env": ["PATH", "CHORUS_TEST_TOOL_KEY"], "max_output_bytes": 14])
            ])
        let (second, _) = try await h.run(cut)
        let cutCall = try #require(try store.toolCalls(ofRun: second.runID).first)
        let text = String(decoding: try store.blobs([cutCall.outputHash])[cutCall.outputHash] ?? [], as: UTF8.self)
        #expect(text.hasPrefix("key=[redacted]\n[output truncated at 14 bytes]") && !text.contains(String(key.prefix(10))), "\(text)")
        await h.shutdown()
    }

    @Test func aReplayServesToolResultsFromTheTraceAndRunsNothing() async throws {
        let h = try RunHarness()
        let marker = h.directory.appendingPathComponent("ran").path
        let workflow = try project(h, tools: ["mark": subprocess(["sh", "-c", "cat > \"$0\"; echo done", marker])])
        let (original, _) = try await h.run(workflow)
        #expect(original.status == .succeeded, "\(original.error ?? "")")
        try FileManager.default.removeItem(atPath: marker)
        // Every tool now points at something that would fail.
        try h.write(
            "tools/mark.json",
            [
                "name": "mark", "description": "The mark tool.", "input_schema": objectSchema,
                "subprocess": ["argv": ["/nonexistent/tool"]],
            ])
        let before = h.stats()["requests"]?.intValue ?? 0
        let report = try await h.replay(original.runID, workflow: workflow)
        #expect(report.reproduced, "\(report.divergence?.description ?? "")")
        #expect((h.stats()["requests"]?.intValue ?? 0) == before, "no model call")
        #expect(!FileManager.default.fileExists(atPath: marker), "no tool ran")
        let store = try TraceStore(path: h.dbPath)
        #expect(try store.toolCalls(ofRun: report.summary.runID).count == 1, "the served tool call is traced in the replay too")
        await h.shutdown()
    }

    /// A fork runs tools live from its live point on.
    @Test func aForkRunsTheToolsOfItsLivePart() async throws {
        let h = try RunHarness()
        let marker = h.directory.appendingPathComponent("ran").path
        let workflow = try project(h, tools: ["mark": subprocess(["sh", "-c", "cat >> \"$0\"; echo done", marker])])
        let (original, _) = try await h.run(workflow)
        try FileManager.default.removeItem(atPath: marker)
        let report = try await h.replay(original.runID, workflow: workflow, fork: .init(liveFrom: "ask", modelSwaps: [:], client: h.client))
        #expect(report.summary.status == .succeeded, "\(report.summary.error ?? "")")
        #expect(FileManager.default.fileExists(atPath: marker), "the tool ran in the live part")
        await h.shutdown()
    }

    @Test func aToolThatTimesOutIsKilledAndTheModelIsToldSo() async throws {
        let h = try RunHarness()
        let workflow = try project(h, tools: ["slow": subprocess(["sleep", "30"], ["timeout_s": 0.3, "stdin": "none"])])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "the model answers from the error: \(summary.error ?? "")")
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.isError && call.error?.contains("timed out after") == true, "\(call.error ?? "")")
        #expect(summary.output?.stringValue?.contains("timed out") == true)
        await h.shutdown()
    }

    @Test func outputOverTheCapIsCutAndMarked() async throws {
        let h = try RunHarness()
        let workflow = try project(
            h,
            tools: [
                "big": subprocess(
                    ["head", "-c", "200000", "/dev/zero"],
                    ["max_output_bytes": 1000, "stdin": "none"])
            ])
        let (summary, store) = try await h.run(workflow)
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        let output = try #require(try store.blobs([call.outputHash])[call.outputHash])
        #expect(output.count < 1100 && String(decoding: output, as: UTF8.self).hasSuffix("[output truncated at 1000 bytes]"))
        await h.shutdown()
    }

    @Test func aNonZeroExitIsAToolErrorWithItsStatus() async throws {
        let h = try RunHarness()
        let workflow = try project(h, tools: ["fails": subprocess(["sh", "-c", "echo broken >&2; exit 3"], ["stdin": "none"])])
        let (summary, store) = try await h.run(workflow)
        let call = try #require(try store.toolCalls(ofRun: summary.runID).first)
        #expect(call.isError && call.exitStatus == 3 && call.error == "exit status 3")
        let output = String(decoding: try #require(try store.blobs([call.outputHash])[call.outputHash]), as: UTF8.self)
        #expect(output.contains("broken"), "the model sees stderr: \(output)")
        await h.shutdown()
    }

    /// Arguments are rendered into argv, never through a shell; only allow-listed variables
    /// reach the tool, so a model's API key does not.
    @Test func argvIsNeverAShellAndOnlyAllowedVariablesReachTheTool() async throws {
        let h = try RunHarness()
        setenv("CHORUS_TOOL_TEST_SECRET", "sk-never-leaks", 1)
        defer { unsetenv("CHORUS_TOOL_TEST_SECRET") }
        let workflow = try project(
            h,
            tools: [
                "say": subprocess(["echo", "{{input.text}}; echo pwned"], ["stdin": "none"]),
                "env": subprocess(["env"], ["stdin": "none", "env": ["PATH"]]),
            ])
        let (summary, store) = try await h.run(workflow)
        let calls = try store.toolCalls(ofRun: summary.runID)
        let outputs = try store.blobs(Set(calls.map(\.outputHash)))
        let say = String(decoding: outputs[try #require(calls.first { $0.tool == "say" }).outputHash] ?? [], as: UTF8.self)
        #expect(say.hasSuffix("; echo pwned\n"), "the text came back verbatim, nothing was executed: \(say)")
        let env = String(decoding: outputs[try #require(calls.first { $0.tool == "env" }).outputHash] ?? [], as: UTF8.self)
        #expect(env.contains("PATH=") && !env.contains("CHORUS_TOOL_TEST_SECRET") && !env.contains("HOME="), "\(env)")
        await h.shutdown()
    }

    /// The calls of one answer run at once: two 400 ms tools overlap in time.
    @Test func theToolCallsOfOneAnswerRunConcurrently() async throws {
        let h = try RunHarness()
        let workflow = try project(
            h,
            tools: [
                "a": subprocess(["sleep", "0.4"], ["stdin": "none"]),
                "b": subprocess(["sleep", "0.4"], ["stdin": "none"]),
            ])
        let (summary, store) = try await h.run(workflow)
        let calls = try store.toolCalls(ofRun: summary.runID)
        try #require(calls.count == 2)
        #expect(calls.map(\.callIndex) == [0, 1] && Set(calls.map(\.attempt)).count == 1, "one answer, two calls")
        let ends = calls.map { $0.startedAt + $0.latencyMs / 1000 }
        #expect(calls[1].startedAt < ends[0] && calls[0].startedAt < ends[1], "their run times overlap")
        await h.shutdown()
    }

    @Test func anHTTPToolReachesItsHostAndAnyOtherHostIsRefused() async throws {
        let h = try RunHarness()
        let port = h.simulator.port
        let workflow = try project(
            h,
            tools: [
                "stats": ["input_schema": objectSchema, "http": ["method": "GET", "url": .string("http://127.0.0.1:\(port)/stats")]],
                "elsewhere": [
                    "input_schema": ["type": "object", "required": ["host"], "properties": ["host": ["enum": ["localhost"]]]],
                    "http": ["method": "GET", "url": .string("http://{{input.host}}:\(port)/stats"), "allow_hosts": ["127.0.0.1"]],
                ],
            ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let calls = try store.toolCalls(ofRun: summary.runID)
        let outputs = try store.blobs(Set(calls.map(\.outputHash)))
        let stats = try #require(calls.first { $0.tool == "stats" })
        #expect(!stats.isError && stats.exitStatus == 200)
        #expect(try JSONValue(parsing: outputs[stats.outputHash] ?? [])["requests"] != nil, "the sim's own /stats came back")
        let refused = try #require(calls.first { $0.tool == "elsewhere" })
        #expect(refused.isError && refused.error?.contains("host localhost is not in the tool's allow_hosts") == true, "\(refused.error ?? "")")
        await h.shutdown()
    }

    @Test func maxToolRoundsEndsAModelThatNeverStopsCallingTools() async throws {
        let h = try RunHarness()
        let workflow = try project(
            h, tools: ["echo": subprocess(["cat"])], model: "toolloop-small",
            agentExtra: ["max_tool_rounds": 2, "retries": 0])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("still asking for tools after max_tool_rounds (2)") == true, "\(summary.error ?? "")")
        #expect(try store.toolCalls(ofRun: summary.runID).count == 2, "two rounds ran")
        #expect(try store.modelCalls(ofRun: summary.runID).count == 3)
        await h.shutdown()
    }

    @Test func chorusValidateReportsAMissingToolAndABadToolFile() async throws {
        let h = try RunHarness()
        let workflow = try project(h, tools: ["echo": subprocess(["cat"])])
        try h.agent("asker", model: "small", prompt: "{{inputs.question}}", extra: ["tools": ["echo", "missing"]])
        try h.write("tools/echo.json", ["name": "echo", "subprocess": ["argv": ["cat", "{{#open}}"]]])
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path)
        else { Issue.record("expected validation errors"); return }
        let text = failure.issues.map(\.description).joined(separator: "\n")
        #expect(text.contains("no tool named 'missing'"), "\(text)")
        #expect(text.contains("expected input_schema"), "\(text)")
        #expect(text.contains("$.subprocess.argv[1]") && text.contains("not a valid Mustache template"), "\(text)")
        await h.shutdown()
    }
}
