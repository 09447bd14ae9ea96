import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// A scratch directory with chorus.json pointing at a `chorus sim` process (the simulated
/// provider, a real HTTP server) and a fan-out workflow.
final class CLIProject: @unchecked Sendable {
    let directory: URL
    let sim: RunningChorus
    let port: Int

    init(simArguments: [String] = [], subtasks: Int = 30, maxParallel: Int = 10) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("agents"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("workflows"), withIntermediateDirectories: true)
        // A safety net only (stop() ends it): long enough that a slow, loaded machine never
        // loses its simulator in the middle of a test.
        sim = try RunningChorus(["sim", "--max-seconds", "900"] + simArguments)
        port = Int(sim.firstLine().replacingOccurrences(of: "listening on ", with: ""))!
        let base = JSONValue.string("http://127.0.0.1:\(port)/v1")
        try write(
            "chorus.json",
            [
                "models": [
                    "planner": ["provider": "openai", "base_url": base, "model": .string("planner-\(subtasks)"), "max_tokens": 1_000_000],
                    "small": ["provider": "openai", "base_url": base, "model": "sim-small", "price": ["input_per_mtok": 1, "output_per_mtok": 1]],
                ]
            ])
        try write(
            "agents/lead.json",
            [
                "name": "lead", "model": "planner", "prompt": "{{inputs.question}}",
                "output_schema": ["type": "object", "required": ["subtasks"], "properties": ["subtasks": ["type": "array"]]],
            ])
        try write("agents/worker.json", ["name": "worker", "model": "small", "prompt": "{{item}}", "retries": 2])
        try write("agents/synth.json", ["name": "synth", "model": "small", "prompt": "Summarise:\n{{#findings}}- {{.}}\n{{/findings}}"])
        try write(
            "workflows/answer.json",
            [
                "name": "answer", "inputs": ["question": ["type": "string"]],
                "nodes": [
                    "plan": ["kind": "agent", "agent": "lead"],
                    "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": .number(Double(maxParallel))],
                    "answer": ["kind": "reconcile", "from": "work", "strategy": "agent", "agent": "synth"],
                ], "output": "answer",
            ])
        try write(
            "workflows/fan.json",
            [
                "name": "fan", "inputs": ["question": ["type": "string"]],
                "nodes": [
                    "plan": ["kind": "agent", "agent": "lead"],
                    "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": .number(Double(maxParallel))],
                ], "output": "work",
            ])
    }

    func write(_ path: String, _ value: JSONValue) throws {
        try Data(value.serialized()).write(to: directory.appendingPathComponent(path))
    }

    /// Gives the worker a subprocess tool `argv` (input as JSON on stdin) and a model that
    /// calls the tools it is offered (the sim's `tooluser-small`).
    func useTool(_ argv: [String]) throws {
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
        try write(
            "tools/probe.json",
            [
                "name": "probe", "description": "Looks into it.",
                "input_schema": ["type": "object", "required": ["query"], "properties": ["query": ["type": "string"]]],
                "subprocess": ["argv": .array(argv.map { .string($0) })],
            ])
        let base = JSONValue.string("http://127.0.0.1:\(port)/v1")
        var config = try JSONValue(parsing: Array(try Data(contentsOf: directory.appendingPathComponent("chorus.json"))))
        var models = config["models"]?.objectValue ?? [:]
        models["toolsmall"] = ["provider": "openai", "base_url": base, "model": "tooluser-small"]
        config = .object(["models": .object(models)])
        try write("chorus.json", config)
        try write("agents/worker.json", ["name": "worker", "model": "toolsmall", "prompt": "{{item}}", "retries": 2, "tools": ["probe"]])
    }

    var db: String { directory.appendingPathComponent("trace.db").path }

    func arguments(_ extra: [String] = [], workflow: String = "fan") -> [String] {
        [
            "run", directory.appendingPathComponent("workflows/\(workflow).json").path, "--config", directory.appendingPathComponent("chorus.json").path,
            "--db", db, "--input", "question=why",
        ] + extra
    }

    /// The `--config`/`--db` pair for commands other than run.
    var trace: [String] { ["--config", directory.appendingPathComponent("chorus.json").path, "--db", db] }

    /// Requests the simulator has answered since it started (or since `resetStats`).
    func simRequests() throws -> Int {
        let response = try httpRequest(port: port, "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return try JSONValue(parsing: body)["requests"]?.intValue ?? -1
    }

    func resetStats() throws {
        _ = try httpRequest(port: port, "POST /stats/reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    }

    func stop() {
        sim.process.terminate()
        _ = sim.finish()
        try? FileManager.default.removeItem(at: directory)
    }
}

extension CLI {
    @Suite(.serialized) struct RunCommandTests {
        @Test func aRunPrintsItsOutputAndTheTraceHoldsIt() throws {
            let project = try CLIProject()
            let result = try runChorus(project.arguments(["--json"]))
            #expect(result.status == 0, "\(result.stderr)")
            let summary = try JSONValue(parsing: result.stdout)
            #expect(summary["status"] == "succeeded")
            #expect(summary["output"]?.arrayValue?.count == 30)
            #expect(summary["usage"]?["calls"] == 31)
            let runID = try #require(summary["run_id"]?.stringValue)
            let show = try runChorus(["runs", "show", runID, "--db", project.db, "--json"])
            #expect(show.status == 0)
            #expect(try JSONValue(parsing: show.stdout)["steps"]?.arrayValue?.count == 31)
            let list = try runChorus(["runs", "list", "--db", project.db])
            #expect(list.stdout.contains(runID) && list.stdout.contains("succeeded"))
            project.stop()
        }

        @Test func validationErrorsExitTwoListingEveryProblem() throws {
            let project = try CLIProject()
            try project.write("workflows/bad.json", ["name": "bad", "nodes": ["a": ["kind": "agent", "agent": "ghost", "colour": "red"]], "output": "b"])
            let path = project.directory.appendingPathComponent("workflows/bad.json").path
            let validate = try runChorus(["validate", path, "--config", project.directory.appendingPathComponent("chorus.json").path])
            #expect(validate.status == 2)
            #expect(validate.stderr.contains("bad.json: $.nodes.a.colour: unknown property 'colour'"))
            let run = try runChorus(["run", path, "--config", project.directory.appendingPathComponent("chorus.json").path, "--db", project.db])
            #expect(run.status == 2)
            #expect(run.stderr.contains("unknown property 'colour'"))
            let missingInput = try runChorus(Array(project.arguments().dropLast(2)))
            #expect(missingInput.status == 2)
            #expect(missingInput.stderr.contains("missing required input 'question'"))
            project.stop()
        }

        /// The key is set in the child's environment only: setenv in this test process raced with
        /// other tests' spawns (glibc reallocates `environ` when a name is added, and Foundation's
        /// Process.run read the freed array: SIGSEGV).
        @Test func apiKeysReachTheProviderButNeverTheTrace() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let base = JSONValue.string("http://127.0.0.1:\(project.port)/v1")
            try project.write(
                "chorus.json",
                [
                    "models": [
                        "planner": ["provider": "openai", "base_url": base, "model": "planner-3", "api_key_env": "CHORUS_TEST_SECRET_KEY"],
                        "small": ["provider": "openai", "base_url": base, "model": "sim-small", "api_key_env": "CHORUS_TEST_SECRET_KEY"],
                    ]
                ])
            let secret = "sk-chorus-test-5ecret-value"
            let keyed = try runChorus(project.arguments(), environment: ["CHORUS_TEST_SECRET_KEY": secret])
            #expect(keyed.status == 0, "\(keyed.stderr)")
            #expect(!keyed.stdout.contains("5ecret") && !keyed.stderr.contains("5ecret"))
            for file in [project.db, project.db + "-wal"] {
                let bytes = (try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data()
                #expect(bytes.range(of: Data("5ecret-value".utf8)) == nil, "\(file) holds the key")
            }
            let missing = try runChorus(project.arguments())
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("CHORUS_TEST_SECRET_KEY"), "\(missing.stderr)")
            #expect(!missing.stderr.contains("5ecret"))
        }

        @Test func aFailedRunExitsOne() throws {
            let project = try CLIProject(simArguments: ["--error-rate", "1"])
            let result = try runChorus(project.arguments())
            #expect(result.status == 1)
            #expect(result.stderr.contains("chorus run: plan: planner: HTTP 500"), "\(result.stderr)")
            project.stop()
        }

        @Test func ctrlCMarksTheRunInterruptedAndKeepsCompletedSteps() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "200"], subtasks: 200, maxParallel: 10)
            let run = try RunningChorus(project.arguments())
            let progressed = waitForSteps(project.db, atLeast: 15)
            #expect(progressed)
            run.process.interrupt()
            let (status, stderr) = run.finish()
            #expect(status == 1)
            #expect(stderr.contains("interrupted"))
            let store = try TraceStore(path: project.db)
            let record = try #require(try store.runs().first)
            #expect(record.status == .interrupted)
            let steps = try store.steps(ofRun: record.id)
            #expect(steps.filter { $0.status == .succeeded }.count >= 15)
            #expect(steps.filter { $0.status == .running }.isEmpty, "in-flight steps end as cancelled, not running")
            project.stop()
        }

        @Test func sigkillMidFanOutLeavesASoundDatabaseWithEveryCompletedStep() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 300, maxParallel: 20)
            let run = try RunningChorus(project.arguments())
            let progressed = waitForSteps(project.db, atLeast: 40)
            let before = succeededSteps(project.db)
            kill(run.process.processIdentifier, SIGKILL)
            let (_, stderr) = run.finish()
            #expect(progressed, "the run never reached 40 steps: \(stderr)")
            let store = try TraceStore(path: project.db)
            #expect(try store.integrityCheck() == "ok")
            #expect(succeededSteps(project.db) >= before, "a step seen complete before the kill is still there")
            // The next `chorus run` marks a run left `running` by a dead process as interrupted.
            #expect(try store.markAbandonedRuns() == 1)
            #expect(try store.runs().first?.status == .interrupted)
            project.stop()
        }
    }
}

