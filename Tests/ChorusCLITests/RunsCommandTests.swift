import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// `chorus runs diff | export | search | verify | prune` on a real trace.
extension CLI {
    @Suite(.serialized) struct RunsCommandTests {
        private func run(_ project: CLIProject, question: String = "why") throws -> String {
            var arguments = project.arguments(["--json"])
            arguments[arguments.count - 2] = "question=\(question)"
            let result = try runChorus(arguments)
            #expect(result.status == 0, "\(result.stderr)")
            return try #require(try JSONValue(parsing: result.stdout)["run_id"]?.stringValue)
        }

        @Test func theHTMLExportOpensInAHeadlessBrowserWithOneBarPerStepAndNoConsoleErrors() throws {
            let chromium = "/usr/bin/chromium"
            try #require(FileManager.default.isExecutableFile(atPath: chromium), "chromium is not installed (scripts/test installs it)")
            let project = try CLIProject(subtasks: 25)
            defer { project.stop() }
            let id = try run(project)
            let file = project.directory.appendingPathComponent("run.html").path
            let export = try runChorus(["runs", "export", id, "--format", "html", "-o", file] + project.trace)
            #expect(export.status == 0, "\(export.stderr)")
            let profile = project.directory.appendingPathComponent("chromium-profile").path
            let browser = try execute(
                chromium,
                [
                    "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)",
                    "--enable-logging=stderr", "--v=0", "--dump-dom", "file://\(file)",
                ],
                scratch: project.directory)
            #expect(browser.status == 0, "\(browser.stderr.suffix(2000))")
            #expect(browser.stdout.contains("data-ready=\"1\""), "the page's script ran to the end")
            #expect(browser.stdout.contains("data-steps=\"26\""))
            #expect(browser.stdout.components(separatedBy: "class=\"bar step ").count - 1 == 26, "one bar per step")
            #expect(browser.stdout.components(separatedBy: "class=\"bar call").count - 1 == 26, "one bar per model call")
            let console = browser.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") }
            #expect(console.isEmpty, "console messages: \(console)")

            let json = try runChorus(["runs", "export", id] + project.trace)
            let document = try JSONValue(parsing: json.stdout)
            #expect(document["calls"]?.arrayValue?.count == 26)
            #expect(document["calls"]?.arrayValue?.first?["request"]?["messages"] != nil, "bodies are included, parsed")
            #expect(document["events"]?.arrayValue?.isEmpty == false)
        }

        @Test func theTimelineHasABarPerToolCallAndRunsShowCountsThem() throws {
            let chromium = "/usr/bin/chromium"
            try #require(FileManager.default.isExecutableFile(atPath: chromium), "chromium is not installed (scripts/test installs it)")
            let project = try CLIProject(subtasks: 5)
            defer { project.stop() }
            try project.useTool(["cat"])
            let id = try run(project)
            let show = try runChorus(["runs", "show", id] + project.trace)
            #expect(show.stdout.contains("tools ×1") && show.stdout.contains("by tool:") && show.stdout.contains("probe        calls 5"), "\(show.stdout)")
            let json = try JSONValue(parsing: try runChorus(["runs", "export", id] + project.trace).stdout)
            #expect(json["tool_calls"]?.arrayValue?.count == 5)
            #expect(json["tool_calls"]?.arrayValue?.first?["input"]?["query"] != nil, "inputs are included, parsed")
            let file = project.directory.appendingPathComponent("run.html").path
            #expect(try runChorus(["runs", "export", id, "--format", "html", "-o", file] + project.trace).status == 0)
            let profile = project.directory.appendingPathComponent("chromium-profile").path
            let browser = try execute(
                chromium,
                [
                    "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)",
                    "--dump-dom", "file://\(file)",
                ], scratch: project.directory)
            #expect(browser.stdout.contains("data-ready=\"1\""))
            #expect(browser.stdout.components(separatedBy: "class=\"bar tool").count - 1 == 5, "one bar per tool call")
        }

