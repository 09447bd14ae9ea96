@testable import ChorusTrace
import ChorusJSON
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite struct TraceStoreTests {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString)/chorus.db").path

    @Test func reopeningAppliesNoMigrationTwiceAndKeepsData() throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r1", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.close()
        let reopened = try TraceStore(path: path)
        #expect(try reopened.runs().map(\.id) == ["r1"])
        #expect(try reopened.integrityCheck() == "ok")
    }

    @Test func aNewTraceIsReadableByItsOwnerOnly() throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r1", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.close()
        func mode(_ file: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int) & 0o777
        }
        #expect(try mode(URL(fileURLWithPath: path).deletingLastPathComponent().path) == 0o700)
        #expect(try mode(path) == 0o600)
        #expect(try mode(path + "-wal") == 0o600, "SQLite gives the WAL the database's mode")
    }

    @Test func identicalBodiesAreStoredOnce() async throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        let body = Array(String(repeating: "You are a careful researcher. ", count: 100).utf8)
        let hash = TraceStore.hash(body)
        for attempt in 1...50 {
            writer.append(
                .modelCall(
                    ModelCallRecord(
                        runID: "r", stepPath: "s/\(attempt)", attempt: 1, model: "m", providerModel: "m",
                        url: "http://x/v1/chat/completions", requestHash: hash, responseHash: nil,
                        httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0, latencyMs: 1,
                        startedAt: Double(attempt)), request: body, response: nil))
        }
        await writer.flush()
        let counts = try store.counts()
        #expect(counts["modelCall"] == 50)
        #expect(counts["blob"] == 1)
        #expect(try store.blob(hash) == body)
        writer.close()
    }

    @Test func aLongSystemPromptRepeatedInDistinctRequestsIsStoredOnce() async throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        let system = String(repeating: "You are a careful researcher; cite every source you use. ", count: 70)  // about 4 KB
        var bodies: [[UInt8]] = []
        for i in 0..<200 {
            let body = JSONValue.object([
                "model": "m", "temperature": 0.3,
                "messages": [
                    ["role": "system", "content": .string(system)], ["role": "user", "content": .string("Subtask \(i)")],
                ],
            ]).serialized()
            bodies.append(body)
            writer.append(
                .modelCall(
                    ModelCallRecord(
                        runID: "r", stepPath: "s/\(i)", attempt: 1, model: "m", providerModel: "m",
                        url: "http://x/v1/chat/completions", requestHash: "", responseHash: nil,
                        httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0, latencyMs: 1,
                        startedAt: Double(i)), request: body, response: nil))
        }
        var finished = RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)
        finished.status = .succeeded
        writer.append(.run(finished))
        writer.append(.event(runID: "r", kind: "done", stepPath: nil, detailJSON: nil, at: 2))
        await writer.flush()
        writer.close()
        #expect(try store.counts()["blob"] == 201, "200 skeletons and one part")
        let stored = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT SUM(LENGTH(bytes)) FROM blob") ?? 0 }
        #expect(stored < system.utf8.count + 200 * 200, "the prompt is stored once: \(stored) bytes")
        for body in bodies.prefix(5) { #expect(try store.blob(TraceStore.hash(body)) == body, "read back byte for byte") }
        #expect(try store.verify("r").intact)
        #expect(try store.search("careful researcher").count == 20, "searchable through every body that carries it")
        _ = try store.prune(olderThan: nil, keep: 0)
        #expect(try store.counts()["blob"] == 0, "the part goes with the last body that used it")
    }

    /// A database edited so that a body's part is a skeleton naming itself: reading it stops
    /// at the depth bound and calls the part missing; no read recurses without end.
    @Test func aForgedPartThatNamesItselfReadsAsMissingNotAsEndlessRecursion() async throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        let body = JSONValue.object(["messages": [["role": "system", "content": .string(String(repeating: "Cite every source. ", count: 40))]]])
            .serialized()
        writer.append(
            .modelCall(
                ModelCallRecord(
                    runID: "r", stepPath: "s", attempt: 1, model: "m", providerModel: "m", url: "http://x/v1/chat/completions",
                    requestHash: "", responseHash: nil, httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0, latencyMs: 1,
                    startedAt: 1), request: body, response: nil))
        await writer.flush()
        writer.close()
        let part = try #require(try await store.pool.read { db in try String.fetchOne(db, sql: "SELECT part FROM blobPart") })
        try await store.pool.write { db in
            let loop = JSONValue.object(["$chorus_part": .string(part)]).serialized()
            try db.execute(sql: "UPDATE blob SET kind = 1, bytes = ? WHERE hash = ?", arguments: [Data(loop), part])
        }
        #expect(try store.blob(TraceStore.hash(body)) == nil)
        let report = try store.verify("r")
        #expect(!report.intact && (report.problem ?? "").contains("missing"), "\(report.problem ?? "")")
    }

    @Test func aStepInFlightIsRecordedAndItsFinalRowReplacesIt() async throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        var step = StepRecord(runID: "r", path: "n/0", node: "n", kind: "item", itemIndex: 0, agent: "a", startedAt: 1)
        writer.append(.step(step))
        await writer.flush()
        // Committed alone, the running row is there: a crash now shows what was in flight.
        #expect(try store.steps(ofRun: "r").map(\.status) == [.running])
        step.status = .succeeded
        step.outputJSON = #""done""#
        step.endedAt = 2
        writer.append(.step(step))
        writer.append(.event(runID: "r", kind: "step_succeeded", stepPath: step.path, detailJSON: nil, at: 2))
        // Started and finished in one batch: only the final row is written, never a running one after it.
        var quick = StepRecord(runID: "r", path: "n/1", node: "n", kind: "item", itemIndex: 1, agent: "a", startedAt: 3)
        writer.append(.step(quick))
        quick.status = .failed
        quick.error = "HTTP 500"
        writer.append(.step(quick))
        writer.append(.event(runID: "r", kind: "step_failed", stepPath: quick.path, detailJSON: nil, at: 4))
        writer.close()
        let steps = try store.steps(ofRun: "r").sorted { $0.path < $1.path }
        #expect(steps.map(\.status) == [.succeeded, .failed])
        #expect(steps[0].outputJSON == #""done""# && steps[1].error == "HTTP 500")
        #expect(try store.verify("r").intact)
    }

    @Test func onlyBodiesWithALongStringAreSplitIntoParts() {
        let long = String(repeating: "x", count: BodyParts.threshold)
        let escaped = String(repeating: #"a\"b"#, count: BodyParts.threshold / 4)
        #expect(BodyParts.mayHaveParts(Array(#"{"system":"\#(long)"}"#.utf8)))
        #expect(BodyParts.mayHaveParts(Array(#"{"s":"\#(escaped)","t":1}"#.utf8)))
        // Long in total, but every string short.
        let many = (0..<100).map { #""k\#($0)":"value \#($0)""# }.joined(separator: ",")
        #expect(!BodyParts.mayHaveParts(Array("{\(many)}".utf8)))
        #expect(BodyParts.split(Array("{\(many)}".utf8)) == nil)
        // Escapes make a literal longer than its text: the scan may say yes where split finds nothing, never the reverse.
        let nearly = String(repeating: #"\n"#, count: BodyParts.threshold / 2 + 10)
        #expect(BodyParts.mayHaveParts(Array(#"{"s":"\#(nearly)"}"#.utf8)))
        #expect(BodyParts.split(Array(#"{"s":"\#(nearly)"}"#.utf8)) == nil)
    }

    @Test func flushReturnsOnlyOnceChangesAreReadable() async throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        for i in 0..<2000 {
            writer.append(.event(runID: "r", kind: "tick", stepPath: "s/\(i)", detailJSON: nil, at: Double(i)))
        }
        await writer.flush()
        let events = try store.events(ofRun: "r")
        #expect(events.count == 2000)
        #expect(events.map(\.seq) == Array(1...2000), "events keep their order")
        writer.close()
    }

    @Test func aChangeNobodyFlushesIsCommittedSoonAnyway() async throws {
        // Another process watching the trace (`runs watch`) sees a step start without
        // waiting for the step to finish: the writer commits after its short delay.
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.append(.step(StepRecord(runID: "r", path: "n", node: "n", kind: "agent", agent: "a", startedAt: 1)))
        let reader = try TraceStore(path: path)
        let deadline = ContinuousClock.now + .seconds(10)
        while try reader.steps(ofRun: "r").isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(try reader.steps(ofRun: "r").map(\.status) == [.running])
        writer.close()
    }

    @Test func aStepsRecordsAppendedBeforeItsFlushShareOneTransaction() async throws {
        // Started, its call's event and finished, then the flush that a finished step waits
        // on: one batch, so the flush waits for one commit, not one per record.
        let batches = Mutex<[Int]>([])
        let store = try TraceStore(path: path)
        // A delay no test outlives: only the flushes commit, whatever the machine's load.
        let writer = TraceWriter(store: store, commitDelay: 3600) { batch in batches.withLock { $0.append(batch.count) } }
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        await writer.flush()
        var step = StepRecord(runID: "r", path: "n", node: "n", kind: "agent", agent: "a", startedAt: 1)
        writer.append(.step(step))
        writer.append(.event(runID: "r", kind: "step_started", stepPath: "n", detailJSON: nil, at: 1))
        step.status = .succeeded
        step.endedAt = 2
        writer.append(.step(step))
        await writer.flush()
        writer.close()
        #expect(batches.withLock { $0 } == [1, 3])
    }

    @Test func aRunLeftRunningIsMarkedInterrupted() throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "dead", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1, ownerPID: deadPID())))
        writer.append(.run(RunRecord(id: "alive", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 2)))
        writer.close()
        #expect(try store.markAbandonedRuns(except: ["alive"]) == 1)
        #expect(try store.run(matching: "dead")?.status == .interrupted)
        #expect(try store.run(matching: "alive")?.status == .running)
    }

    @Test func aRunWhoseProcessIsAliveIsNotMarked() throws {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "mine", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.append(.run(RunRecord(id: "gone", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 2, ownerPID: deadPID())))
        writer.close()
        #expect(try store.markAbandonedRuns() == 1, "another live chorus process's run must not be touched")
        #expect(try store.run(matching: "mine")?.status == .running)
        #expect(try store.run(matching: "gone")?.status == .interrupted)
    }

    @Test func manyOpenersOfANewDatabaseAllSucceed() {
        // Several chorus processes (say a run and a poller) may open and migrate a new
        // file at the same moment; each opener here has its own connections, as they would.
        let errors = Mutex<[String]>([])
        let path = self.path
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do { _ = try TraceStore(path: path) } catch { errors.withLock { $0.append("\(error)") } }
        }
        #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
    }

    @Test func anUnwritablePathIsAClearError() {
        #expect(throws: TraceStoreError.self) { try TraceStore(path: "/proc/chorus/cannot.db") }
    }
}

/// The pid of a process that has already exited.
func deadPID() -> Int32 {
    guard let pid = try? spawnChild("/bin/true", []) else { return Int32.max }
    _ = waitForExit(pid)
    return pid
}