func succeededSteps(_ db: String) -> Int {
    guard let store = try? TraceStore(path: db), let run = try? store.runs().first,
        let steps = try? store.steps(ofRun: run.id)
    else { return 0 }
    return steps.filter { $0.status == .succeeded }.count
}

/// Waits (up to 30 s, polling the database) until a run has `count` succeeded steps.
func waitForSteps(_ db: String, atLeast count: Int) -> Bool {
    for _ in 0..<600 {
        if FileManager.default.fileExists(atPath: db), succeededSteps(db) >= count { return true }
        usleep(50_000)
    }
    return false

}

/// Provider errors as the CLI reports them.
extension CLI {
    @Suite struct ProviderErrorCommandTests {
        /// A 401 on the small model stops the run at once with one line naming the model and
        /// quoting the provider, whose echo of the key is redacted everywhere; replaying the
        /// failed run (with the config it recorded, no --config given) reproduces the failure.
        @Test func aRejectedKeyStopsTheRunAtOnceAndItsReplayReproducesIt() throws {
            let project = try CLIProject(subtasks: 40)
            defer { project.stop() }
            let base = JSONValue.string("http://127.0.0.1:\(project.port)/v1")
            try project.write(
                "chorus.json",
                [
                    "models": [
                        "planner": ["provider": "openai", "base_url": base, "model": "planner-40", "max_tokens": 4000],
                        "small": ["provider": "openai", "base_url": base, "model": "unauthorized-small", "api_key_env": "CHORUS_TEST_SECRET_KEY"],
                    ]
                ])
            let secret = "sk-chorus-test-5ecret-value"
            let run = try runChorus(project.arguments(["--json"]), environment: ["CHORUS_TEST_SECRET_KEY": secret])
            #expect(run.status == 1)
            // At once: the plan, then at most the 10 calls in flight when the first 401 came back.
            #expect((summary(run)["usage"]?["calls"]?.intValue ?? 99) <= 11, "\(run.stdout)")
            let summary = try JSONValue(parsing: Array(run.stdout.utf8))
            let error = try #require(summary["error"]?.stringValue)
            #expect(summary["error_code"] == "provider_refused")
            #expect(error.hasPrefix("model 'small' (unauthorized-small at http://127.0.0.1:"), "\(error)")
            #expect(error.contains("HTTP 401: Incorrect API key provided: [redacted]."), "\(error)")
            #expect(run.stderr.contains("chorus run: model 'small'"), "\(run.stderr)")
            #expect(!run.stdout.contains("5ecret") && !run.stderr.contains("5ecret"))
            for file in [project.db, project.db + "-wal"] {
                let bytes = (try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data()
                #expect(bytes.range(of: Data("5ecret".utf8)) == nil, "\(file) holds the key")
            }
            let runID = try #require(summary["run_id"]?.stringValue)
            let replay = try runChorus(["replay", runID, "--db", project.db, "--json"])
            #expect(replay.status == 0, "\(replay.stdout) \(replay.stderr)")
            let report = try JSONValue(parsing: Array(replay.stdout.utf8))
            #expect(report["reproduced"] == true && report["status"] == "failed" && report["error"]?.stringValue == error)
        }

        private func summary(_ run: (status: Int32, stdout: String, stderr: String)) -> JSONValue {
            (try? JSONValue(parsing: Array(run.stdout.utf8))) ?? .null
        }

        /// --deadline stops a run that takes too long: it fails saying so, with its finished
        /// steps in the trace.
        @Test func aRunPastItsDeadlineFailsSayingSoAndKeepsItsSteps() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "300"], subtasks: 40, maxParallel: 2)
            defer { project.stop() }
            let started = Date()
            let run = try runChorus(project.arguments(["--deadline", "1500ms", "--json"]))
            #expect(run.status == 1)
            #expect(Date().timeIntervalSince(started) < 60, "a hang guard, not a speed check")
            let summary = try JSONValue(parsing: Array(run.stdout.utf8))
            #expect(summary["status"] == "failed")
            #expect(summary["error"]?.stringValue?.hasPrefix("deadline of 1500ms reached") == true, "\(run.stdout)")
            #expect(summary["error_code"] == "deadline")
            let store = try TraceStore(path: project.db)
            let steps = try store.steps(ofRun: try #require(summary["run_id"]?.stringValue))
            #expect(steps.filter { $0.status == .succeeded }.count >= 2, "what finished is kept")
            let bad = try runChorus(project.arguments(["--deadline", "soon"]))
            #expect(bad.status == 2 && bad.stderr.contains("--deadline soon: expected a duration"), "\(bad.stderr)")
        }

