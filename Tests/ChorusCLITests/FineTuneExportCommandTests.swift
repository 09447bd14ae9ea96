import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// `chorus runs export --format finetune` as a user runs it: workflows run against `chorus
/// sim`, their trace exported, every line checked by the official openai SDK's types.
extension CLI {
    @Suite(.serialized) struct FineTuneExportCommandTests {
        static let python: String? = {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let path =
                ProcessInfo.processInfo.environment["CHORUS_CONFORMANCE_PYTHON"] ?? root.appendingPathComponent(".venvs/conformance/bin/python").path
            return FileManager.default.isExecutableFile(atPath: path) ? path : nil
        }()
        static let checker = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/conformance/check_finetune.py").path

        /// A project on the simulator: `solver` answers with a schema on a small model that
        /// cannot (prose-small) and escalates to `large` (Anthropic's shape); `prober` calls a
        /// subprocess tool on an Anthropic tool-using model; `clerk` reads `note`, an input
        /// labelled pii; `echoer` asks a model whose key is in CHORUS_TEST_PROVIDER_CRED.
        private func project() throws -> CLIProject {
            let project = try CLIProject()
            let base = JSONValue.string("http://127.0.0.1:\(project.port)/v1")
            try project.write(
                "chorus.json",
                [
                    "models": [
                        "small": ["provider": "openai", "base_url": base, "model": "prose-small"],
                        "large": ["provider": "anthropic", "base_url": base, "model": "sim-large"],
                        "tooluser": ["provider": "anthropic", "base_url": base, "model": "tooluser-small"],
                        "keyed": ["provider": "openai", "base_url": base, "model": "sim-small", "api_key_env": "CHORUS_TEST_PROVIDER_CRED"],
                    ]
                ])
            try project.write(
                "agents/solver.json",
                [
                    "name": "solver", "model": ["small", "large"], "system": "Solve it.", "prompt": "{{inputs.task}}", "retries": 0,
                    "output_schema": [
                        "type": "object", "required": ["answer", "confidence"],
                        "properties": ["answer": ["type": "string"], "confidence": ["type": "number", "minimum": 0.7, "maximum": 1]],
                    ],
                ])
            try FileManager.default.createDirectory(at: project.directory.appendingPathComponent("tools"), withIntermediateDirectories: true)
            try project.write(
                "tools/probe.json",
                [
                    "name": "probe", "description": "Looks into it.",
                    "input_schema": ["type": "object", "required": ["query"], "properties": ["query": ["type": "string"]]],
                    "subprocess": ["argv": ["/bin/echo", "probed"]],
                ])
            try project.write("agents/prober.json", ["name": "prober", "model": "tooluser", "prompt": "Look into {{inputs.task}}", "tools": ["probe"]])
            try project.write("agents/clerk.json", ["name": "clerk", "model": "large", "prompt": "File this note: {{inputs.note}}"])
            try project.write("agents/echoer.json", ["name": "echoer", "model": "keyed", "prompt": "{{inputs.task}}"])
            try project.write(
                "workflows/mixed.json",
                [
                    "name": "mixed", "inputs": ["task": ["type": "string"], "note": ["type": "string", "labels": ["pii"]]],
                    "nodes": [
                        "solve": ["kind": "agent", "agent": "solver"], "probe": ["kind": "agent", "agent": "prober"],
                        "file": ["kind": "agent", "agent": "clerk"],
                    ],
                    "output": "solve",
                ])
            try project.write(
                "workflows/echo.json",
                ["name": "echo", "inputs": ["task": ["type": "string"]], "nodes": ["echo": ["kind": "agent", "agent": "echoer"]], "output": "echo"])
            return project
        }

