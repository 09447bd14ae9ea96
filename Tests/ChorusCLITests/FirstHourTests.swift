import ChorusJSON
import Foundation
import Testing
import TestSupport

/// What a new user meets first (issue 24): the config found from anywhere, a refused
/// connection explained, one spelling and one mention of each thing, honest help.
extension CLI {
    @Suite struct FirstHourTests {
        /// chorus.json is found the way git finds its repository: from another directory, the
        /// nearest one above the workflow file.
        @Test func chorusJSONIsFoundFromTheWorkflowsFolderUp() throws {
            let project = try CLIProject(subtasks: 2)
            defer { project.stop() }
            let elsewhere = FileManager.default.temporaryDirectory.path
            let workflow = project.directory.appendingPathComponent("workflows/fan.json").path
            let validate = try runChorus(["validate", workflow], in: elsewhere)
            #expect(validate.status == 0, "\(validate.stderr)")
            let run = try runChorus(["run", workflow, "--input", "question=why", "--db", project.db, "--json"], in: elsewhere)
            #expect(run.status == 0, "\(run.stderr)")
        }

        /// A model whose server is not running: which URL, and what to start.
        @Test func aRefusedConnectionToALoopbackModelSaysWhatToStart() throws {
            let project = try CLIProject(subtasks: 2)
            defer { project.stop() }
            project.sim.process.terminate()
            _ = project.sim.finish()
            let run = try runChorus(project.arguments())
            #expect(run.status == 1)
            #expect(
                run.stderr.contains("nothing listens at http://127.0.0.1:\(project.port)/v1") && run.stderr.contains("start the model's server"),
                "\(run.stderr)")
            #expect(try runChorus(["--version"]).stdout.split(separator: ".").count == 3)
        }

        /// An eval cannot wait for a person: refused up front, or run approved with --approve.
        @Test func anEvalOfAGatedWorkflowIsRefusedOrApproved() throws {
            let project = try CLIProject(subtasks: 2)
            defer { project.stop() }
            try project.editEntry("workflows/answer.json", "nodes", "answer") { $0["approval"] = "always" }
            let cases = project.directory.appendingPathComponent("cases.jsonl").path
            try #"{"id": "c1", "inputs": {"question": "why"}, "expect": {"contains": ""}}"#.write(toFile: cases, atomically: true, encoding: .utf8)
            let workflow = project.directory.appendingPathComponent("workflows/answer.json").path
            let refused = try runChorus(["eval", workflow, "--cases", cases] + project.trace)
            #expect(
                refused.status == 2 && refused.stderr.contains("waits for a person at answer") && refused.stderr.contains("--approve answer"),
                "\(refused.stderr)")
            #expect(try project.simRequests() == 0)
            let approved = try runChorus(["eval", workflow, "--cases", cases, "--approve", "answer", "--approve", "answer", "--json"] + project.trace)
            #expect(approved.status == 0, "\(approved.stderr)")
            let wrong = try runChorus(["eval", workflow, "--cases", cases, "--approve", "nope"] + project.trace)
            #expect(wrong.status == 2 && wrong.stderr.contains("--approve nope: nothing waits for approval there"), "\(wrong.stderr)")
        }

        /// Each thing said once: a step's path, a run that never starts, an ambiguous prefix, a
        /// fork point that cannot exist.
        @Test func everyMessageOnceAndPlain() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            try project.write(
                "agents/worker.json",
                [
                    "name": "worker", "model": "small", "prompt": "{{item}}", "retries": 0,
                    "guards": ["input": [["type": "regex", "pattern": "Subtask"]]],
                ])
            let failed = try runChorus(project.arguments())
            #expect(failed.status == 1)
            #expect(failed.stderr.contains("work/0: input regex guard") && !failed.stderr.contains("work/0: work/0:"), "\(failed.stderr)")
            try project.write("agents/worker.json", ["name": "worker", "model": "small", "prompt": "{{item}}"])
            let first = try runChorus(project.arguments(["--json"]))
            let id = try #require(try JSONValue(parsing: first.stdout)["run_id"]?.stringValue, "\(first.stderr)")
            let resume = try runChorus(["resume", id] + project.trace)
            #expect(resume.status == 1 && resume.stderr.contains("nothing to resume") && !resume.stderr.contains("started"), "\(resume.stderr)")
            _ = try runChorus(project.arguments())
            let prefix = String(id.prefix(9))  // the date: every run of this test shares it
            let ambiguous = try runChorus(["runs", "show", prefix] + project.trace)
            #expect(ambiguous.status == 1 && ambiguous.stderr.contains("'\(prefix)' matches") && ambiguous.stderr.contains(id), "\(ambiguous.stderr)")
            let fork = try runChorus(["replay", id, "--live-from", "plan/round-3"] + project.trace)
            #expect(fork.status != 0 && fork.stderr.contains("not lead: it has no rounds"), "\(fork.stderr)")
            let help = try runChorus(["run", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(help.contains("3 a budget stopped it") && help.contains("4 it paused for approval"), "\(help)")
        }
    }
}
