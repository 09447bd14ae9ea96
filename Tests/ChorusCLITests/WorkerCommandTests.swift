import ChorusCoordination
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
                let submitted = try runChorus([
                    "submit", project.directory.appendingPathComponent("workflows/fan.json").path,
                    "--config", project.directory.appendingPathComponent("chorus.json").path,
                    "--db", url, "--input", "question=q\(index)",
                ])
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
            // Inputs reach a run through its standard input (issue 23: a world-readable file
            // per run was left in the temp directory).
            let temp = FileManager.default.temporaryDirectory.path
            let left = ids.filter { FileManager.default.fileExists(atPath: "\(temp)/chorus-inputs-\($0).json") }
            #expect(left.isEmpty, "inputs files left behind: \(left)")
        }

        /// Three workers share one 2,000-subtask run: the worker holding it plans it, every
        /// worker runs its steps, and each step is leased and called exactly once.
        @Test func threeWorkersShareOneRunAndRunEachStepOnce() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "50"], subtasks: 2000, maxParallel: 2000)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let id = try #require(try submit(project, url, 1).first)
            let workers = try (0..<3).map { _ in
                try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-runs", "2", "--max-parallel", "32"])
            }
            let results = workers.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
            let store = try PostgresTraceStore(url: url, readOnly: true)
            #expect(try store.run(matching: id)?.status == .succeeded)
            let steps = try store.steps(ofRun: id).filter { !$0.isNodeResult }
            #expect(steps.count == 2001 && steps.allSatisfy { $0.status == .succeeded }, "\(steps.count) steps")
            #expect(try project.simRequests() == 2001, "every step called once")
            let table = try #require(store.location.openCoordination()?.stepQueue())
            let counts = try table.stepCounts(runKey: id)
            #expect(counts.steps == 2001 && counts.done == 2001 && counts.leases == 2001, "each step leased once: \(counts)")
            // Which worker ran what: each worker's children are named after it.
            let names = results.compactMap { result in
                result.stderr.components(separatedBy: "chorus worker ").dropFirst().first?.components(separatedBy: ": leasing").first
            }
            #expect(names.count == 3, "\(results.map(\.stderr))")
            let done = try table.doneBy(runKey: id)
            let perWorker = names.map { name in done.filter { $0.key.hasPrefix(name + "/") }.values.reduce(0, +) }
            #expect(perWorker.reduce(0, +) == 2001 && perWorker.allSatisfy { $0 > 0 }, "steps per worker: \(perWorker)")
            #expect(try store.events(ofRun: id).filter { $0.kind == "step_shared" }.count == 2001)
            #expect(try store.verify(id).intact, "the coordinator chained every step it copied")
            // What a user sees: runs show's steps by worker, chorus queue's steps done.
            let shown = try JSONValue(parsing: try runChorus(["runs", "show", id, "--db", url, "--json"]).stdout)
            let byWorker = shown["workers"]?.arrayValue ?? []
            #expect(Set(byWorker.compactMap { $0["worker"]?.stringValue }) == Set(names), "\(byWorker)")
            #expect(byWorker.compactMap { $0["steps"]?.intValue }.reduce(0, +) == 2001)
            let listed = try JSONValue(parsing: try runChorus(["queue", "--db", url, "--json"]).stdout)
            #expect(listed.arrayValue?.first?["steps"] == ["total": 2001, "done": 2001], "\(listed)")
            // A shared run replays like any other: every call from the trace, none at the provider.
            let replay = try runChorus(["replay", id, "--db", url, "--json"])
            #expect(replay.status == 0, "\(replay.stderr)")
            #expect(try project.simRequests() == 2001, "the replay asked the provider nothing")
        }

        /// The worker coordinating a shared run is killed with SIGKILL mid-run: the other
        /// workers' executors keep running its queued steps, one of them takes the run over
        /// once its lease lapses, and no step whose result had been committed runs again.
        @Test func aSharedRunSurvivesItsCoordinatorsWorkerBeingKilled() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "50"], subtasks: 2000, maxParallel: 2000)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let id = try #require(try submit(project, url, 1).first)
            let store = try PostgresTraceStore(url: url, readOnly: true)
            let table = try #require(store.location.openCoordination()?.stepQueue())
            let first = try RunningChorus(["worker", "--db", url, "--lease-seconds", "2", "--max-parallel", "16"])
            var started = false
            for _ in 0..<600 where !started {
                usleep(50_000)
                started = ((try? table.stepCounts(runKey: id).done) ?? 0) >= 50
            }
            #expect(started, "the first worker's run never got 50 steps in")
            let others = try (0..<2).map { _ in
                try RunningChorus(["worker", "--db", url, "--lease-seconds", "2", "--max-parallel", "16", "--exit-when-idle"])
            }
            var shared = false
            for _ in 0..<600 where !shared {
                usleep(50_000)
                shared = ((try? table.stepCounts(runKey: id).done) ?? 0) >= 400
            }
            #expect(shared)
            kill(first.process.processIdentifier, SIGKILL)
            _ = first.finish()
            let results = others.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
            #expect(results.contains { $0.stderr.contains("taking over \(id)") }, "\(results.map(\.stderr))")
            let resume = try #require(try store.runs(parent: id).first { $0.relation == .resume })
            #expect(resume.status == .succeeded)
            let steps = try store.steps(ofRun: resume.id).filter { !$0.isNodeResult }
            #expect(steps.count == 2001 && steps.allSatisfy { $0.status == .succeeded }, "\(steps.count) steps")
            // A step runs again only if the killed worker held it unfinished: each extra
            // request is a lapsed lease, never a done step.
            let counts = try table.stepCounts(runKey: id)
            let requests = try project.simRequests()
            #expect(counts.done == 2001 && requests >= 2001 && requests <= counts.leases, "\(requests) requests, \(counts)")
            #expect(counts.leases - 2001 <= 16, "only the killed worker's steps in flight were leased again: \(counts)")
            #expect(try store.verify(resume.id).intact)
        }

        /// The simulator's counters for `model`: requests and the most in flight at once.
        private func simStats(_ project: CLIProject, _ model: String) throws -> (requests: Int, peak: Int) {
            let stats = try JSONValue(
                parsing: try httpRequest(port: project.port, "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
            return (stats["models"]?[model]?["requests"]?.intValue ?? -1, stats["models"]?[model]?["peak_in_flight"]?.intValue ?? -1)
        }

        /// A shared run's budget of 100 calls, spent by the executors of three workers at
        /// once: exactly 100 calls reach the provider, then the run stops, refused.
        @Test func aSharedRunsBudgetHoldsAcrossWorkers() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "300"], subtasks: 300, maxParallel: 300)
            defer { project.stop() }
            try project.editJSON("workflows/fan.json") { $0["budget"] = ["calls": 100] }
            let url = try newPostgresDatabase()
            let id = try #require(try submit(project, url, 1).first)
            // Eight calls at a time per worker: alone, the first would take 4 s to spend it all.
            let workers = try (0..<3).map { _ in
                try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-parallel", "8"])
            }
            let results = workers.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
            let store = try PostgresTraceStore(url: url, readOnly: true)
            let run = try #require(try store.run(matching: id))
            #expect(run.status == .failed && run.error?.contains("budget exhausted: 100 of 100 calls made") == true, "\(run.error ?? "")")
            let requests = try project.simRequests()
            #expect(requests == 100, "\(requests) calls for a budget of 100")
            let done = try #require(store.location.openCoordination()?.stepQueue()).doneBy(runKey: id)
            let workersThatCalled = Set(done.keys.map { $0.components(separatedBy: "/").first ?? $0 }).count
            #expect(workersThatCalled >= 2, "the budget was spent from more than one worker: \(done)")
        }

        /// A model's 30 requests per minute, across three workers each running steps of one
        /// shared run: in the first minute the provider sees 30 (90 if each counted alone).
        @Test func aModelsRequestsPerMinuteHoldAcrossWorkers() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "300"], subtasks: 100, maxParallel: 100)
            defer { project.stop() }
            try project.editEntry("chorus.json", "models", "small") { $0["requests_per_minute"] = 30 }
            let url = try newPostgresDatabase()
            try trackFunctionCalls(url)
            let id = try #require(try submit(project, url, 1).first)
            // Four calls at a time per worker: the first worker alone takes over 2 s to make 30.
            let workers = try (0..<3).map { _ in try RunningChorus(["worker", "--db", url, "--max-parallel", "4"]) }
            // Not a pause to see whether an excess shows: the workers are seen to ask the
            // database's window for more than 30 (each call is a take; 30 are admitted) and to
            // be told to wait, and only 30 requests reach the provider.
            var (seen, takes) = (0, 0)
            for _ in 0..<600 where seen < 30 || takes < 30 + 3 * 4 {
                usleep(50_000)
                seen = (try? simStats(project, "sim-small").requests) ?? 0
                takes = (try? functionCalls(url, "chorus_rate_take")) ?? 0
            }
            #expect(takes >= 30 + 3 * 4, "the workers asked the shared window \(takes) times")
            let requests = try simStats(project, "sim-small").requests
            let done = try #require(TraceLocation.postgres(url: url).openCoordination()?.stepQueue()).doneBy(runKey: id)
            for worker in workers { kill(worker.process.processIdentifier, SIGTERM) }
            let results = workers.map { $0.finish() }
            #expect(requests == 30, "\(requests) requests in the first minute for a limit of 30: \(results.map(\.stderr))")
            #expect(Set(done.keys.map { $0.components(separatedBy: "/").first ?? $0 }).count >= 2, "steps ran on several workers: \(done)")
        }

        /// A worker helping a shared run is stopped with SIGTERM: its executor hands the steps
        /// it held back at once, so the run finishes long before their 10-minute leases would
        /// lapse, with every step done once.
        @Test func aStoppedWorkerHandsItsStepsBack() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "200"], subtasks: 600, maxParallel: 600)
            defer { project.stop() }
            let url = try newPostgresDatabase()
            let id = try #require(try submit(project, url, 1).first)
            let table = try #require(TraceLocation.postgres(url: url).openCoordination()?.stepQueue())
            let arguments = ["worker", "--db", url, "--lease-seconds", "600", "--max-parallel", "16"]
            let first = try RunningChorus(arguments + ["--exit-when-idle"])
            var started = false
            for _ in 0..<600 where !started {
                usleep(20_000)
                started = ((try? table.stepCounts(runKey: id).done) ?? 0) >= 20
            }
            let second = try RunningChorus(arguments)
            var helping = false
            for _ in 0..<1000 where !helping {
                usleep(20_000)
                let done = (try? table.doneBy(runKey: id)) ?? [:]
                helping = Set(done.keys.map { $0.components(separatedBy: "/").first ?? $0 }).count >= 2
            }
            #expect(started && helping, "the second worker never ran a step")
            kill(second.process.processIdentifier, SIGTERM)
            let stopped = second.finish()
            #expect(stopped.stderr.contains("handed back"), "\(stopped.stderr)")
            // Bounded: steps left to their leases would hold the run for 10 minutes.
            var finished = false
            for _ in 0..<1500 where !finished {
                usleep(40_000)
                finished = (try? PostgresTraceStore(url: url, readOnly: true).run(matching: id)?.status) == .succeeded
            }
            if !finished { kill(first.process.processIdentifier, SIGKILL) }
            _ = first.finish()
            #expect(finished, "the run did not finish within a minute: the stopped worker's steps were not handed back: \(stopped.stderr)")
            let counts = try table.stepCounts(runKey: id)
            let requests = try project.simRequests()
            #expect(counts.done == 601 && counts.leases >= 601, "\(counts)")
            #expect(stopped.stderr.contains("steps run here"), "the helper stopped cleanly and said so: \(stopped.stderr)")
            #expect(requests >= 601 && requests <= counts.leases, "\(requests) requests, \(counts)")
        }

        /// Shared runs need PostgreSQL: `--share-steps` on SQLite says so and runs every step
        /// in the process; `chorus steps` on SQLite or for a key with no run exits with a line.
        @Test func sharingOutsidePostgresIsRefusedWithALine() throws {
            let project = try CLIProject(subtasks: 5)
            defer { project.stop() }
            let db = project.directory.appendingPathComponent("trace.db").path
            let run = try runChorus([
                "run", project.directory.appendingPathComponent("workflows/fan.json").path,
                "--config", project.directory.appendingPathComponent("chorus.json").path,
                "--db", db, "--input", "question=q", "--share-steps", "k1",
            ])
            #expect(run.status == 0 && run.stderr.contains("--share-steps needs a PostgreSQL trace database; every step runs here"), "\(run.stderr)")
            let steps = try runChorus(["steps", "k1", "--db", db])
            #expect(steps.status == 2 && steps.stderr.contains("shared runs need a PostgreSQL trace database"), "\(steps.stderr)")
            let url = try newPostgresDatabase()
            let missing = try runChorus(["steps", "nope", "--db", url])
            #expect(missing.status == 1 && missing.stderr.contains("no shared run 'nope'"), "\(missing.stderr)")
        }

        /// A model's `max_concurrency` of 8 holds across three workers: three runs, one per
        /// worker (each alone would keep 8 in flight: 24 together), then one shared run whose
        /// steps all three run. The simulator's peak says so.
        @Test func aModelsConcurrencyLimitHoldsAcrossWorkers() throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "100"], subtasks: 60, maxParallel: 20)
            defer { project.stop() }
            try project.editEntry("chorus.json", "models", "small") { $0["max_concurrency"] = 8 }
            let url = try newPostgresDatabase()
            _ = try submit(project, url, 3)
            let workers = try (0..<3).map { _ in
                try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-runs", "1", "--no-share-steps"])
            }
            let results = workers.map { $0.finish() }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results)")
            let (requests, peak) = try simStats(project, "sim-small")
            #expect(peak > 0 && peak <= 8, "peak \(peak) calls in flight across the workers")
            #expect(requests == 3 * 60)
            // One run of 300 subtasks, its steps run by three workers' executors.
            try project.resetStats()
            try project.editEntry("chorus.json", "models", "planner") { $0["model"] = "planner-300" }
            try project.editEntry("workflows/fan.json", "nodes", "work") { $0["max_parallel"] = 300 }
            let id = try #require(try submit(project, url, 1).first)
            // An executor leases up to its --max-parallel (steps it holds wait in its limiter):
            // eight each, so the other workers find steps to run.
            let sharing = try (0..<3).map { _ in try RunningChorus(["worker", "--db", url, "--exit-when-idle", "--max-parallel", "8"]) }
            let shared = sharing.map { $0.finish() }
            #expect(shared.allSatisfy { $0.status == 0 }, "\(shared.map(\.stderr))")
            let after = try simStats(project, "sim-small")
            #expect(after.peak > 0 && after.peak <= 8 && after.requests == 300, "peak \(after.peak), \(after.requests) requests")
            let done = try #require(TraceLocation.postgres(url: url).openCoordination()?.stepQueue()).doneBy(runKey: id)
            #expect(Set(done.keys.map { $0.components(separatedBy: "/").first ?? $0 }).count >= 2, "steps ran on several workers: \(done)")
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
            // The child dies with its worker (it watches CHORUS_PARENT_PID): waited for, not slept on.
            var orphans = processes(mentioning: url)
            for _ in 0..<1000 where !orphans.isEmpty {
                usleep(10_000)
                orphans = processes(mentioning: url)
            }
            #expect(orphans.isEmpty, "the worker's child outlived it: \(orphans)")
            try project.resetStats()
            // Steps are finished once done in the step table (the trace copy follows): counted
            // now, with no process left that could finish one.
            let doneAtKill = try #require(store.location.openCoordination()?.stepQueue()).stepCounts(runKey: id).done
            let second = try RunningChorus(["worker", "--db", url, "--lease-seconds", "2", "--exit-when-idle"])
            let (status, stderr) = second.finish()
            #expect(status == 0 && stderr.contains("taking over \(id)"), "\(stderr)")
            let resume = try #require(try store.runs(parent: id).first { $0.relation == .resume })
            #expect(resume.status == .succeeded)
            #expect(try store.run(matching: id)?.status == .interrupted, "the killed worker's run stopped with it")
            let committed = try store.steps(ofRun: id).filter { $0.status == .succeeded && !$0.isNodeResult }.count
            let requests = try project.simRequests()
            #expect(committed <= doneAtKill && doneAtKill > 0)
            #expect(requests == 201 - doneAtKill, "only the steps not finished ran again: \(requests) requests, \(doneAtKill) done; \(stderr)")
            #expect(try store.verify(resume.id).intact)
            let listed = try runChorus(["queue", "--db", url, "--json"])
            let row = try #require(try JSONValue(parsing: listed.stdout).arrayValue?.first)
            #expect(row["attempts"] == 2 && row["runs"]?.arrayValue?.count == 2 && row["status"] == "succeeded", "\(listed.stdout)")
        }
    }
}
