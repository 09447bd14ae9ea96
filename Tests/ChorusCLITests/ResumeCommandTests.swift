import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// `chorus resume` after SIGKILL at several points: the same output as an uninterrupted
/// run, and not one finished step executed again (the simulator's request count says so).
extension CLI {
    @Suite(.serialized) struct ResumeCommandTests {
        static let subtasks = 40

        /// Waits (up to 30 s, polling the trace every 10 ms) until `condition` holds for the
        /// newest run's steps. The store is opened once: opening it per poll was slow enough under
        /// a loaded machine to miss the synthesis, whose call lasts one simulated latency.
        private func waitUntil(_ db: String, _ condition: ([StepRecord]) -> Bool) -> Bool {
            var store: TraceStore?
            for _ in 0..<3000 {
                if store == nil, FileManager.default.fileExists(atPath: db) { store = try? TraceStore(path: db) }
                if let store, let run = try? store.runs().first, let steps = try? store.steps(ofRun: run.id), condition(steps) { return true }
                usleep(10_000)
            }
            return false
        }

        private func output(_ json: String) throws -> JSONValue? { try JSONValue(parsing: json)["output"] }

        @Test(arguments: ["before the fan-out", "mid fan-out", "during reconciliation"])
        func aRunKilledAtAnyPointResumesToTheUninterruptedOutputWithoutRepeatingAStep(_ point: String) throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "300"], subtasks: Self.subtasks, maxParallel: 20)
            defer { project.stop() }
            let baseline = try runChorus(project.arguments(["--json"], workflow: "answer"))
            #expect(baseline.status == 0, "\(baseline.stderr)")
            let expected = try output(baseline.stdout)

            let run = try RunningChorus(project.arguments(workflow: "answer"))
            let reached = waitUntil(project.db) { steps in
                let fresh = steps.count < Self.subtasks + 3  // the newest run, not the baseline
                switch point {
                case "before the fan-out": return fresh && steps.contains { $0.path == "plan" && $0.status == .running }
                case "mid fan-out": return fresh && steps.filter { $0.path.hasPrefix("work/") && $0.status == .succeeded }.count >= Self.subtasks / 3
                default: return steps.contains { $0.path == "answer" && $0.status == .running }
                }
            }
            kill(run.process.processIdentifier, SIGKILL)
            _ = run.finish()
            #expect(reached, "the run never got \(point)")

            let store = try TraceStore(path: project.db)
            let killed = try #require(try store.runs().first)
            let finished = try store.steps(ofRun: killed.id).filter { $0.status == .succeeded && !$0.path.hasSuffix("#result") }.count
            try project.resetStats()
            let resumed = try runChorus(["resume", killed.id, "--json"] + project.trace)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try output(resumed.stdout) == expected, "the output an uninterrupted run gives")
            let steps = Self.subtasks + 2
            #expect(try project.simRequests() == steps - finished, "only the \(steps - finished) unfinished steps ran (\(point))")

            let summary = try JSONValue(parsing: resumed.stdout)
            let newID = try #require(summary["run_id"]?.stringValue)
            #expect(summary["reused_steps"]?.intValue ?? 0 == finished)
            let record = try #require(try store.run(matching: newID))
            #expect(record.parentRunID == killed.id && record.relation == .resume)
            #expect(try store.events(ofRun: newID).filter { $0.kind == "step_reused" }.count == finished)
            #expect(try store.verify(newID).intact)
            #expect(try store.verify(killed.id).intact, "the killed run's trace is a sound audit log too")

            let again = try runChorus(["resume", killed.id] + project.trace)
            #expect(again.status == 1 && again.stderr.contains("already resumed as \(newID)"), "\(again.stderr)")
        }

        @Test func twoResumesAtOnceDoNotBothRunTheRun() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "150"], subtasks: Self.subtasks, maxParallel: 8)
            defer { project.stop() }
            let run = try RunningChorus(project.arguments(workflow: "answer"))
            #expect(waitForSteps(project.db, atLeast: 5))
            kill(run.process.processIdentifier, SIGKILL)
            _ = run.finish()
            let store = try TraceStore(path: project.db)
            let killed = try #require(try store.runs().first)
            let finished = try store.steps(ofRun: killed.id).filter { $0.status == .succeeded && !$0.path.hasSuffix("#result") }.count
            try project.resetStats()
            let first = try RunningChorus(["resume", killed.id] + project.trace)
            let second = try RunningChorus(["resume", killed.id] + project.trace)
            let results = [first.finish(), second.finish()]
            #expect(results.filter { $0.status == 0 }.count == 1, "\(results)")
            let refused = try #require(results.first { $0.status != 0 })
            #expect(refused.stderr.contains("already being resumed") || refused.stderr.contains("already resumed"), "\(refused.stderr)")
            #expect(try project.simRequests() == Self.subtasks + 2 - finished, "one resume's worth of calls, not two")
        }

        /// A run killed mid fan-out, then three resumes each killed as soon as they have
        /// started: the fourth resume makes exactly as many calls as there are steps no run of
        /// the chain finished (issue 17: a resume of a killed resume re-ran its parent's steps).
        @Test func aChainOfKilledResumesNeverRepeatsAFinishedStep() throws {
            // Enough finished steps that a resume takes a moment to copy them all, and is
            // killed in that moment.
            let subtasks = 1500
            let project = try CLIProject(simArguments: ["--latency-ms", "50"], subtasks: subtasks, maxParallel: 100)
            defer { project.stop() }
            let first = try RunningChorus(project.arguments(workflow: "answer"))
            #expect(waitForSteps(project.db, atLeast: 600))
            kill(first.process.processIdentifier, SIGKILL)
            _ = first.finish()
            let store = try TraceStore(path: project.db)
            var chain = [try #require(try store.runs().first)]
            for _ in 0..<3 {
                let resume = try RunningChorus(["resume", chain.last!.id] + project.trace)
                var next: RunRecord?
                for _ in 0..<2000 where next == nil {
                    usleep(2_000)
                    next = try? store.runs(parent: chain.last!.id).first { $0.relation == .resume }
                }
                kill(resume.process.processIdentifier, SIGKILL)
                _ = resume.finish()
                chain.append(try #require(next, "the resume of \(chain.last!.id) never started"))
            }
            var finished = Set<String>()
            for run in chain {
                finished.formUnion(try store.steps(ofRun: run.id).filter { $0.status == .succeeded && !$0.isNodeResult }.map(\.path))
            }
            try project.resetStats()
            let last = try runChorus(["resume", chain.last!.id, "--json"] + project.trace)
            #expect(last.status == 0, "\(last.stderr)")
            #expect(
                try project.simRequests() == subtasks + 2 - finished.count,
                "\(subtasks + 2 - finished.count) steps were unfinished across the chain of \(chain.count) runs")
        }

        @Test func aRunThatSucceededOrDoesNotExistIsNotResumed() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let done = try runChorus(project.arguments(["--json"]))
            let id = try #require(try JSONValue(parsing: done.stdout)["run_id"]?.stringValue)
            let again = try runChorus(["resume", id] + project.trace)
            #expect(again.status == 1 && again.stderr.contains("succeeded: nothing to resume"))
            let missing = try runChorus(["resume", "nope"] + project.trace)
            #expect(missing.status == 1 && missing.stderr.contains("no run 'nope'"))
        }

        /// The resume's database work runs off the event loop: Ctrl-C while it waits on a lock
        /// another process holds (SQLite's busy timeout is 10 s) is honoured at once.
        @Test func ctrlCDuringAResumeBlockedOnTheDatabaseIsHonouredAtOnce() throws {
            let project = try CLIProject(simArguments: ["--error-rate", "1"], subtasks: 3)
            defer { project.stop() }
            let failed = try runChorus(project.arguments(["--json"]))
            #expect(failed.status == 1)
            let runID = try #require(try JSONValue(parsing: Array(failed.stdout.utf8))["run_id"]?.stringValue)
            let pipe = try closeOnExecPipe()
            let holder = try spawnChild(
                "/usr/bin/env",
                [
                    "python3", "-c",
                    "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                        + "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(30)", project.db,
                ],
                stdout: pipe.write)
            close(pipe.write)
            defer { close(pipe.read) }
            var locked = [UInt8](repeating: 0, count: 6)
            #expect(read(pipe.read, &locked, 6) == 6 && locked == Array("locked".utf8))
            let resume = try RunningChorus(["resume", runID] + project.trace)
            usleep(1_500_000)  // past start-up: the signal watchers are in place, the lock is being waited for
            let interrupted = Date()
            kill(resume.process.processIdentifier, SIGINT)
            let (status, stderr) = resume.finish()
            let waited = Date().timeIntervalSince(interrupted)
            // Either the signal's default action ended it while it opened the database (before
            // any watcher exists), or the resume's off-loop wait for the run lock was cancelled.
            let killed = resume.signalled && status == 128 + SIGINT
            #expect(killed || (status == 1 && stderr.contains("interrupted before the run started")), "\(status): \(stderr)")
            #expect(waited < 5, "honoured in \(waited) s, not after the 10 s busy timeout")
            kill(holder, SIGKILL)  // children of the test runner start with SIGTERM blocked
            _ = waitForExit(holder)
            let store = try TraceStore(path: project.db)
            #expect(try store.runs().count == 1, "nothing was run")
        }

        /// Killed while tools run: a resume reuses every tool call the killed run finished (in
        /// finished steps and in steps it did not finish) and runs only the rest.
        @Test func aResumeAfterAKillDuringToolCallsRunsOnlyTheToolCallsThatDidNotFinish() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 30, maxParallel: 6)
            defer { project.stop() }
            let log = project.directory.appendingPathComponent("executions.log").path
            try project.useTool(["sh", "-c", "echo x >> \"$0\"; sleep 0.3; cat", log])
            let run = try RunningChorus(project.arguments())
            var executed = 0
            for _ in 0..<400 {
                executed = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count
                if executed >= 12 { break }
                usleep(25_000)
            }
            kill(run.process.processIdentifier, SIGKILL)
            _ = run.finish()
            #expect(executed >= 12 && executed < 30, "killed mid-run (\(executed) tool executions)")
            let store = try TraceStore(path: project.db)
            let killed = try #require(try store.runs().first)
            let recorded = try store.toolCalls(ofRun: killed.id).count
            let before = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count
            let resume = try runChorus(["resume", killed.id, "--json"] + project.trace)
            #expect(resume.status == 0, "\(resume.stderr)")
            let after = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count
            #expect(after - before == 30 - recorded, "the resume ran \(after - before) tools; \(recorded) of 30 had finished")
            let newID = try #require(try JSONValue(parsing: Array(resume.stdout.utf8))["run_id"]?.stringValue)
            #expect(try store.toolCalls(ofRun: newID).count == 30, "every tool call is in the resumed run's trace")
            #expect(try store.verify(newID).intact)
        }
    }
}

