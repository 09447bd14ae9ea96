import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// Governance tried as an attacker and a careless provider would (issue 23): each test here
/// failed before its fix.
extension CLI {
    @Suite struct GovernanceAttackTests {
        /// A 600-item fan-out under a call budget: before, 3 runs of 8 never ended (a waiter for
        /// budget room registered after the last settle had refused the others). Every run ends,
        /// and a budget stop is a failure with exit 3 even though min_success tolerates the rest.
        @Test func aBudgetedFanOutAlwaysEndsAndSaysTheBudgetStoppedIt() throws {
            let project = try CLIProject(subtasks: 600, maxParallel: 600)
            defer { project.stop() }
            try project.setMinSuccess(0.01)
            try project.editModel("planner") { $0["max_tokens"] = 30_000 }  // room for 600 subtasks, no more
            for budget in [
                ["--budget-calls", "37"], ["--budget-calls", "37"], ["--budget-calls", "37"], ["--budget-usd", "0.005"],
                ["--budget-tokens", "40000"],
            ] {
                let run = try execute(chorusBinary.path, project.arguments(budget + ["--json", "--max-parallel", "600"]), timeout: .seconds(60))
                #expect(!run.timedOut, "\(budget): the run never ended")
                #expect(run.status == 3, "\(budget): \(run.stderr.suffix(400))")
                let json = try JSONValue(parsing: Array(run.stdout.utf8))
                #expect(json["status"] == "failed" && json["error_code"] == "budget_exhausted", "\(budget): \(run.stdout.prefix(300))")
                #expect(json["partial"] == true && json["output"]?.arrayValue?.isEmpty == false, "what finished is kept, marked partial")
                let notRun = json["failed_items"]?.arrayValue?.count ?? 0
                #expect(notRun > 0 && (json["error"]?.stringValue ?? "").contains("\(notRun) steps failed or not run"), "\(json["error"] ?? .null)")
            }
        }

        /// SIGTERM while a step waits (here for a per-minute window) interrupts the run; before,
        /// the waiting steps ended as "not run", min_success tolerated them and the run said succeeded.
        @Test func aSignalDuringAWaitInterruptsTheRun() throws {
            let project = try CLIProject(subtasks: 4, maxParallel: 4)
            defer { project.stop() }
            try project.setMinSuccess(0.25)
            try project.editModel("small") { $0["requests_per_minute"] = 2 }
            let run = try RunningChorus(project.arguments(["--json"]))
            let deadline = ContinuousClock.now + .seconds(30)
            while try project.simRequests() < 3 && ContinuousClock.now < deadline { usleep(20_000) }  // the plan and two items
            usleep(300_000)
            run.process.terminate()
            let stdout = run.readStdout()
            let (status, stderr) = run.finish()
            let json = try JSONValue(parsing: Array(stdout))
            #expect(json["status"] == "interrupted" && json["error_code"] == "interrupted", "\(String(decoding: stdout, as: UTF8.self)) \(stderr)")
            #expect(status != 0)
        }

