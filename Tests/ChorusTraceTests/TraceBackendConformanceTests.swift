import ChorusJSON
import ChorusTrace
import Foundation
import PostgresClient
import Synchronization
import Testing
import TestSupport

/// A trace database to run the conformance suite on: each case opens a fresh one.
struct BackendKind: CustomStringConvertible, Sendable {
    let description: String
    /// A new, empty database, and a second handle on the same database (as another process
    /// would open it).
    let open: @Sendable () throws -> (any TraceBackend, @Sendable () throws -> any TraceBackend)

    static let sqlite = BackendKind(description: "sqlite") {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("conformance-\(UUID().uuidString)/chorus.db").path
        return (try TraceStore(path: path), { try TraceStore(path: path) })
    }

    /// A new database on the PostgreSQL server scripts/test starts (CHORUS_TEST_POSTGRES_URL).
    static let postgres = BackendKind(description: "postgres") {
        let url = try newPostgresDatabase()
        return (try PostgresTraceStore(url: url), { try PostgresTraceStore(url: url) })
    }

    /// Every backend: SQLite always; PostgreSQL when scripts/test has started a server
    /// (CI always does). Without one, a run of the suite says so rather than passing quietly
    /// (`thePostgresHalfRan` is reported skipped).
    static let all: [BackendKind] = postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]

    /// Why the PostgreSQL half is skipped, as `swift test` prints it.
    static let postgresSkipped: Comment =
        "CHORUS_TEST_POSTGRES_URL is unset: the PostgreSQL half of the backend conformance suite is skipped (scripts/test starts a server)"
}

/// What every trace backend must do, whatever stores it: the scheduler, replay, resume,
/// eval and the `runs` commands rely on each of these.
@Suite struct TraceBackendConformanceTests {
    private func run(_ id: String, startedAt: Double = 1) -> RunRecord {
        RunRecord(id: id, workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: startedAt)
    }

    private func call(_ run: String, _ path: String, body: [UInt8]) -> TraceChange {
        .modelCall(
            ModelCallRecord(
                runID: run, stepPath: path, attempt: 1, model: "m", providerModel: "m", url: "http://x/v1/chat/completions",
                requestHash: "", responseHash: nil, httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0,
                latencyMs: 1, startedAt: 1), request: body, response: Array("{\"ok\": true}".utf8))
    }

    /// A finished run of `steps` steps with a call each, sealed by its final events.
    private func finishedRun(_ id: String, steps: Int, body: [UInt8], startedAt: Double = 1, into writer: TraceWriter) {
        var record = run(id, startedAt: startedAt)
        writer.append(.run(record))
        writer.append(.event(runID: id, kind: "run_started", stepPath: nil, detailJSON: "{}", at: startedAt))
        for index in 0..<steps {
            var step = StepRecord(runID: id, path: "n/\(index)", node: "n", kind: "item", itemIndex: index, agent: "a", startedAt: startedAt)
            writer.append(.step(step))
            writer.append(call(id, step.path, body: body))
            step.status = .succeeded
            step.endedAt = startedAt + 1
            step.outputJSON = "\"ok\""
            writer.append(.step(step))
        }
        record.status = .succeeded
        record.endedAt = startedAt + 2
        writer.append(.run(record))
        writer.append(.event(runID: id, kind: "run_succeeded", stepPath: nil, detailJSON: nil, at: startedAt + 2))
    }

    /// Passes only when every case below ran on PostgreSQL too; without a server it is
    /// reported skipped, with the reason, where a quiet pass would hide half the suite.
    @Test(.enabled(if: postgresURL != nil, BackendKind.postgresSkipped)) func thePostgresHalfRan() {
        #expect(BackendKind.all.map(\.description) == ["sqlite", "postgres"])
    }

    @Test(arguments: BackendKind.all) func whatIsWrittenIsReadBackAndASecondOpenerSeesIt(_ kind: BackendKind) async throws {
        let (backend, reopen) = try kind.open()
        let writer = TraceWriter(store: backend)
        finishedRun("r1", steps: 3, body: Array("{\"model\": \"m\"}".utf8), into: writer)
        await writer.flush()
        let other = try reopen()
        #expect(try other.runs().map(\.id) == ["r1"])
        #expect(try other.run(matching: "r")?.status == .succeeded, "a unique prefix finds the run")
        #expect(try other.steps(ofRun: "r1").map(\.path) == ["n/0", "n/1", "n/2"])
        #expect(try other.modelCalls(ofRun: "r1").count == 3)
        #expect(try other.events(ofRun: "r1").map(\.kind) == ["run_started", "run_succeeded"])
        writer.close()
    }

