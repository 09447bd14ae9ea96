import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// `chorus submit` and `chorus worker` on a real PostgreSQL server (scripts/test starts one).
extension CLI {
    @Suite(.serialized, .enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
    struct WorkerCommandTests {
        private func submit(_ project: CLIProject, _ url: String, _ count: Int) throws -> [String] {
            try (0..<count).map { index in
                let submitted = try runChorus(["submit", project.directory.appendingPathComponent("workflows/fan.json").path,
                                               "--config", project.directory.appendingPathComponent("chorus.json").path,
                                               "--db", url, "--input", "question=q\(index)"])
                try #require(submitted.status == 0, "\(submitted.stderr)")
                return submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }

        /// Three workers share eight submitted runs: each runs exactly once, and every step
        /// of every run is called once (the simulator's count).
        @Test func threeWorkersRunEverySubmittedRunExactlyOnce() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "20"], subtasks: 40, maxParallel: 10)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let ids = try submit(project, url, 8)
            let workers = try (0..<3).map { _ in try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-runs", "2"]) }
            let results = workers.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results)")
            let store = try PostgresTraceStore(url: url, readOnly: true)
            let runs = try store.runs(limit: 100)
            #expect(Set(runs.map(\.id)) == Set(ids), "one run per submission, with its id")
            #expect(runs.allSatisfy { $0.status == .succeeded })
            #expect(try project.simRequests() == 8 * 41, "every step called once")
            let listed = try runChorus(["queue", "--db", url, "--json"])
            let rows = try JSONValue(parsing: listed.stdout).arrayValue ?? []
            #expect(rows.count == 8 && rows.allSatisfy { $0["status"] == "succeeded" && $0["attempts"] == 1 }, "\(listed.stdout) \(listed.stderr)")
            let busy = results.filter { $0.stderr.contains("succeeded (run") }.count
            #expect(busy >= 2, "the work was shared: \(results.map(\.stderr))")
        }

        /// A model's `max_concurrency` of 8 holds across three workers running a run each
        /// (each run alone would keep 8 in flight: 24 together); the simulator's peak says so.
        @Test func aModelsConcurrencyLimitHoldsAcrossWorkers() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 60, maxParallel: 20)
            defer { project.stop() }
            var config = try JSONValue(parsing: Array(try Data(contentsOf: project.directory.appendingPathComponent("chorus.json"))))
            var models = config["models"]?.objectValue ?? [:]
            var small = models["small"]?.objectValue ?? [:]
            small["max_concurrency"] = 8
            models["small"] = .object(small)
            config = .object(["models": .object(models)])
            try project.write("chorus.json", config)
            let url = try newPostgresDatabase()
            _ = try submit(project, url, 3)
            let workers = try (0..<3).map { _ in try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-runs", "1"]) }
            let results = workers.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results)")
            let stats = try JSONValue(parsing: try httpRequest(port: project.port, "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
            let peak = stats["models"]?["sim-small"]?["peak_in_flight"]?.intValue ?? -1
            #expect(peak > 0 && peak <= 8, "peak \(peak) calls in flight across the workers")
            #expect(stats["models"]?["sim-small"]?["requests"]?.intValue == 3 * 60)
        }

        /// A worker killed with SIGKILL mid-run: its run dies with it, its lease lapses, and
        /// another worker resumes the run, reusing every step that had been committed.
        @Test func aKilledWorkersRunIsTakenOverAndResumedWithoutRepeatingAStep() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 200, maxParallel: 10)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let id = try #require(try submit(project, url, 1).first)
            let first = try RunningChorus(["worker", "--db", url, "--lease-seconds", "2"])
            let store = try PostgresTraceStore(url: url, readOnly: true)
            var progressed = false
            for _ in 0..<600 where !progressed {
                usleep(50_000)
                progressed = ((try? store.steps(ofRun: id)) ?? []).filter { $0.status == .succeeded }.count >= 40
            }
            #expect(progressed, "the first worker's run never got 40 steps in")
            kill(first.process.processIdentifier, SIGKILL)
            _ = first.finish()
            usleep(300_000)  // the child dies with its worker
            try project.resetStats()
            let second = try RunningChorus(["worker", "--db", url, "--lease-seconds", "2", "--exit-when-idle"])
            let (status, stderr) = second.finish()
            #expect(status == 0 && stderr.contains("taking over \(id)"), "\(stderr)")
            let resume = try #require(try store.runs(parent: id).first { $0.relation == "resume" })
            #expect(resume.status == .succeeded)
            #expect(try store.run(matching: id)?.status == .interrupted, "the killed worker's run stopped with it")
            // Counted now: a commit the killed run had in flight may have landed after the kill.
            let committed = try store.steps(ofRun: id).filter { $0.status == .succeeded && !$0.isNodeResult }.count
            let requests = try project.simRequests()
            #expect(requests == 201 - committed, "only the steps not committed ran again: \(requests) requests, \(committed) committed; \(stderr)")
            #expect(try store.verify(resume.id).intact)
            let listed = try runChorus(["queue", "--db", url, "--json"])
            let row = try #require(try JSONValue(parsing: listed.stdout).arrayValue?.first)
            #expect(row["attempts"] == 2 && row["runs"]?.arrayValue?.count == 2 && row["status"] == "succeeded", "\(listed.stdout)")
        }
    }
}