/// Human approval: a node waits for a person; the run pauses durably (exit 4, the process
/// ends), `chorus approve` records the decision in the audit chain, `chorus resume` continues
/// without repeating anything and gives what an approved-from-the-start run gives.
extension CLI {
    @Suite(.serialized) struct ApprovalCommandTests {
        /// The id of a run of workflows/approved.json, paused at its `answer` node.
        private func pausedRun(_ project: CLIProject) throws -> String {
            try requireApproval(project)
            let paused = try runChorus(project.arguments(["--json"], workflow: "approved"))
            return try #require(try JSONValue(parsing: Array(paused.stdout.utf8))["run_id"]?.stringValue, "\(paused.stderr)")
        }

        private func requireApproval(_ project: CLIProject) throws {
            var workflow = try JSONValue(parsing: Array(try Data(contentsOf: project.directory.appendingPathComponent("workflows/answer.json"))))
            var nodes = workflow["nodes"]?.objectValue ?? [:]
            nodes["answer"] = .object((nodes["answer"]?.objectValue ?? [:]).merging(["approval": "always"]) { $1 })
            workflow = .object((workflow.objectValue ?? [:]).merging(["nodes": .object(nodes)]) { $1 })
            try project.write("workflows/approved.json", workflow)
        }

        @Test func aPausedRunIsApprovedThenResumedToTheSameOutput() throws {
            let project = try CLIProject(subtasks: 6)
            defer { project.stop() }
            let plain = try runChorus(project.arguments(["--json"], workflow: "answer"))
            let expected = try JSONValue(parsing: Array(plain.stdout.utf8))["output"]
            try requireApproval(project)
            try project.resetStats()
            let paused = try runChorus(project.arguments(["--json"], workflow: "approved"))
            #expect(paused.status == 4, "\(paused.stderr)")
            // One spelling, the node named in the hint, a pause not counted as a failure (issue 24).
            #expect(paused.stderr.contains(" awaiting_approval in ") && !paused.stderr.contains("awaitingApproval"), "\(paused.stderr)")
            #expect(paused.stderr.contains("1 step waits for approval") && !paused.stderr.contains("failed or not run"), "\(paused.stderr)")
            #expect(paused.stderr.contains("chorus approve ") && paused.stderr.contains(" answer") && !paused.stderr.contains("NODE"), "\(paused.stderr)")
            let summary = try JSONValue(parsing: Array(paused.stdout.utf8))
            #expect(summary["status"] == "awaiting_approval" && summary["error_code"] == "awaiting_approval")
            let id = try #require(summary["run_id"]?.stringValue)
            #expect(try project.simRequests() == 7, "the plan and six workers; the waiting node asked nothing")
            let pending = try runChorus(["runs", "pending"] + project.trace)
            #expect(pending.stdout.contains(id) && pending.stdout.contains("waits for: answer"), "\(pending.stdout)")

            let approve = try runChorus(["approve", id, "answer", "--note", "looks fine"] + project.trace, environment: ["CHORUS_USER": "alice"])
            #expect(approve.status == 0 && approve.stdout.contains("approved answer"), "\(approve.stderr)")
            let again = try runChorus(["approve", id, "nope"] + project.trace)
            #expect(again.status == 1 && again.stderr.contains("does not wait for node 'nope'"))

            try project.resetStats()
            let resumed = try runChorus(["resume", id, "--json"] + project.trace)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try JSONValue(parsing: Array(resumed.stdout.utf8))["output"] == expected, "the same output as approved from the start")
            let after = try runChorus(["runs", "pending"] + project.trace)
            #expect(!after.stdout.contains(id), "a resumed run waits no more: \(after.stdout)")
            #expect(try project.simRequests() == 1, "only the approved node ran; nothing was repeated")
            let resumedID = try #require(try JSONValue(parsing: Array(resumed.stdout.utf8))["run_id"]?.stringValue)
            let replay = try runChorus(["replay", resumedID] + project.trace)
            #expect(
                replay.status == 0 && (replay.stdout + replay.stderr).contains("reproduced byte for byte"),
                "the recorded decision is reproduced, not asked again: \(replay.stdout) \(replay.stderr)")
            let store = try TraceStore(path: project.db)
            let decision = try #require(try store.events(ofRun: id).first { $0.kind == "approval_decided" })
            #expect(decision.detailJSON?.contains("\"by\":\"alice\"") == true && decision.detailJSON?.contains("looks fine") == true)
            #expect(try store.verify(id).intact)
            // An edited decision breaks the audit chain.
            let edit = try runProgram([
                "python3", "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE event SET detailJSON=replace(detailJSON,'alice','mallory') WHERE kind='approval_decided'\"); c.commit()",
                project.db,
            ])
            #expect(edit == 0)
            #expect(try TraceStore(path: project.db).verify(id).intact == false)
        }

        @Test func aDeniedNodeFailsWithTheNoteWhenResumed() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let id = try pausedRun(project)
            #expect(try runChorus(["deny", id, "answer", "--note", "not this week"] + project.trace).status == 0)
            let resumed = try runChorus(["resume", id, "--json"] + project.trace)
            #expect(resumed.status == 1)
            #expect(resumed.stdout.contains("not this week"), "\(resumed.stdout)")
        }

        /// A denial edited into an approval in the database (issue 23: `runs verify` said NOT
        /// INTACT, yet resume honoured it and the run succeeded). Resume, approve and replay now
        /// refuse a run whose chain does not verify, naming the first bad record;
        /// `--force-unverified` goes on and the new run records the break.
        @Test func aForgedApprovalIsRefused() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let id = try pausedRun(project)
            #expect(try runChorus(["deny", id, "answer", "--note", "no"] + project.trace).status == 0)
            let forge =
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                + "c.execute(\"UPDATE event SET detailJSON=replace(detailJSON,'denied','approved') WHERE kind='approval_decided'\"); c.commit()"
            #expect(try runProgram(["python3", "-c", forge, project.db]) == 0)
            try project.resetStats()
            let resumed = try runChorus(["resume", id, "--json"] + project.trace)
            #expect(resumed.status == 1 && resumed.stderr.contains("audit chain is not intact: run \(id):"), "\(resumed.stderr)")
            #expect(try project.simRequests() == 0, "nothing ran on the forged decision")
            let approve = try runChorus(["approve", id, "answer"] + project.trace)
            #expect(approve.status == 1 && approve.stderr.contains("audit chain is not intact"), "\(approve.stderr)")
            let replay = try runChorus(["replay", id] + project.trace)
            #expect(replay.status == 1 && replay.stderr.contains("audit chain is not intact"), "\(replay.stderr)")
            let forced = try runChorus(["resume", id, "--json", "--force-unverified"] + project.trace)
            let forcedID = try #require(try JSONValue(parsing: Array(forced.stdout.utf8))["run_id"]?.stringValue, "\(forced.stderr)")
            let started = try #require(try TraceStore(path: project.db).events(ofRun: forcedID).first { $0.kind == "run_started" })
            #expect(started.detailJSON?.contains("unverified_source") == true, "the forced run records what it acted on")
        }

        /// A deny note's escape sequences and line breaks never reach the terminal raw (issue 23:
        /// a forged "approved" line could be printed).
        @Test func aNotesControlCharactersAreEscaped() throws {
            let project = try CLIProject(subtasks: 3)
            defer { project.stop() }
            let id = try pausedRun(project)
            let note = "no\r\napproved answer of run \(id) (by boss)\u{1B}[2K\u{1B}]0;owned\u{07}"
            #expect(try runChorus(["deny", id, "answer", "--note", note] + project.trace).status == 0)
            let resumed = try runChorus(["resume", id] + project.trace)
            #expect(resumed.status == 1)
            #expect(!resumed.stderr.contains("\u{1B}") && !resumed.stderr.contains("\r") && !resumed.stderr.contains("\u{07}"), "\(resumed.stderr)")
            #expect(resumed.stderr.contains("no\\r\\napproved answer") && resumed.stderr.contains("\\e[2K"), "\(resumed.stderr)")
            #expect(!resumed.stderr.split(separator: "\n").contains { $0.hasPrefix("approved") }, "no line of its own")
        }
    }
}
