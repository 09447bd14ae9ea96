import ChorusJSON
import Foundation
import Glibc
import Testing
import TestSupport

/// A real OpenTelemetry receiver: Arize Phoenix, from the pinned venv scripts/test builds
/// (`CHORUS_PHOENIX_BIN`), started on free loopback ports in a scratch directory.
final class PhoenixServer: @unchecked Sendable {
    let port: Int
    let pid: pid_t
    let directory: URL

    init() throws {
        let bin = try #require(ProcessInfo.processInfo.environment["CHORUS_PHOENIX_BIN"], "scripts/test sets CHORUS_PHOENIX_BIN")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("phoenix-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Below Linux's ephemeral range (32768-60999): the simulators and connections of the
        // tests beside it take ports from there, and a port Phoenix cannot bind ends it.
        port = 2 * Int.random(in: 5_000...9_999)
        let environment = [
            "PHOENIX_WORKING_DIR": directory.path, "PHOENIX_PORT": String(port), "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_GRPC_PORT": String(port + 1), "PHOENIX_TELEMETRY_ENABLED": "false",
        ]
        let log = open(directory.appendingPathComponent("phoenix.log").path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(log) }
        pid = try spawnChild(bin + "/phoenix", ["serve"], environment: environment, stdout: log, stderr: log)
        // Phoenix migrates its database and starts in 5-20 s on this machine; from a new
        // venv (bytecode not yet compiled) with the rest of the suite running, over 60 s.
        for _ in 0..<2400 {
            if let health = try? httpRequest(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), health.contains(" 200 ") { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? String(contentsOf: directory.appendingPathComponent("phoenix.log"), encoding: .utf8)) ?? ""
                Issue.record("Phoenix exited before answering: \(log.suffix(1500))")
                throw POSIXError(.ECHILD)
            }
            usleep(100_000)
        }
        stop()
        throw POSIXError(.ETIMEDOUT)
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Every span Phoenix holds in its default project, following its cursor.
    func spans() throws -> [JSONValue] {
        var all: [JSONValue] = []
        var cursor: String?
        repeat {
            let query = "limit=1000" + (cursor.map { "&cursor=\($0)" } ?? "")
            let response = try httpRequest(port: port, "GET /v1/projects/default/spans?\(query) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
            let page = try JSONValue(parsing: body)
            all += page["data"]?.arrayValue ?? []
            cursor = page["next_cursor"]?.stringValue
        } while cursor != nil
        return all
    }

    /// Phoenix's GraphQL API (the one its UI reads): the `data` of `query`'s answer.
    func graphQL(_ query: String) throws -> JSONValue {
        let body = JSONValue.object(["query": .string(query)]).text
        let response = try httpRequest(
            port: port,
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        let answer = try JSONValue(parsing: response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
        if let errors = answer["errors"] { Issue.record("GraphQL: \(errors.text)") }
        return answer["data"] ?? .null
    }

    /// The total cost Phoenix shows for trace `id` (its UI's Total Cost), nil when it has none.
    func totalCost(trace id: String) throws -> Double? {
        let data = try graphQL(#"{ projects { edges { node { name trace(traceId: "\#(id)") { costSummary { total { cost } } } } } } }"#)
        let projects = data["projects"]?["edges"]?.arrayValue ?? []
        return projects.lazy.compactMap { $0["node"]?["trace"]?["costSummary"]?["total"]?["cost"]?.numberValue }.first
    }

    func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        try? FileManager.default.removeItem(at: directory)
    }
}

extension CLI {
    @Suite(.serialized) struct OTelExportTests {
        /// The spans of trace `id` once Phoenix holds `count` of them, and the run's root
        /// among them when `withRoot` (it ends last, so it may be ingested after the others).
        private func trace(_ id: String, count: Int, withRoot: Bool = false, in phoenix: PhoenixServer) throws -> [JSONValue] {
            var spans: [JSONValue] = []
            for _ in 0..<150 {
                spans = try phoenix.spans().filter { $0["context"]?["trace_id"]?.stringValue == id }
                let rooted = !withRoot || spans.contains { $0["name"]?.stringValue?.hasPrefix("invoke_workflow ") == true }
                if spans.count >= count && rooted { break }
                usleep(100_000)
            }
            return spans
        }

        /// One span per run, step (plan + 200 items) and model call, parents right, GenAI
        /// attributes on every call; what Phoenix's UI shows: statuses OK, the root a CHAIN,
        /// steps AGENT, calls LLM.
        private func checkTree(_ spans: [JSONValue], port: Int) {
            #expect(spans.count == 403, "one span per run, step (plan + 200 items) and model call")
            let ids = Set(spans.compactMap { $0["context"]?["span_id"]?.stringValue })
            #expect(ids.count == 403)
            let roots = spans.filter { $0["parent_id"] == nil || $0["parent_id"] == .null }
            #expect(roots.count == 1 && roots.first?["name"]?.stringValue == "invoke_workflow fan")
            #expect(roots.first?["span_kind"] == "CHAIN" && roots.first?["status_code"] == "OK", "\(roots.first?.text ?? "")")
            #expect(spans.allSatisfy { $0["status_code"] == "OK" }, "a succeeded run: every span OK")
            #expect(spans.allSatisfy { span in span["parent_id"]?.stringValue.map(ids.contains) ?? true }, "every parent is in the trace")
            let chats = spans.filter { $0["name"]?.stringValue?.hasPrefix("chat ") == true }
            #expect(chats.count == 201 && chats.allSatisfy { $0["span_kind"] == "LLM" })
            for chat in chats {
                let attributes = chat["attributes"]
                #expect(attributes?["gen_ai.operation.name"] == "chat")
                #expect(attributes?["gen_ai.request.model"]?.stringValue != nil && attributes?["gen_ai.usage.input_tokens"]?.intValue != nil)
                #expect(attributes?["gen_ai.provider.name"] == "openai" && attributes?["server.port"]?.intValue == port)
            }
            let agents = spans.filter { $0["name"]?.stringValue?.hasPrefix("invoke_agent ") == true }
            #expect(agents.count == 201 && agents.allSatisfy { $0["span_kind"] == "AGENT" })
            #expect(agents.filter { $0["attributes"]?["chorus.fan_out_index"] != nil }.count == 200)
            let parentsOfChats = Set(chats.compactMap { $0["parent_id"]?.stringValue })
            #expect(parentsOfChats.isSubset(of: Set(agents.compactMap { $0["context"]?["span_id"]?.stringValue })), "each call under its step")
            #expect(!spans.contains { $0["attributes"]?["gen_ai.input.messages"] != nil }, "no message contents unless --otel-content")
        }

        private func traceID(_ runID: String) throws -> String {
            // The same derivation as GenAISpans.traceID: SHA-256 of "chorus trace RUN", 16 bytes.
            let script = "import hashlib,sys; print(hashlib.sha256(('chorus trace ' + sys.argv[1]).encode()).hexdigest()[:32])"
            return try execute("/usr/bin/python3", ["-c", script, runID], scratch: FileManager.default.temporaryDirectory).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test func aLiveRunAndAnOldRunBothArriveInPhoenixAsCompleteSpanTrees() throws {
            let project = try CLIProject(subtasks: 200, maxParallel: 64)
            defer { project.stop() }
            // An old run, recorded with no collector anywhere.
            let old = try runChorus(project.arguments(["--json"]))
            #expect(old.status == 0, "\(old.stderr)")
            let oldID = try #require(try JSONValue(parsing: old.stdout)["run_id"]?.stringValue)
            let phoenix = try PhoenixServer()
            defer { phoenix.stop() }
            // Phoenix prices an LLM span itself, from llm.model_name and the token counts, with
            // its own table; a model added in its settings (here through its API) wins, so it
            // is given the project's price for sim-small (1 $/Mtok each way; planner is free).
            let added = try phoenix.graphQL(
                #"mutation { createModel(input: {name: "sim-small", namePattern: "^sim-small$", costs: [{tokenType: "input", costPerMillionTokens: 1, kind: PROMPT}, {tokenType: "output", costPerMillionTokens: 1, kind: COMPLETION}]}) { model { id } } }"#
            )
            #expect(added["createModel"]?["model"]?["id"] != nil, "\(added.text)")
            usleep(6_000_000)  // Phoenix reloads its models every 5 s.

            let live = try runChorus(project.arguments(["--json", "--otlp-endpoint", phoenix.endpoint]))
            #expect(live.status == 0, "\(live.stderr)")
            #expect(live.stderr.contains("otlp: 403 spans exported") && !live.stderr.contains("dropped"), "\(live.stderr)")
            let liveRun = try JSONValue(parsing: live.stdout)
            let liveID = try #require(liveRun["run_id"]?.stringValue)
            checkTree(try trace(try traceID(liveID), count: 403, in: phoenix), port: project.port)
            // Phoenix's Total Cost for the trace is the run's recorded cost (which `--json`
            // rounds to a millionth of a dollar).
            let recordedCost = try #require(liveRun["cost"]?.numberValue)
            let shown = try #require(try phoenix.totalCost(trace: try traceID(liveID)))
            #expect(recordedCost > 0 && abs(shown - recordedCost) < 2e-6, "Phoenix shows $\(shown), the run cost $\(recordedCost)")

            let export = try runChorus(
                ["runs", "export", oldID, "--format", "otlp", "--endpoint", phoenix.endpoint] + project.trace,
                environment: ["OTEL_SERVICE_NAME": "chorus-test"])
            #expect(export.status == 0, "\(export.stderr)")
            #expect(export.stderr.contains("403 spans"), "\(export.stderr)")
            checkTree(try trace(try traceID(oldID), count: 403, in: phoenix), port: project.port)

            // An as_completed lead: a plan of 200, then (after 100 findings) one cut to the 3
            // left; its calls' spans say what they saw and what was cut.
            try project.writeLiveLead(maxSubtasks: 203, replanAfter: 100, maxParallel: 64)
            let lead = try runChorus(project.arguments(["--json"], workflow: "live"))
            #expect(lead.status == 0, "\(lead.stderr)")
            let leadID = try #require(try JSONValue(parsing: lead.stdout)["run_id"]?.stringValue)
            let sent = try runChorus(["runs", "export", leadID, "--format", "otlp", "--endpoint", phoenix.endpoint] + project.trace)
            #expect(sent.status == 0, "\(sent.stderr)")
            let leadSpans = try trace(try traceID(leadID), count: 1 + 2 + 203 + 205, in: phoenix)
            let second = try #require(
                leadSpans.first { $0["attributes"]?["chorus.step"] == "research/round-2/plan" && $0["attributes"]?["chorus.step_kind"] == "plan" }?[
                    "attributes"])
            let saw = second["chorus.lead.saw"]?.arrayValue ?? []
            #expect(second["chorus.lead.saw_count"]?.intValue == saw.count && saw.count >= 100, "\(second)")
            #expect(saw.allSatisfy { $0.stringValue?.hasPrefix("research/round-1/") == true })
            #expect(second["chorus.lead.planned"] == 200 && second["chorus.lead.kept"] == 3 && second["chorus.lead.dropped"] == 197, "\(second)")

            // A failed run: every span with an outcome is an ERROR, with its code.
            let failing = try CLIProject(simArguments: ["--error-rate", "1"])
            defer { failing.stop() }
            let failed = try runChorus(failing.arguments(["--json", "--otlp-endpoint", phoenix.endpoint]))
            #expect(failed.status == 1, "\(failed.stderr)")
            let failedRun = try JSONValue(parsing: failed.stdout)
            let code = try #require(failedRun["error_code"]?.stringValue)
            let failedSpans = try trace(try traceID(try #require(failedRun["run_id"]?.stringValue)), count: 3, withRoot: true, in: phoenix)
            let root = try #require(failedSpans.first { $0["name"]?.stringValue?.hasPrefix("invoke_workflow ") == true })
            #expect(root["status_code"] == "ERROR" && root["attributes"]?["error.type"] == .string(code), "\(root.text)")
            #expect(root["status_message"]?.stringValue?.contains("HTTP 500") == true, "\(root.text)")
            #expect(failedSpans.count >= 3 && failedSpans.allSatisfy { $0["status_code"] == "ERROR" }, "the plan step and its calls too")
            #expect(failedSpans.contains { $0["span_kind"] == "LLM" && $0["attributes"]?["error.type"] == "500" })
        }

        @Test func aDeadCollectorLeavesTheRunAsItWasAndCountsWhatItDropped() throws {
            let project = try CLIProject(subtasks: 20)
            defer { project.stop() }
            let run = try runChorus(project.arguments(["--json", "--otlp-endpoint", "http://127.0.0.1:9"]))
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try JSONValue(parsing: run.stdout)["status"] == "succeeded")
            #expect(run.stderr.contains("otlp: 0 spans exported, 43 dropped"), "\(run.stderr)")
            let env = try runChorus(project.arguments(["--json"]), environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"])
            #expect(env.status == 0 && env.stderr.contains("43 dropped"), "the standard variable turns export on: \(env.stderr)")
            let off = try runChorus(
                project.arguments(["--json"]), environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"])
            #expect(off.status == 0 && !off.stderr.contains("otlp:"), "\(off.stderr)")
        }

        /// A collector that takes the connection and never answers (issue 23: it added the
        /// exporter's 10 s request timeout to every run). The run's end waits at most the
        /// exporter's 2 s limit, however long the request in flight would have waited.
        @Test func aStalledCollectorDelaysTheEndOfARunByAtMostItsLimit() throws {
            let stalled = try ScriptedServer(
                handler: """
                    class H(http.server.BaseHTTPRequestHandler):
                        def do_POST(self):
                            time.sleep(600)
                        def log_message(self, *a): pass
                    """)
            defer { stalled.stop() }
            let project = try CLIProject(simArguments: ["--latency-ms", "600"], subtasks: 4)
            defer { project.stop() }
            let started = ContinuousClock.now
            let run = try runChorus(project.arguments(["--json", "--otlp-endpoint", "http://127.0.0.1:\(stalled.port)"]))
            let wall = ContinuousClock.now - started
            let json = try JSONValue(parsing: run.stdout)
            let elapsed = json["elapsed_s"]?.numberValue ?? 0
            #expect(run.status == 0 && json["status"] == "succeeded", "\(run.stderr)")
            #expect(elapsed > 1.1, "the run outlived the exporter's first send (\(elapsed) s)")
            #expect(wall < .seconds(elapsed + 3.5), "the run took \(elapsed) s, the process \(wall)")
            #expect(run.stderr.contains("dropped"), "\(run.stderr)")
        }

        @Test func theExportSaysWhyWhenTheReceiverIsDownOrMisconfigured() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let run = try runChorus(project.arguments(["--json"]))
            let runID = try #require(try JSONValue(parsing: run.stdout)["run_id"]?.stringValue)
            let down = try runChorus(["runs", "export", runID, "--format", "otlp", "--endpoint", "http://127.0.0.1:9"] + project.trace)
            #expect(down.status == 1)
            #expect(down.stderr.contains("http://127.0.0.1:9/v1/traces"), "\(down.stderr)")
            let grpc = try runChorus(
                ["runs", "export", runID, "--format", "otlp"] + project.trace,
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])
            #expect(grpc.status == 2 && grpc.stderr.contains("http/protobuf or http/json"), "\(grpc.stderr)")
            let secret = try runChorus(
                ["runs", "export", runID, "--format", "otlp", "--endpoint", "http://127.0.0.1:9"] + project.trace,
                environment: ["OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=sk-otel-secret-123"])
            #expect(!secret.stderr.contains("sk-otel-secret-123"), "a header value never reaches a message")
            let json = try runChorus(["runs", "export", runID, "--format", "otlp"] + project.trace)
            #expect(json.status == 0)
            let document = try JSONValue(parsing: json.stdout)
            let spans = document["resourceSpans"]?.arrayValue?.first?["scopeSpans"]?.arrayValue?.first?["spans"]?.arrayValue ?? []
            #expect(spans.count == 9, "run, 4 steps, 4 calls: OTLP/JSON on stdout with no endpoint")
            #expect(spans.first?["traceId"]?.stringValue?.count == 32)
        }
    }
}