        private func run(_ project: CLIProject, _ workflow: String, _ inputs: [String], environment: [String: String] = [:]) throws {
            let arguments =
                ["run", project.directory.appendingPathComponent("workflows/\(workflow).json").path] + project.trace
                + inputs.flatMap { ["--input", $0] }
            let result = try runChorus(arguments, environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
        }

        /// Exports to a file; its lines, the manifest beside it, and the stderr summary.
        private func export(
            _ project: CLIProject, _ file: String, _ options: [String], environment: [String: String] = [:]
        ) throws -> (lines: [JSONValue], manifest: JSONValue, summary: String) {
            let path = project.directory.appendingPathComponent(file).path
            let result = try runChorus(["runs", "export", "--format", "finetune", "-o", path] + options + project.trace, environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.isEmpty, "the examples go to the file only")
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let lines = try text.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
            let manifest = try JSONValue(parsing: Array(try Data(contentsOf: URL(fileURLWithPath: path + ".manifest.json"))))
            if let python = Self.python {
                let checked = try execute(python, [Self.checker, path])
                #expect(checked.status == 0, "\(file): \(checked.stdout)\(checked.stderr)")
                #expect(checked.stdout.contains("\(lines.count) lines passed, 0 failed"), "\(checked.stdout)")
            }
            return (lines, manifest, result.stderr)
        }

        @Test func escalationsToolCallsAndLabelsExportAsValidatedChatExamples() throws {
            let project = try project()
            defer { project.stop() }
            let canary = "CANARY-PII-7731"
            for _ in 0..<2 { try run(project, "mixed", ["task=Compute 2+2", "note=\(canary)"]) }

            // The teacher signal: the large model's answer to the prompt the small one failed, once.
            let escalated = try export(project, "escalated.jsonl", ["--only", "escalated"])
            #expect(escalated.lines.count == 1, "\(escalated.lines)")
            let messages = try #require(escalated.lines.first?["messages"]?.arrayValue)
            #expect(messages.map { $0["role"] } == ["system", "user", "assistant"] && messages[0]["content"] == "Solve it.")
            let answer = try JSONValue(parsing: try #require(messages.last?["content"]?.stringValue))
            #expect(answer["answer"]?.stringValue != nil && (answer["confidence"]?.numberValue ?? 0) >= 0.7, "\(answer)")
            #expect(escalated.manifest["excluded"] == ["duplicate": 1, "not escalated": 4], "\(escalated.manifest)")
            #expect(escalated.manifest["runs"]?.arrayValue?.count == 2 && escalated.manifest["examples"] == 1)
            #expect(escalated.summary.contains("1 example from 2 runs") && escalated.summary.contains("left out: 1 duplicate, 4 not escalated"))

            // Every accepted answer: the tool-using step with its calls and results; the
            // labelled one left out, its input nowhere in the file.
            let accepted = try export(project, "accepted.jsonl", [])
            #expect(accepted.lines.count == 2)
            #expect(!accepted.lines.map(\.text).joined().contains(canary))
            #expect(accepted.manifest["excluded"] == ["duplicate": 2, "labelled pii": 2], "\(accepted.manifest)")
            let tooled = try #require(accepted.lines.first { $0["tools"] != nil })
            let roles = tooled["messages"]?.arrayValue?.compactMap { $0["role"]?.stringValue } ?? []
            #expect(roles == ["user", "assistant", "tool", "assistant"], "\(tooled)")
            let conversation = tooled["messages"]?.arrayValue ?? []
            #expect(conversation.count == 4 && conversation[1]["tool_calls"]?.arrayValue?.first?["function"]?["name"] == "probe")
            #expect(conversation.count == 4 && conversation[2]["content"] == "probed\n")
            #expect(
                tooled["tools"] == [
                    [
                        "type": "function",
                        "function": [
                            "name": "probe", "description": "Looks into it.",
                            "parameters": ["type": "object", "required": ["query"], "properties": ["query": ["type": "string"]]],
                        ],
                    ]
                ])

            // Named, the label lets the step through.
            let included = try export(project, "included.jsonl", ["--include-label", "pii"])
            #expect(included.lines.count == 3 && included.lines.map(\.text).joined().contains(canary))
            #expect(included.manifest["selection"]?["include_labels"] == ["pii"])

            let solver = try export(project, "solver.jsonl", ["--agent", "solver"])
            #expect(solver.lines.count == 1 && solver.manifest["selection"]?["agent"] == "solver")
        }

        /// Issue 28's closing check: the shipped triage example's eval, its router's
        /// escalations exported — the large model labelling the tickets the small router
        /// failed — each line valid, one per escalated route step.
        @Test func theTriageExamplesEscalationsExportAndValidate() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let root = ShippedToolExampleTests.root
            let eval = try runChorus(
                [
                    "eval", root.appendingPathComponent("workflows/triage.json").path, "--cases", root.appendingPathComponent("evals/triage.jsonl").path,
                    "--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db,
                ])
            #expect(eval.status == 0, "\(eval.stderr)")
            let store = try TraceStore(path: project.db, readOnly: true)
            var escalatedRoutes = 0
            for run in try store.runs(limit: 1000) {
                let routed = try store.steps(ofRun: run.id).contains { $0.path == "triage" && $0.status == .succeeded }
                let escalated = try store.events(ofRun: run.id).contains { $0.isKind(.escalated) && $0.stepPath == "triage" }
                if routed && escalated { escalatedRoutes += 1 }
            }
            #expect(escalatedRoutes > 0, "the small router fails some tickets under the simulator")

            let teacher = try export(project, "triage.jsonl", ["--only", "escalated", "--agent", "triage"])
            let duplicates = teacher.manifest["excluded"]?["duplicate"]?.intValue ?? 0
            #expect(teacher.lines.count + duplicates == escalatedRoutes, "\(teacher.manifest)")
            for line in teacher.lines {
                let answer = try JSONValue(parsing: line["messages"]?.arrayValue?.last?["content"]?.stringValue ?? "")
                #expect(["billing", "technical", "general", "other"].contains(answer["label"]?.stringValue ?? ""), "\(answer)")
            }
        }