        /// A provider that reports 50 × max_tokens output tokens on every call, against a $0.05
        /// budget: before, $0.70-0.80 was recorded (15×). Each call is charged at most what it
        /// reserved, fails as a provider fault (retried, then escalated) and says so.
        @Test func aProviderThatOverreportsUsageCannotOverspend() throws {
            let liar = try Self.overreportingProvider(message: #"{"role": "assistant", "content": "fine"}"#, finish: "stop")
            defer { liar.stop() }
            try checkSpendStaysInBudget(provider: liar, stream: false, expecting: "output tokens for max_tokens 50")
        }

        /// A stream that runs far past max_tokens and reports no usage: before, charged at four
        /// bytes a token for everything that arrived (3× the budget).
        @Test func aStreamPastMaxTokensWithoutUsageCannotOverspend() throws {
            let flood = try ScriptedServer(
                handler: """
                    class H(http.server.BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.0"
                        def do_POST(self):
                            self.rfile.read(int(self.headers.get("Content-Length", 0)))
                            self.send_response(200); self.send_header("Content-Type", "text/event-stream"); self.end_headers()
                            event = b'data: {"choices":[{"index":0,"delta":{"content":"word word word "}}]}\\n\\n'
                            self.wfile.write(event * 3000)
                            self.wfile.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\\n\\ndata: [DONE]\\n\\n')
                        def log_message(self, *a): pass
                    """)
            defer { flood.stop() }
            try checkSpendStaysInBudget(provider: flood, stream: true, expecting: "no usage reported")
        }

        /// A regex guard `(a+)+$` on input an attacker controls: before, one check ran over 60 s
        /// on the loop and SIGTERM was not honoured for 16 minutes. Each check now stops at its
        /// budget with a denial saying so, off the loop: a signal is honoured at once, and
        /// `chorus validate` warns about the pattern.
        @Test func aCatastrophicGuardPatternIsBoundedAndSignalsAreHonoured() throws {
            let project = try CLIProject(subtasks: 8, maxParallel: 8)
            defer { project.stop() }
            try project.write(
                "agents/worker.json",
                [
                    "name": "worker", "model": "small", "prompt": "{{item}} aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
                    "retries": 0, "guards": ["input": [["type": "regex", "pattern": "(a+)+$"]]],
                ])
            let lint = try runChorus(["validate", project.directory.appendingPathComponent("agents/worker.json").path])
            #expect(lint.status == 0 && lint.stderr.contains("warning:") && lint.stderr.contains("nested quantifiers in (a+)+"), "\(lint.stderr)")
            let run = try RunningChorus(project.arguments(["--json"]))
            let deadline = ContinuousClock.now + .seconds(30)
            while try project.simRequests() < 1 && ContinuousClock.now < deadline { usleep(20_000) }  // the plan: the items are in their guards
            usleep(800_000)
            let signalled = ContinuousClock.now
            run.process.terminate()
            let stdout = run.readStdout()
            let (status, stderr) = run.finish()
            let took = ContinuousClock.now - signalled
            #expect(took < .seconds(3), "SIGTERM took \(took) to end the run")
            let json = try JSONValue(parsing: Array(stdout))
            #expect(json["status"] == "interrupted" && status != 0, "\(stderr)")
            #expect(try project.simRequests() == 1, "no item passed its guard")
            // Uninterrupted, each step is denied with the reason.
            let whole = try execute(chorusBinary.path, project.arguments(["--json", "--max-parallel", "8"]), timeout: .seconds(120))
            #expect(!whole.timedOut && whole.status != 0)
            let items = try JSONValue(parsing: Array(whole.stdout.utf8))["failed_items"]?.arrayValue ?? []
            #expect(
                items.count == 8 && items.allSatisfy { ($0["reason"]?.stringValue ?? "").contains("regex exceeded its time budget (1s)") },
                "\(items.first ?? .null)")
        }

