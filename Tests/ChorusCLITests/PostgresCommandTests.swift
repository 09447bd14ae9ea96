import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// `--db postgres://…`: one process runs the whole run recording to PostgreSQL, and every
/// `runs` command, replay and resume work on it as on SQLite (scripts/test starts the server).
extension CLI {
    @Suite(.serialized, .enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
    struct PostgresCommandTests {
        private func trace(_ project: CLIProject, _ url: String) -> [String] {
            ["--config", project.directory.appendingPathComponent("chorus.json").path, "--db", url]
        }

        private func run(_ project: CLIProject, _ url: String, _ extra: [String] = [], workflow: String = "fan") -> [String] {
            project.arguments(extra, workflow: workflow).map { $0 == project.db ? url : $0 }
        }

        @Test func aRunRecordsToPostgresAndTheRunsCommandsReadIt() throws {
            let project = try CLIProject(subtasks: 30)
            defer { project.stop() }
            let url = try newPostgresDatabase(migrated: false)
            // A database no run has written yet: one line, as for a SQLite file that does not exist
            // (issue 23: `relation "run" does not exist`).
            let empty = try runChorus(["runs", "list"] + trace(project, url))
            #expect(empty.status == 1 && empty.stderr.contains("no Chorus tables yet (a run creates them)"), "\(empty.stderr)")
            let result = try runChorus(run(project, url, ["--json"]))
            #expect(result.status == 0, "\(result.stderr)")
            let id = try #require(try JSONValue(parsing: result.stdout)["run_id"]?.stringValue)
            let show = try runChorus(["runs", "show", id, "--json"] + trace(project, url))
            #expect(try JSONValue(parsing: show.stdout)["steps"]?.arrayValue?.count == 31, "\(show.stderr)")
            let verify = try runChorus(["runs", "verify", id] + trace(project, url))
            #expect(verify.status == 0 && verify.stdout.contains("intact"), "\(verify.stdout) \(verify.stderr)")
            try project.resetStats()
            let replay = try runChorus(["replay", id] + trace(project, url))
            #expect(replay.status == 0 && (replay.stdout + replay.stderr).contains("0 made"), "\(replay.stderr)")
            #expect(try project.simRequests() == 0, "a replay calls no model")
            let store = try PostgresTraceStore(url: url, readOnly: true)
            #expect(try store.modelCalls(ofRun: id).count == 31)
        }

        @Test func aRunKilledMidFanOutResumesFromPostgresWithoutRepeatingAStep() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 60, maxParallel: 10)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let running = try RunningChorus(run(project, url, workflow: "answer"))
            let store = try PostgresTraceStore(url: url, readOnly: true)
            var reached = false
            for _ in 0..<600 where !reached {
                usleep(50_000)
                if let run = try? store.runs().first, let steps = try? store.steps(ofRun: run.id) {
                    reached = steps.filter { $0.status == .succeeded && $0.path.hasPrefix("work/") }.count >= 15
                }
            }
            kill(running.process.processIdentifier, SIGKILL)
            _ = running.finish()
            #expect(reached, "the run never got 15 steps in")
            let killed = try #require(try store.runs().first)
            let finished = try store.steps(ofRun: killed.id).filter { $0.status == .succeeded && !$0.isNodeResult }.count
            try project.resetStats()
            let resumed = try runChorus(["resume", killed.id, "--json"] + trace(project, url))
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try project.simRequests() == 62 - finished, "only the unfinished steps ran")
            let newID = try #require(try JSONValue(parsing: resumed.stdout)["run_id"]?.stringValue)
            #expect(try store.verify(newID).intact && store.verify(killed.id).intact)
        }
    }
}