    @Test(arguments: BackendKind.all) func bodiesAreStoredOncePerContent(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        let system = String(repeating: "You are a careful researcher; cite every source. ", count: 80)
        let shared = Array("{\"messages\": [{\"role\": \"system\", \"content\": \"\(system)\"}]}".utf8)
        finishedRun("a", steps: 20, body: shared, into: writer)
        await writer.flush()
        let calls = try backend.modelCalls(ofRun: "a")
        #expect(Set(calls.map(\.requestHash)).count == 1)
        #expect(try backend.blob(calls[0].requestHash) == shared, "a body kept as parts comes back whole")
        writer.close()
    }

    /// Search finds the calls whose prompt or answer holds the words, with a snippet, and
    /// nothing for words no body holds.
    @Test(arguments: BackendKind.all) func searchFindsTheCallsWhoseBodiesHoldTheWords(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        finishedRun("s", steps: 3, body: Array(#"{"messages": [{"role": "user", "content": "Compare the heron and the egret"}]}"#.utf8), into: writer)
        writer.close()
        let hits = try backend.search("heron egret", raw: false, limit: 50)
        #expect(Set(hits.map(\.stepPath)) == ["n/0", "n/1", "n/2"] && hits.allSatisfy { $0.runID == "s" && $0.role == "prompt" }, "\(hits)")
        #expect(hits.allSatisfy { $0.snippet.contains("heron") }, "\(hits)")
        #expect(try backend.search("pelican", raw: false, limit: 50).isEmpty)
    }

    @Test(arguments: BackendKind.all) func theAuditChainHoldsEveryFinishedRow(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        finishedRun("r", steps: 5, body: Array("{}".utf8), into: writer)
        writer.close()
        let report = try backend.verify("r")
        #expect(report.intact, "\(String(describing: report.problem))")
        #expect(report.sealedRows >= 11, "the run, 5 steps and 5 calls")
    }

    /// A run whose process died is marked interrupted the same way on every backend: a
    /// `run_interrupted` event seals its new state and the step the dead process finished
    /// after its last event, so the chain verifies with nothing left unsealed. A run whose
    /// process is alive is left alone, and a run is marked once.
    @Test(arguments: BackendKind.all) func aRunWhoseProcessDiedIsMarkedInterruptedAndSealed(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        writer.append(.run(RunRecord(id: "dead", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1, ownerPID: deadPID())))
        writer.append(.event(runID: "dead", kind: "run_started", stepPath: nil, detailJSON: "{}", at: 1))
        var step = StepRecord(runID: "dead", path: "n/0", node: "n", kind: "item", itemIndex: 0, agent: "a", startedAt: 1)
        step.status = .succeeded
        step.endedAt = 2
        writer.append(.step(step))
        writer.append(.run(run("alive", startedAt: 2)))
        writer.close()
        #expect(try backend.verify("dead").unsealedRows == 1, "the step waits for an event that never came")
        #expect(try backend.markAbandonedRuns() == 1)
        let dead = try #require(try backend.run(matching: "dead"))
        #expect(dead.status == .interrupted && dead.error == "the process running it stopped before it finished")
        let events = try backend.events(ofRun: "dead")
        #expect(events.map(\.kind) == ["run_started", "run_interrupted"] && events.last?.detailJSON == #"{"reason":"owner process gone"}"#)
        let report = try backend.verify("dead")
        #expect(report.intact && report.unsealedRows == 0 && report.sealedRows == 2, "\(report)")
        #expect(try backend.run(matching: "alive")?.status == .running)
        #expect(try backend.markAbandonedRuns() == 0, "marked once")
    }

    @Test(arguments: BackendKind.all) func twoWritersOnOneDatabaseLoseNothing(_ kind: BackendKind) async throws {
        let (backend, reopen) = try kind.open()
        let first = TraceWriter(store: backend)
        let second = TraceWriter(store: try reopen())
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                self.finishedRun("one", steps: 200, body: Array("{\"a\": 1}".utf8), into: first); await first.flush()
            }
            group.addTask {
                self.finishedRun("two", steps: 200, body: Array("{\"a\": 1}".utf8), into: second); await second.flush()
            }
        }
        first.close()
        second.close()
        #expect(first.failure == nil && second.failure == nil)
        #expect(try backend.steps(ofRun: "one").count == 200 && backend.steps(ofRun: "two").count == 200)
        #expect(try backend.verify("one").intact && backend.verify("two").intact)
    }