        /// An as_completed lead (plans of 6, re-planning after 3 findings, 16 subtasks at
        /// most): `runs show` lists its calls where they started among the workers, with what
        /// each saw and what the last, cut plan dropped; `--json` and the timeline carry the same.
        @Test func leadCallsShowWhatTheySawInRunsShowJSONAndTheTimeline() throws {
            let chromium = "/usr/bin/chromium"
            try #require(FileManager.default.isExecutableFile(atPath: chromium), "chromium is not installed (scripts/test installs it)")
            let project = try CLIProject(simArguments: ["--latency-ms", "5", "--jitter-ms", "60"], subtasks: 6)
            defer { project.stop() }
            try project.writeLiveLead(maxSubtasks: 16, replanAfter: 3, maxParallel: 6)
            let result = try runChorus(project.arguments(["--json"], workflow: "live"))
            #expect(result.status == 0, "\(result.stderr)")
            let id = try #require(try JSONValue(parsing: result.stdout)["run_id"]?.stringValue)

            let show = try runChorus(["runs", "show", id] + project.trace)
            #expect(show.status == 0, "\(show.stderr)")
            let lines = show.stdout.split(separator: "\n").map(String.init)
            func line(_ path: String) -> Int? { lines.firstIndex { $0.hasPrefix("│   \(path) ") } }
            let first = try #require(line("research/round-1/plan"), "\(show.stdout)")
            let second = try #require(line("research/round-2/plan"), "\(show.stdout)")
            let third = try #require(line("research/round-3/plan"), "a lead call in the middle of a long node is listed: \(show.stdout)")
            #expect(lines[first].contains("saw no findings"))
            #expect(lines[second].contains(" findings (research/round-1/"), "\(lines[second])")
            #expect(lines[third].contains("planned 6, kept 4: 2 dropped"), "\(lines[third])")
            let firstWorker = try #require(line("research/round-1/0") ?? lines.firstIndex { $0.hasPrefix("│   research/round-1/") && !$0.contains("/plan") })
            #expect(first < firstWorker && firstWorker < second, "the second call is listed after the workers that started before it")
            #expect(show.stdout.contains("more (--all lists them)"), "19 steps are summarised")

            let json = try JSONValue(parsing: try runChorus(["runs", "show", id, "--json"] + project.trace).stdout)
            let steps = json["steps"]?.arrayValue ?? []
            let plans = steps.filter { $0["kind"] == "plan" }
            #expect(plans.count >= 3)
            for plan in plans {
                #expect(plan["saw_count"]?.intValue == plan["saw"]?.arrayValue?.count, "\(plan)")
            }
            #expect(plans.first { $0["path"] == "research/round-2/plan" }?["saw_count"]?.intValue ?? 0 >= 3, "replanned after 3 findings")
            #expect(plans.first { $0["path"] == "research/round-3/plan" }?["plan_truncated"] == ["planned": 6, "kept": 4, "dropped": 2])
            #expect(steps.filter { $0["kind"] == "item" }.allSatisfy { $0["saw"] == nil && $0["plan_truncated"] == nil }, "workers carry neither")

            let file = project.directory.appendingPathComponent("run.html").path
            #expect(try runChorus(["runs", "export", id, "--format", "html", "-o", file] + project.trace).status == 0)
            let profile = project.directory.appendingPathComponent("chromium-profile").path
            let browser = try execute(
                chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)", "--dump-dom", "file://\(file)"],
                scratch: project.directory)
            #expect(browser.stdout.contains("data-ready=\"1\""))
            #expect(browser.stdout.components(separatedBy: "class=\"row lead\"").count - 1 == plans.count, "one lead row per lead call")
            #expect(browser.stdout.contains("research/round-1/plan · saw 0"))
            let secondSaw = plans.first { $0["path"] == "research/round-2/plan" }?["saw_count"]?.intValue ?? -1
            #expect(browser.stdout.contains("research/round-2/plan · saw \(secondSaw)"))
            #expect(browser.stdout.contains("planned 6, kept 4: 2 dropped"), "the cut plan's tooltip says so")
            // Rows in the order steps started: the second call's row comes after round 1's first workers.
            let rowOf = { (path: String) in browser.stdout.range(of: ">\(path)")?.lowerBound }
            if let worker = rowOf("research/round-1/0"), let call = rowOf("research/round-2/plan") {
                #expect(worker < call)
            } else {
                Issue.record("rows missing")
            }
        }