        /// Whether this machine lets the test mount a tmpfs (root, and a kernel that allows it).
        static let tmpfsAvailable: Bool = {
            guard getuid() == 0 else { return false }
            let point = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-tmpfs-probe-\(getpid())").path
            try? FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: point) }
            guard (try? runProgram(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", point])) == 0 else { return false }
            _ = try? runProgram(["umount", point])
            return true
        }()

        /// A trace database on a full disk (tmpfs of 512 KB to 8 MB): the first failed commit
        /// stops the run — no more model calls, which could never be recorded — with one line
        /// saying so and how many steps were kept, exit 1, and every step committed before is
        /// still there in a sound database; a resume on the still-full disk exits 1 too, and
        /// once space is freed it continues from every committed step.
        @Test(.enabled(if: tmpfsAvailable, "mounting a tmpfs needs root and a kernel that allows it"), arguments: ["512k", "1m", "3m", "8m"])
        func aFullDiskStopsTheRunAndKeepsWhatWasCommitted(_ size: String) throws {
            let project = try CLIProject(subtasks: 2000, maxParallel: 50)
            defer { project.stop() }
            let mountPoint = project.directory.appendingPathComponent("full").path
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let mount = try runProgram(["mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint])
            try #require(mount == 0, "mount failed")
            defer { _ = try? runProgram(["umount", "-l", mountPoint]) }
            let db = mountPoint + "/trace.db"
            var arguments = project.arguments(["--json"])
            arguments[arguments.firstIndex(of: "--db")! + 1] = db
            let run = try runChorus(arguments)
            #expect(run.status == 1)
            #expect(run.stderr.contains("the disk holding the trace database is full ("), "\(run.stderr)")
            #expect(run.stderr.contains("the run stopped making calls"))
            #expect(try JSONValue(parsing: Array(run.stdout.utf8))["error_code"] == "trace_unwritable", "\(run.stdout)")
            #expect(try project.simRequests() < 2002, "calls stopped once the trace could not take them")
            let store = try TraceStore(path: db)
            #expect(try store.integrityCheck() == "ok")
            let killed = try #require(try store.runs().first)
            let kept = try store.steps(ofRun: killed.id).filter { $0.status == .succeeded && !$0.isNodeResult }.count
            // (512 KB fills before the plan's answer is committed: nothing is kept, and the resume starts over.)
            #expect(kept > 0 || size == "512k", "the steps committed before the disk filled are kept")
            #expect(run.stderr.contains("the \(kept) steps it finished before are kept"), "the line says how much was kept: \(run.stderr)")

            // A resume on the disk that is still full fails the same way, exit 1.
            try project.resetStats()
            let stillFull = try runChorus(
                ["resume", killed.id, "--json"] + ["--config", project.directory.appendingPathComponent("chorus.json").path, "--db", db])
            #expect(stillFull.status == 1, "\(stillFull.stderr)")
            // Space freed: the resume continues from every committed step.
            try #require(try runProgram(["mount", "-o", "remount,size=256m", mountPoint]) == 0, "remount failed")
            try project.resetStats()
            let resumed = try runChorus(
                ["resume", killed.id, "--json"] + ["--config", project.directory.appendingPathComponent("chorus.json").path, "--db", db])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let reused = try JSONValue(parsing: Array(resumed.stdout.utf8))["reused_steps"]?.intValue ?? 0
            #expect(reused >= kept, "every step committed before the disk filled is reused")
            #expect(try project.simRequests() == 2001 - reused, "only the steps not committed run")
        }
    }
}

extension CLI.ProviderErrorCommandTests {
    /// A trace database on a file system mounted read-only (root ignores file modes, so a
    /// read-only mount is the honest test): the run refuses before any model call, with one
    /// line naming the database, exit 1; the runs already in it are untouched and readable.
    @Test(.enabled(if: tmpfsAvailable, "mounting a tmpfs needs root and a kernel that allows it"))
    func aReadOnlyTraceDatabaseStopsTheRunBeforeAnyCall() throws {
        let project = try CLIProject(subtasks: 3)
        defer { project.stop() }
        let mountPoint = project.directory.appendingPathComponent("ro").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try #require(try runProgram(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint]) == 0, "mount failed")
        defer { _ = try? runProgram(["umount", "-l", mountPoint]) }
        let db = mountPoint + "/trace.db"
        var arguments = project.arguments(["--json"])
        arguments[arguments.firstIndex(of: "--db")! + 1] = db
        let first = try runChorus(arguments)
        try #require(first.status == 0, "\(first.stderr)")
        try #require(try runProgram(["mount", "-o", "remount,ro", mountPoint]) == 0, "remount failed")
        let callsBefore = try project.simRequests()
        let second = try runChorus(arguments)
        #expect(second.status == 1, "\(second.stderr)")
        #expect(second.stderr.contains("trace.db"), "the message names the database: \(second.stderr)")
        #expect(second.stderr.contains("read-only"), "\(second.stderr)")
        #expect(second.stderr.split(separator: "\n").count <= 2, "one short message: \(second.stderr)")
        #expect(try project.simRequests() == callsBefore, "no model call was made that could not be recorded")
        let list = try runChorus(["runs", "list", "--db", db])
        #expect(list.status == 0 && list.stdout.contains("succeeded"), "the old runs are still readable: \(list.stdout) \(list.stderr)")
    }
}

/// Runs a program to completion; its exit status.
func runProgram(_ argv: [String]) throws -> Int32 {
    try execute("/usr/bin/env", argv).status
}

extension CLI.ProviderErrorCommandTests {
    /// A budget from the command line: the run stops at it with exit 3 and says so; a bad
    /// value is refused before anything runs.
    @Test func aRunStopsAtItsBudgetWithExitThree() throws {
        let project = try CLIProject(subtasks: 20)
        defer { project.stop() }
        let run = try runChorus(project.arguments(["--budget-calls", "4", "--json"]))
        #expect(run.status == 3, "\(run.stderr)")
        let summary = try JSONValue(parsing: Array(run.stdout.utf8))
        #expect(summary["error_code"] == "budget_exhausted")
        #expect(try project.simRequests() == 4)
        let id = try #require(summary["run_id"]?.stringValue)
        let show = try runChorus(["runs", "show", id] + project.trace)
        #expect(show.stdout.contains("budget: 4 of 4 calls"), "\(show.stdout)")
        // A model's budget is reported against its own spend.
        var config = try JSONValue(parsing: Array(try Data(contentsOf: project.directory.appendingPathComponent("chorus.json"))))
        var models = config["models"]?.objectValue ?? [:]
        models["small"] = .object((models["small"]?.objectValue ?? [:]).merging(["budget": ["calls": 3]]) { $1 })
        config = .object(["models": .object(models)])
        try project.write("chorus.json", config)
        let capped = try runChorus(project.arguments(["--json"]))
        #expect(capped.status == 3)
        let cappedID = try #require(try JSONValue(parsing: Array(capped.stdout.utf8))["run_id"]?.stringValue)
        let cappedShow = try runChorus(["runs", "show", cappedID] + project.trace)
        #expect(cappedShow.stdout.contains("budget of model small: 3 of 3 calls"), "\(cappedShow.stdout)")
        let bad = try runChorus(project.arguments(["--budget-usd", "-1"]))
        #expect(bad.status == 2 && bad.stderr.contains("--budget-usd"), "\(bad.stderr)")
    }
}

extension CLI.ProviderErrorCommandTests {
    /// `runs show` explains every refusal: guard verdicts, counted, with an example and why.
    @Test func runsShowExplainsThePolicyVerdicts() throws {
        let project = try CLIProject(subtasks: 3)
        defer { project.stop() }
        try project.write(
            "agents/worker.json",
            [
                "name": "worker", "model": "small", "prompt": "{{item}}", "retries": 0,
                "guards": ["output": [["type": "max_chars", "max": 5]]],
            ])
        let run = try runChorus(project.arguments(["--json"]))
        #expect(run.status == 1)
        let id = try #require(try JSONValue(parsing: Array(run.stdout.utf8))["run_id"]?.stringValue)
        let show = try runChorus(["runs", "show", id] + project.trace)
        #expect(show.stdout.contains("policy verdicts:") && show.stdout.contains("output max_chars guard denied ×3"), "\(show.stdout)")
        let json = try JSONValue(parsing: Array(try runChorus(["runs", "show", id, "--json"] + project.trace).stdout.utf8))
        #expect(json["governance"]?["guard_verdicts"]?.arrayValue?.count == 3)
        // The timeline marks each verdict on its step's lane (the page's script, as written).
        let html = try runChorus(["runs", "export", id, "--format", "html"] + project.trace).stdout
        #expect(html.contains("verdictsByStep") && html.contains("\"guard_verdict\""), "the verdicts are in the page's data")
    }
}

extension CLI.ProviderErrorCommandTests {
    /// A provider that streams an endless body (a Python server here, written for the test):
    /// the call stops at the model's `max_response_bytes` and the process's peak memory stays
    /// bounded (issue 17: a gigabyte buffered in 3 s, peak RSS 3-4.5 GB, before the limit).
    @Test func anEndlessResponseIsStoppedAndMemoryStaysBounded() throws {
        let project = try CLIProject(subtasks: 1)
        defer { project.stop() }
        let server = try closeOnExecPipe()
        let script = """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def do_POST(self):
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while True: self.wfile.write(chunk)
                    except Exception: pass
                def log_message(self, *a): pass
            s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """
        let python = try spawnChild("/usr/bin/env", ["python3", "-c", script], stdout: server.write)
        close(server.write)
        defer { kill(python, SIGKILL); _ = waitForExit(python); close(server.read) }
        var portText = ""
        var byte: UInt8 = 0
        while read(server.read, &byte, 1) == 1, byte != 10 { portText.append(Character(UnicodeScalar(byte))) }
        let port = try #require(Int(portText), "the server printed '\(portText)'")
        var config = try JSONValue(parsing: Array(try Data(contentsOf: project.directory.appendingPathComponent("chorus.json"))))
        var models = config["models"]?.objectValue ?? [:]
        models["small"] = [
            "provider": "openai", "base_url": .string("http://127.0.0.1:\(port)/v1"), "model": "endless", "stream": false,
            "max_response_bytes": 4_000_000,
        ]
        config = .object(["models": .object(models)])
        try project.write("chorus.json", config)
        try project.write("agents/worker.json", ["name": "worker", "model": "small", "prompt": "{{item}}", "retries": 1, "timeout_s": 60])
        let out = project.directory.appendingPathComponent("run.out").path
        let fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let pid = try spawnChild(chorusBinary.path, project.arguments(), stdout: fd, stderr: fd)
        close(fd)
        // The child's peak RSS from /proc (VmHWM, polled until it exits). Not wait4's
        // ru_maxrss: a process spawned from this large test process starts with the
        // parent's high-water mark and keeps it across exec.
        var peakKB = 0
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            let line = ((try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? "").split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            peakKB = max(peakKB, Int(line?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0)
            usleep(10_000)
        }
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status != 0, "the step cannot succeed: \(text)")
        #expect(text.contains("passed its limit of 4000000 bytes"), "\(text)")
        #expect(peakKB > 0 && peakKB < 300_000, "peak RSS \(peakKB) KB")
    }
}