    @Test(arguments: BackendKind.all) func oneResumeOfARunHoldsItsLockAtATime(_ kind: BackendKind) throws {
        let (backend, reopen) = try kind.open()
        let writer = TraceWriter(store: backend)
        finishedRun("r", steps: 1, body: Array("{}".utf8), into: writer)
        writer.close()
        let other = try reopen()
        try backend.lockRun("r", pid: getpid())
        #expect(throws: (any Error).self) { try other.lockRun("r", pid: getpid() &+ 1) }
        try backend.unlockRun("r", pid: getpid())
        try other.lockRun("r", pid: getpid() &+ 1)
        try other.unlockRun("r", pid: getpid() &+ 1)
    }

    @Test(arguments: BackendKind.all) func pruningLeavesNoOrphanAndKeepsSharedBodies(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        let shared = Array("{\"shared\": true}".utf8)
        finishedRun("old", steps: 3, body: shared, startedAt: 1, into: writer)
        finishedRun("old-only", steps: 1, body: Array("{\"only\": \"old\"}".utf8), startedAt: 2, into: writer)
        finishedRun("new", steps: 3, body: shared, startedAt: 1_000_000, into: writer)
        writer.close()
        let report = try backend.prune(olderThan: 100, keep: nil, now: 1_000_100)
        #expect(report.runsRemoved.sorted() == ["old", "old-only"])
        #expect(try backend.runs().map(\.id) == ["new"])
        #expect(try backend.orphanBlobCount() == 0)
        let kept = try backend.modelCalls(ofRun: "new")
        #expect(try backend.blob(kept[0].requestHash) == shared, "a body another run uses stays")
    }

    /// A tool's output is stored whole; the next request quotes it, so the same text is a part
    /// of that request's skeleton: one row, found by either, kept while either is (issue 30:
    /// a git diff the model read made every repo-review run fail its audit).
    @Test(arguments: BackendKind.all) func aToolOutputTheNextRequestQuotesIsOneRowBothFindAndPruneKeeps(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        let output = Array(String(repeating: "diff --git a/README.md b/README.md\n+a line the tool returned\n", count: 40).utf8)
        let request = JSONValue.object(["messages": [["role": "tool", "content": .string(String(decoding: output, as: UTF8.self))]], "model": "m"])
            .serialized()
        // "tool-first" stores the output whole, then the request (its part is that row);
        // "request-first" the other way round. The older run of each pair is pruned below.
        for (id, startedAt, toolFirst) in [("tool-first", 1.0, true), ("request-first", 1_000_000.0, false)] {
            var record = run(id, startedAt: startedAt)
            writer.append(.run(record))
            var step = StepRecord(runID: id, path: "n/0", node: "n", kind: "item", itemIndex: 0, agent: "a", startedAt: startedAt)
            writer.append(.step(step))
            let tool = TraceChange.toolCall(
                ToolCallRecord(
                    runID: id, stepPath: step.path, attempt: 1, callIndex: 0, callID: "c", tool: "git_diff", kind: "mcp", isError: false,
                    exitStatus: nil, error: nil, latencyMs: 1, startedAt: startedAt), input: Array("{}".utf8), output: output)
            if toolFirst { writer.append(tool) }
            writer.append(call(id, step.path, body: request))
            if !toolFirst { writer.append(tool) }
            step.status = .succeeded
            step.endedAt = startedAt + 1
            writer.append(.step(step))
            record.status = .succeeded
            record.endedAt = startedAt + 2
            writer.append(.run(record))
            writer.append(.event(runID: id, kind: "run_succeeded", stepPath: nil, detailJSON: nil, at: startedAt + 2))
            await writer.flush()
        }
        writer.close()
        for id in ["tool-first", "request-first"] {
            let report = try backend.verify(id)
            #expect(report.intact, "\(id): \(report.problem ?? "")")
            #expect(try backend.blob(try backend.modelCalls(ofRun: id)[0].requestHash) == request, "\(id): the request, byte for byte")
            #expect(try backend.blob(try backend.toolCalls(ofRun: id)[0].outputHash) == output, "\(id): the tool's output")
        }
        // The run that stored the text first goes; the other still reads back whole.
        #expect(try backend.prune(olderThan: 100, keep: nil, now: 1_000_100).runsRemoved == ["tool-first"])
        #expect(try backend.verify("request-first").intact)
        #expect(try backend.blob(try backend.modelCalls(ofRun: "request-first")[0].requestHash) == request)
        #expect(try backend.blob(try backend.toolCalls(ofRun: "request-first")[0].outputHash) == output)
        #expect(try backend.orphanBlobCount() == 0)
        _ = try backend.prune(olderThan: nil, keep: 0)
        #expect(try backend.counts()["blob"] == 0, "nothing is left once no run uses the text")
    }