        /// A tool inherits no descriptor but its three pipes: not the connection to the model
        /// provider that is open while it runs, nor the trace database. Checked in the chorus
        /// process itself: in the test process other tests' threads open files at any moment,
        /// between the close-on-exec sweep and the spawn.
        @Test func aToolInheritsNoSocketAndNoDatabase() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            try project.useTool(["sh", "-c", "ls -l /proc/$$/fd"])
            let id = try run(project)
            let store = try TraceStore(path: project.db)
            let call = try #require(try store.toolCalls(ofRun: id).first)
            let listing = String(decoding: try store.blobs([call.outputHash])[call.outputHash] ?? [], as: UTF8.self)
            // 0, 1 and 2 are libuv's socketpairs to Chorus; nothing else may be there.
            let inherited = listing.split(separator: "\n").filter { line in
                guard let fd = line.split(separator: " ").dropLast(2).last.flatMap({ Int($0) }) else { return false }
                return fd > 2
            }
            #expect(inherited.isEmpty, "\(listing)")
        }

        @Test func diffSearchVerifyAndPruneFromTheCommandLine() throws {
            let project = try CLIProject(subtasks: 6)
            defer { project.stop() }
            let a = try run(project, question: "why")
            let b = try run(project, question: "how")
            let same = try runChorus(["runs", "diff", a, a] + project.trace)
            #expect(same.status == 0 && same.stdout.contains("output: identical"))
            let diff = try runChorus(["runs", "diff", a, b] + project.trace)
            #expect(diff.status == 1, "outputs differ: exit 1, as diff(1)")
            #expect(diff.stdout.contains("output: DIFFERS") && diff.stdout.contains("plan "), "\(diff.stdout)")

            let search = try runChorus(["runs", "search", "how", "--json"] + project.trace)
            let hits = try JSONValue(parsing: search.stdout).arrayValue ?? []
            #expect(hits.contains { $0["run_id"]?.stringValue == b && $0["step"] == "plan" && $0["in"] == "prompt" }, "\(search.stdout)")

            let verify = try runChorus(["runs", "verify", a] + project.trace)
            #expect(verify.status == 0 && verify.stdout.contains("intact"), "\(verify.stdout)")

            let bad = try runChorus(["runs", "prune", "--older-than", "soon"] + project.trace)
            #expect(bad.status == 2 && bad.stderr.contains("expected a number and a unit"))
            let prune = try runChorus(["runs", "prune", "--keep", "1", "--json"] + project.trace)
            #expect(prune.status == 0)
            #expect(try JSONValue(parsing: prune.stdout)["runs_removed"] == [.string(a)])
            let store = try TraceStore(path: project.db)
            #expect(try store.orphanBlobCount() == 0 && store.integrityCheck() == "ok")
        }
    }
}

/// The shipped tool example, end to end: workflows/research-tools.json with the repository's
/// agents and tools, the reference MCP time server from .venvs/mcp (scripts/test installs
/// it), a subprocess tool, and chorus sim; then its replay with the simulator stopped.
extension CLI {
    @Suite struct ShippedToolExampleTests {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        static let server = root.appendingPathComponent(".venvs/mcp/bin/mcp-server-time").path

        /// Writes the shipped chorus.json, pointed at `project`'s simulator, and returns its path.
        static func shippedConfig(for project: CLIProject) throws -> String {
            var config = try JSONValue(parsing: Array(try Data(contentsOf: root.appendingPathComponent("chorus.json"))))
            var models = config["models"]?.objectValue ?? [:]
            for (name, model) in models {
                models[name] = .object((model.objectValue ?? [:]).merging(["base_url": .string("http://127.0.0.1:\(project.port)/v1")]) { $1 })
            }
            config = .object(["models": .object(models)])
            try project.write("shipped.json", config)
            return project.directory.appendingPathComponent("shipped.json").path
        }

        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: server), "no .venvs/mcp: scripts/test creates it"))
        func researchToolsRunsAgainstARealMCPServerAndReplaysWithNoCallAndNoTool() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let configPath = try Self.shippedConfig(for: project)
            let run = try runChorus([
                "run", Self.root.appendingPathComponent("workflows/research-tools.json").path, "--config", configPath,
                "--db", project.db, "--input", "question=What time is it?", "--json",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            let summary = try JSONValue(parsing: Array(run.stdout.utf8))
            let id = try #require(summary["run_id"]?.stringValue)
            let store = try TraceStore(path: project.db)
            let tools = try store.toolCalls(ofRun: id)
            #expect(Set(tools.map(\.tool)) == ["get_current_time", "wordcount"] && tools.count == 24, "\(tools.map(\.tool))")
            #expect(tools.allSatisfy { !$0.isError }, "\(tools.compactMap(\.error))")
            let clock = try #require(tools.first { $0.tool == "get_current_time" })
            let output = try JSONValue(parsing: try #require(try store.blobs([clock.outputHash])[clock.outputHash]))
            #expect(output["datetime"]?.stringValue?.hasPrefix("20") == true, "the real server told the time: \(output)")
            project.sim.process.terminate()
            let replay = try runChorus(["replay", id, "--config", configPath, "--db", project.db])
            #expect(replay.status == 0 && (replay.stdout + replay.stderr).contains("0 made; output reproduced byte for byte"), "\(replay.stdout)")
        }

        /// The shipped research example with a lead that re-plans as findings arrive
        /// (workflows/research-live.json), against a simulator whose latencies vary, then
        /// replayed with the simulator stopped: byte for byte, no call.
        @Test func researchLiveReplansAsFindingsArriveAndReplaysByteForByte() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "20", "--jitter-ms", "120", "--seed", "11"], subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try Self.shippedConfig(for: project), "--db", project.db]
            let run = try runChorus(
                ["run", Self.root.appendingPathComponent("workflows/research-live.json").path, "--input", "question=Which models for which work?", "--json"]
                    + trace)
            #expect(run.status == 0, "\(run.stderr)")
            let id = try #require(try JSONValue(parsing: Array(run.stdout.utf8))["run_id"]?.stringValue)
            let steps = try TraceStore(path: project.db).steps(ofRun: id)
            let plans = steps.filter { $0.kind == "plan" }
            #expect(plans.count >= 2 && steps.filter { $0.kind == "item" }.count == 48, "\(plans.map(\.path))")
            #expect(plans.allSatisfy { $0.provenanceJSON?.contains("saw") == true }, "each lead call recorded what it saw")
            project.sim.process.terminate()
            let replay = try runChorus(["replay", id] + trace)
            #expect(replay.status == 0 && (replay.stdout + replay.stderr).contains("0 made; output reproduced byte for byte"), "\(replay.stdout)")
        }

        /// The shipped governed example: a budget, a labelled input, guards and an approval step.
        /// It runs, pauses, is approved, resumes and finishes; runs show explains the verdicts.
        @Test func researchGovernedPausesIsApprovedResumesAndFinishes() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try Self.shippedConfig(for: project), "--db", project.db]
            let run = try runChorus(
                [
                    "run", Self.root.appendingPathComponent("workflows/research-governed.json").path, "--input",
                    "question=Ask jane.doe@example.com which models to use", "--json",
                ] + trace)
            #expect(run.status == 4, "paused for approval: \(run.stderr)")
            let id = try #require(try JSONValue(parsing: Array(run.stdout.utf8))["run_id"]?.stringValue)
            let store = try TraceStore(path: project.db)
            let researchers = try store.modelCalls(ofRun: id).filter { $0.stepPath.hasPrefix("research/round-1/") && !$0.stepPath.hasSuffix("plan") }
            #expect(!researchers.isEmpty)
            let bodies = try store.blobs(Set(researchers.map(\.requestHash)))
            #expect(
                !bodies.values.contains { String(decoding: $0, as: UTF8.self).contains("jane.doe") },
                "the guarded researchers' prompts were redacted (the lead, unguarded, runs on a model that accepts internal data)")
            let show = try runChorus(["runs", "show", id] + trace)
            #expect(show.stdout.contains("budget: $") && show.stdout.contains("input pii guard redacted"), "\(show.stdout)")
            #expect(try runChorus(["approve", id, "answer"] + trace).status == 0)
            let resumed = try runChorus(["resume", id, "--json"] + trace)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try JSONValue(parsing: Array(resumed.stdout.utf8))["status"] == "succeeded")
        }
    }
}