        /// A key in the recorded bodies is masked in the export, whether the environment names
        /// it as a key or it is the key a run's model was called with: one pasted into an input
        /// (the request holds it; the model's key in the answer was masked as it arrived), and
        /// one the provider echoed back in an accepted answer (the simulator repeats the prompt).
        @Test func keysNeverReachTheExport() throws {
            let project = try project()
            defer { project.stop() }
            let key = "sk-chorus-test-5ecret-value"
            let token = "tok-chorus-other-9secret"
            for task in ["first \(key)", "second \(token)"] { try run(project, "echo", ["task=\(task)"], environment: ["CHORUS_TEST_PROVIDER_CRED": key]) }
            let store = try TraceStore(path: project.db, readOnly: true)
            let echoed = try store.runs(limit: 10).flatMap { try store.modelCalls(ofRun: $0.id) }.compactMap { call in
                try call.responseHash.flatMap { try store.blob($0) }.map { String(decoding: $0, as: UTF8.self) }
            }
            #expect(echoed.contains { $0.contains(token) }, "the provider echoed the token: \(echoed)")
            // Without the secrets at hand the export cannot know them (so the masking below is
            // what keeps them out).
            let bare = try export(project, "bare.jsonl", []).lines.map(\.text).joined()
            #expect(bare.contains("5ecret") && bare.contains("9secret"))
            for environment in [
                ["CHORUS_TEST_PROVIDER_CRED": key, "CHORUS_TEST_OTHER_TOKEN": token], ["CHORUS_TEST_SECRET_KEY": key, "CHORUS_TEST_OTHER_TOKEN": token],
            ] {
                let masked = try export(project, "masked.jsonl", [], environment: environment)
                let text = masked.lines.map(\.text).joined()
                #expect(masked.lines.count == 2 && !text.contains("5ecret") && !text.contains("9secret"), "\(environment): \(text)")
                #expect(text.contains("[redacted]") && !masked.summary.contains("5ecret"))
            }
        }

        /// --eval takes an eval's runs, --passed those that passed; unknown names fail with one
        /// line; nothing to export is an empty file and a summary saying why.
        @Test func evalRunsErrorsAndAnEmptyExport() throws {
            let project = try project()
            defer { project.stop() }
            let base = JSONValue.string("http://127.0.0.1:\(project.port)/v1")
            try project.write(
                "chorus.json",
                [
                    "models": [
                        "small": ["provider": "openai", "base_url": base, "model": "sim-small"],
                        "large": ["provider": "anthropic", "base_url": base, "model": "sim-large"],
                    ]
                ])
            try project.write(
                "workflows/tasks.json",
                ["name": "tasks", "inputs": ["task": ["type": "string"]], "nodes": ["solve": ["kind": "agent", "agent": "solver"]], "output": "solve"])
            let generated = try runChorus(["sim", "--write-eval-cases", "8", "--seed", "3"])
            let cases = project.directory.appendingPathComponent("cases.jsonl")
            try generated.stdout.write(to: cases, atomically: true, encoding: .utf8)
            let eval = try runChorus(["eval", project.directory.appendingPathComponent("workflows/tasks.json").path, "--cases", cases.path] + project.trace)
            #expect(eval.status == 0 || eval.status == 1, "\(eval.stderr)")
            let store = try TraceStore(path: project.db, readOnly: true)
            let evalID = try #require(try store.evals().first?.id)
            let results = try store.evalResults(of: evalID)
            let passedRuns = results.filter(\.passed).compactMap(\.runID)
            #expect(results.count == 8 && !passedRuns.isEmpty)

            let passed = try export(project, "passed.jsonl", ["--eval", evalID, "--passed"])
            #expect(passed.manifest["runs"] == .array(passedRuns.map { .string($0) }))
            #expect(passed.lines.count == passedRuns.count, "one accepted answer per passed case: \(passed.manifest)")
            let all = try export(project, "all.jsonl", ["--eval", String(evalID.prefix(15))])
            #expect(all.manifest["runs"]?.arrayValue?.count == 8 && all.lines.count >= passed.lines.count)

            for (options, line) in [
                (["--eval", "nope"], "chorus runs export: no eval 'nope'"), (["nope"], "chorus runs export: no run 'nope'"),
                (["--agent", "nobody"], "chorus runs export: no step of agent 'nobody' in the runs exported"),
            ] {
                let failed = try runChorus(["runs", "export", "--format", "finetune"] + options + project.trace)
                #expect(failed.status == 1 && failed.stderr.hasPrefix(line) && failed.stderr.split(separator: "\n").count == 1, "\(failed.stderr)")
            }
            let misused = try runChorus(["runs", "export", "--passed", "--format", "finetune"] + project.trace)
            #expect(misused.status != 0 && misused.stderr.contains("--passed goes with --eval"), "\(misused.stderr)")

            let empty = project.directory.appendingPathComponent("empty.db").path
            _ = try TraceStore(path: empty)
            let file = project.directory.appendingPathComponent("empty.jsonl").path
            let none = try runChorus(["runs", "export", "--format", "finetune", "--db", empty, "-o", file])
            #expect(none.status == 0 && none.stderr.contains("0 examples from 0 runs") && none.stderr.contains("no runs in the trace"), "\(none.stderr)")
            #expect((try? Data(contentsOf: URL(fileURLWithPath: file)))?.isEmpty == true)
        }
    }
}