    /// A request quoting a whole earlier request (a tool that returned one): the earlier
    /// body's row, a skeleton, is a part of the later one. Both read back, and one prune
    /// removes all of it once neither run is kept.
    @Test(arguments: BackendKind.all) func aSkeletonThatIsAnotherBodysPartReadsBackAndOnePruneRemovesIt(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        let inner = JSONValue.object(["messages": [["role": "system", "content": .string(String(repeating: "Cite every source. ", count: 40))]]])
            .serialized()
        let outer = JSONValue.object(["messages": [["role": "tool", "content": .string(String(decoding: inner, as: UTF8.self))]]]).serialized()
        finishedRun("inner", steps: 1, body: inner, startedAt: 1, into: writer)
        finishedRun("outer", steps: 1, body: outer, startedAt: 2, into: writer)
        writer.close()
        #expect(try backend.blob(try backend.modelCalls(ofRun: "outer")[0].requestHash) == outer)
        #expect(try backend.blob(try backend.modelCalls(ofRun: "inner")[0].requestHash) == inner)
        #expect(try backend.verify("outer").intact && backend.verify("inner").intact)
        _ = try backend.prune(olderThan: nil, keep: 0)
        #expect(try backend.orphanBlobCount() == 0)
        #expect(try backend.counts()["blob"] == 0, "one prune removes the skeleton another skeleton used")
    }

    @Test(arguments: BackendKind.all) func evalsAndTheirResultsAreKept(_ kind: BackendKind) async throws {
        let (backend, _) = try kind.open()
        let writer = TraceWriter(store: backend)
        var eval = EvalRecord(
            id: "e1", workflow: "w", workflowPath: "w.json", casesPath: "c.jsonl", casesDigest: "d", configPath: nil,
            variantsJSON: "[]", optionsJSON: nil, startedAt: 1)
        writer.append(.eval(eval))
        for (index, variant) in ["as-configured", "all-large"].enumerated() {
            writer.append(
                .evalResult(
                    EvalResultRecord(
                        evalID: "e1", variant: variant, caseID: "c1", caseIndex: 0, runID: "r\(index)",
                        runStatus: "succeeded", passed: index == 1, score: Double(index), gradesJSON: "[]",
                        error: nil, cost: 0.5, tokensIn: 1, tokensOut: 2, calls: 1, latencyMs: 3,
                        modelSteps: 1, escalatedSteps: 0)))
        }
        eval.status = "finished"
        writer.append(.eval(eval))
        writer.close()
        #expect(try backend.eval(matching: "e")?.status == "finished")
        #expect(try backend.evalResults(of: "e1").map(\.variant) == ["as-configured", "all-large"])
    }
}

/// `--db` and `CHORUS_DB` name a database by path or URL.
struct TraceLocationTests {
    @Test func pathsAndURLsNameTheirBackend() throws {
        #expect(TraceLocation(".chorus/chorus.db") == .sqlite(path: ".chorus/chorus.db"))
        #expect(TraceLocation("sqlite:///var/lib/chorus.db") == .sqlite(path: "/var/lib/chorus.db"))
        #expect(TraceLocation("sqlite://traces/chorus.db") == .sqlite(path: "traces/chorus.db"))
        #expect(TraceLocation("postgres://chorus@db.internal/chorus") == .postgres(url: "postgres://chorus@db.internal/chorus"))
        #expect(TraceLocation("postgresql://a@b/c") == .postgres(url: "postgresql://a@b/c"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("location-\(UUID().uuidString)/chorus.db").path
        #expect(try TraceLocation("sqlite://" + path).open().path == path)
    }

    @Test func aPostgresURLWithAPasswordNeverShowsIt() {
        do {
            _ = try TraceLocation("postgres://chorus:hunter2-secret@127.0.0.1:1/chorus?connect_timeout=5").open()
            Issue.record("nothing listens on port 1")
        } catch {
            #expect(!error.description.contains("hunter2-secret"), "\(error)")
            #expect(error.description.contains("postgres://chorus:***@127.0.0.1:1/chorus") && error.description.contains("refused"), "\(error)")
        }
    }

    @Test(.enabled(if: postgresURL != nil, BackendKind.postgresSkipped)) func aPostgresDatabaseIsMigratedOnceByConcurrentFirstOpeners() throws {
        let url = try newPostgresDatabase()
        let errors = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do { _ = try PostgresTraceStore(url: url) } catch { errors.withLock { $0.append("\(error)") } }
        }
        #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
    }
}