/// Sixteen chorus processes opening one new database at the same moment, twenty times over:
/// every one migrates it or finds it migrated, none fails (issue 17: 3 of 40 did, with
/// "UNIQUE constraint failed: grdb_migrations.identifier").
extension CLI {
    @Suite struct FirstOpenerTests {
        @Test func sixteenProcessesFirstOpeningOneDatabaseAllSucceedTwentyTimesOver() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openers-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            var failures: [String] = []
            for round in 0..<20 {
                let db = directory.appendingPathComponent("trace-\(round).db").path
                let logs = (0..<16).map { directory.appendingPathComponent("opener-\(round)-\($0).log").path }
                let pids = try logs.map { log -> pid_t in
                    let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                    defer { close(fd) }
                    return try spawnChild(chorusBinary.path, ["runs", "prune", "--keep", "5", "--db", db], stdout: fd, stderr: fd)
                }
                for (pid, log) in zip(pids, logs) where waitForExit(pid).status != 0 {
                    failures.append("round \(round): " + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
                }
                let store = try TraceStore(path: db, readOnly: true)
                #expect(try store.runs().isEmpty)
            }
            #expect(failures.isEmpty, "\(failures.count) of 320 openers failed: \(failures.prefix(3))")
        }
    }
}

extension CLIProject {
    /// `workflows/live.json`: a lead node with `"schedule": "as_completed"` over the worker.
    /// Its lead's schema does not describe `subtasks`, so no maxItems is sent and a plan
    /// longer than what is left of `maxSubtasks` is cut (`plan_truncated`).
    func writeLiveLead(maxSubtasks: Int, replanAfter: Int, maxParallel: Int, maxRounds: Int = 4) throws {
        try write(
            "agents/live-lead.json",
            [
                "name": "live-lead", "model": "planner", "prompt": "{{inputs.question}} {{{findings_json}}}",
                "output_schema": ["type": "object", "required": ["subtasks"]],
            ])
        try write(
            "workflows/live.json",
            [
                "name": "live", "inputs": ["question": ["type": "string"]],
                "nodes": [
                    "research": [
                        "kind": "lead", "lead": "live-lead", "worker": "worker", "schedule": "as_completed",
                        "replan_after": .number(Double(replanAfter)), "max_rounds": .number(Double(maxRounds)),
                        "max_subtasks": .number(Double(maxSubtasks)), "max_parallel": .number(Double(maxParallel)),
                    ]
                ], "output": "research",
            ])
    }
}