        /// A provider that asks for tools while reporting more output than max_tokens allows: the
        /// fault wins (before, the tool calls did, and a lying provider could run tools with it).
        @Test func aToolCallAnswerWithImpossibleUsageRunsNoTool() throws {
            let call = #"{"id": "c1", "type": "function", "function": {"name": "mark", "arguments": "{}"}}"#
            let liar = try Self.overreportingProvider(
                message: #"{"role": "assistant", "content": None, "tool_calls": ["# + call + "]}", finish: "tool_calls")
            defer { liar.stop() }
            let project = try CLIProject(subtasks: 2, maxParallel: 2)
            defer { project.stop() }
            let marker = project.directory.appendingPathComponent("ran").path
            try FileManager.default.createDirectory(at: project.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
            try project.write(
                "tools/mark.json",
                [
                    "name": "mark", "description": "Marks.", "input_schema": ["type": "object"],
                    "subprocess": ["argv": ["sh", "-c", "touch \"$0\"", .string(marker)]],
                ])
            try project.editModel("liar") { model in
                model = [
                    "provider": "openai", "base_url": .string(liar.baseURL), "model": "m", "stream": false, "max_tokens": 50,
                    "price": ["input_per_mtok": 1, "output_per_mtok": 100],
                ]
            }
            try project.write(
                "agents/worker.json",
                ["name": "worker", "model": "liar", "prompt": "{{item}}", "retries": 1, "timeout_s": 30, "tools": ["mark"]])
            let run = try execute(chorusBinary.path, project.arguments(["--json"]), timeout: .seconds(120))
            #expect(!run.timedOut && run.status != 0)
            let runID = try #require(try JSONValue(parsing: Array(run.stdout.utf8))["run_id"]?.stringValue, "\(run.stdout) \(run.stderr)")
            let store = try TraceStore(path: project.db, readOnly: true)
            let calls = try store.modelCalls(ofRun: runID).filter { $0.model == "liar" }
            #expect(
                !calls.isEmpty && calls.allSatisfy { $0.outcome == .invalid && ($0.error ?? "").contains("max_tokens 50") },
                "\(calls.map { "\(String(describing: $0.outcome)) \($0.error ?? "")" })")
            #expect(try store.toolCalls(ofRun: runID).isEmpty, "no tool ran")
            #expect(!FileManager.default.fileExists(atPath: marker))
        }

        /// A provider that answers every request with `message` (a Python literal) and reports
        /// 50 × max_tokens output tokens.
        private static func overreportingProvider(message: String, finish: String) throws -> ScriptedServer {
            try ScriptedServer(
                handler: """
                    class H(http.server.BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"
                        def do_POST(self):
                            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                            limit = body.get("max_tokens") or 50
                            out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                "choices": [{"index": 0, "message": \(message), "finish_reason": "\(finish)"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 50 * limit, "total_tokens": 10 + 50 * limit}}).encode()
                            self.send_response(200); self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
                        def log_message(self, *a): pass
                    """)
        }

        /// Runs 12 items on `provider` (an expensive model: $100 per million output tokens,
        /// max_tokens 50) under a $0.05 budget and checks what the trace says was spent.
        private func checkSpendStaysInBudget(provider: ScriptedServer, stream: Bool, expecting fault: String) throws {
            let project = try CLIProject(subtasks: 12, maxParallel: 12)
            defer { project.stop() }
            try project.editModel("liar") { model in
                model = [
                    "provider": "openai", "base_url": .string(provider.baseURL), "model": "m", "stream": .bool(stream),
                    "max_tokens": 50, "price": ["input_per_mtok": 1, "output_per_mtok": 100],
                ]
            }
            try project.write("agents/worker.json", ["name": "worker", "model": "liar", "prompt": "{{item}}", "retries": 2, "timeout_s": 30])
            let run = try execute(chorusBinary.path, project.arguments(["--json", "--budget-usd", "0.05"]), timeout: .seconds(120))
            #expect(!run.timedOut)
            let json = try JSONValue(parsing: Array(run.stdout.utf8))
            let runID = try #require(json["run_id"]?.stringValue, "\(run.stdout) \(run.stderr)")
            let store = try TraceStore(path: project.db, readOnly: true)
            let calls = try store.modelCalls(ofRun: runID).filter { $0.model == "liar" }
            let spent = calls.reduce(0.0) { $0 + $1.cost }
            #expect(!calls.isEmpty && spent <= 0.05 + 1e-9, "spent $\(spent) of a $0.05 budget over \(calls.count) calls")
            #expect(calls.allSatisfy { $0.tokensOut <= 50 }, "no call is charged past max_tokens")
            #expect(calls.allSatisfy { ($0.error ?? "").contains(fault) }, "\(calls.first?.error ?? "no error")")
            let capped = try store.events(ofRun: runID).filter { $0.kind == "usage_capped" }
            #expect(capped.count == calls.count, "each capped call is an audited event")
            #expect(run.status != 0)
        }
    }
}

extension CLIProject {
    /// Changes a project file's top-level object in place.
    func editJSON(_ path: String, _ change: (inout [String: JSONValue]) -> Void) throws {
        var object = try JSONValue(parsing: Array(try Data(contentsOf: directory.appendingPathComponent(path)))).objectValue ?? [:]
        change(&object)
        try write(path, .object(object))
    }

    /// Edits (or adds) the object at `outer.inner` of a project file (a model of chorus.json, a node of a workflow).
    func editEntry(_ path: String, _ outer: String, _ inner: String, _ change: (inout [String: JSONValue]) -> Void) throws {
        try editJSON(path) { object in
            var entries = object[outer]?.objectValue ?? [:]
            var entry = entries[inner]?.objectValue ?? [:]
            change(&entry)
            entries[inner] = .object(entry)
            object[outer] = .object(entries)
        }
    }

    /// Sets the fan-out node's `min_success` in workflows/fan.json.
    func setMinSuccess(_ fraction: Double) throws {
        try editEntry("workflows/fan.json", "nodes", "work") { $0["min_success"] = .number(fraction) }
    }

    /// Changes (or adds) model `name` in chorus.json.
    func editModel(_ name: String, _ change: (inout [String: JSONValue]) -> Void) throws {
        try editEntry("chorus.json", "models", name, change)
    }
}
