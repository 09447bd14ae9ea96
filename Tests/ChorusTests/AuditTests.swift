import Chorus
import ChorusJSON
@testable import ChorusTrace
import Foundation
import GRDB
import Testing

/// The trace as an audit log: `verify` finds edited, deleted and reordered rows; `prune`
/// leaves no orphan bodies and a sound file; `search` finds prompts and responses.
@Suite struct AuditTests {
    private func fanOut(_ h: RunHarness, subtasks: Int = 12) throws -> String {
        try h.writeConfig(["planner": ["model": .string("planner-\(subtasks)")], "small": ["model": "sim-small"]])
        try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent(
            "worker", model: "small", prompt: "{{inputs.question}} / {{item}}",
            extra: ["system": "You are a careful researcher who cites sources."])
        try h.agent("synth", model: "small", prompt: "{{#findings}}- {{.}}\n{{/findings}}")
        return try h.workflow(
            "fan",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"],
                "answer": ["kind": "reconcile", "from": "work", "strategy": "agent", "agent": "synth"],
            ], output: "answer")
    }

    private func tamper(_ store: TraceStore, _ sql: String, _ arguments: StatementArguments = []) throws {
        try store.pool.write { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: sql, arguments: arguments)
        }
    }

    @Test func anUntouchedRunVerifiesAndEveryKindOfTamperingIsFound() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h)
        var runs: [String] = []
        for _ in 0..<6 {
            let (summary, _) = try await h.run(workflow)
            #expect(summary.status == .succeeded, "\(summary.error ?? "")")
            runs.append(summary.runID)
        }
        let store = try TraceStore(path: h.dbPath)
        let intact = try store.verify(runs[0])
        #expect(intact.intact, "\(intact.problem ?? "")")
        #expect(intact.events > 20 && intact.sealedRows >= 2 * 14 + 1 && intact.blobs > 0)

        // An edited step output.
        try tamper(store, "UPDATE step SET outputJSON = '\"forged\"' WHERE runID = ? AND path = 'work/3'", [runs[1]])
        let edited = try store.verify(runs[1])
        #expect(edited.problem?.contains("step_succeeded work/3") == true, "\(edited.problem ?? "intact")")
        #expect(edited.problem?.contains("changed or deleted") == true)

        // A deleted model call: found at the event that sealed it (the next event of the run
        // after the call was written, which may belong to a concurrent step).
        try tamper(store, "DELETE FROM modelCall WHERE runID = ? AND stepPath = 'work/5'", [runs[2]])
        #expect(try store.verify(runs[2]).problem?.contains("the rows it seals were changed or deleted") == true)

        // A deleted event.
        try tamper(store, "DELETE FROM event WHERE runID = ? AND seq = 7", [runs[3]])
        #expect(try store.verify(runs[3]).problem == "event 7 is missing: the log goes from event 6 to event 8")

        // Two events swapped.
        try tamper(store, "UPDATE event SET seq = -1 WHERE runID = ? AND seq = 9", [runs[4]])
        try tamper(store, "UPDATE event SET seq = 9 WHERE runID = ? AND seq = 10", [runs[4]])
        try tamper(store, "UPDATE event SET seq = 10 WHERE runID = ? AND seq = -1", [runs[4]])
        let swapped = try store.verify(runs[4])
        #expect(swapped.problem?.hasPrefix("event 9 ") == true, "\(swapped.problem ?? "intact")")

        // A response body rewritten in place (same key, other bytes).
        let hash = try #require(try store.modelCalls(ofRun: runs[5]).last?.responseHash)
        try tamper(store, "UPDATE blob SET bytes = ? WHERE hash = ?", [Data("{}".utf8), hash])
        #expect(try store.verify(runs[5]).problem?.contains("was changed") == true)

        // The run's final row (its output) edited.
        try tamper(store, "UPDATE run SET outputJSON = '[]' WHERE id = ?", [runs[0]])
        #expect(try store.verify(runs[0]).problem?.contains("run_succeeded") == true)
        await h.shutdown()
    }

    /// Each call's typed outcome (schema v6) is sealed like the rest of its row; a row
    /// written before v6 (no outcome) still verifies, and its outcome is derived.
    @Test func eachCallsOutcomeIsSealedAndRowsFromBeforeItStillVerify() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h, subtasks: 3)
        let (summary, _) = try await h.run(workflow)
        let store = try TraceStore(path: h.dbPath)
        let calls = try store.modelCalls(ofRun: summary.runID)
        #expect(!calls.isEmpty && calls.allSatisfy { $0.outcome == .answered })
        try tamper(store, "UPDATE modelCall SET outcome = 'failed' WHERE runID = ? AND stepPath = 'work/1'", [summary.runID])
        #expect(try store.verify(summary.runID).problem?.contains("changed or deleted") == true)

        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "v5-run", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.append(
            .modelCall(
                ModelCallRecord(
                    runID: "v5-run", stepPath: "a", attempt: 1, model: "m", providerModel: "m",
                    url: "http://x", requestHash: "", responseHash: nil, httpStatus: nil,
                    error: "cancelled", tokensIn: 0, tokensOut: 0, cost: 0, latencyMs: 1, startedAt: 1),
                request: Array("{}".utf8), response: nil))
        writer.append(.event(runID: "v5-run", kind: "step_failed", stepPath: "a", detailJSON: nil, at: 2))
        writer.close()
        let old = try #require(try store.modelCalls(ofRun: "v5-run").first)
        #expect(old.outcome == nil && old.callOutcome == .cancelled)
        #expect(try store.verify("v5-run").intact)
        await h.shutdown()
    }

    @Test func pruneRemovesOldRunsAndTheirBodiesOnlyAndLeavesASoundFile() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h)
        var runs: [String] = []
        for question in ["alpha", "beta", "gamma"] {
            let (summary, _) = try await h.run(workflow, inputs: ["question": .string(question)])
            runs.append(summary.runID)
        }
        let store = try TraceStore(path: h.dbPath)
        let blobsBefore = try store.counts()["blob"] ?? 0
        let report = try store.prune(olderThan: nil, keep: 1)
        #expect(Set(report.runsRemoved) == Set(runs.prefix(2)))
        #expect(report.blobsRemoved > 0 && report.blobsRemoved < blobsBefore)
        #expect(try store.orphanBlobCount() == 0)
        #expect(try store.integrityCheck() == "ok")
        #expect(try store.runs().map(\.id) == [runs[2]])
        #expect(try store.verify(runs[2]).intact, "the kept run's bodies are all still there")
        let old = try store.prune(olderThan: 0, keep: nil, now: Date().timeIntervalSince1970 + 10)
        #expect(old.runsRemoved == [runs[2]])
        #expect(try store.counts()["blob"] == 0)
        await h.shutdown()
    }

    @Test func searchFindsPromptsAndResponsesWithTheirStep() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h, subtasks: 4)
        let (summary, _) = try await h.run(workflow, inputs: ["question": "Why do zeppelins float?"])
        let store = try TraceStore(path: h.dbPath)
        let hits = try store.search("zeppelins")
        #expect(hits.contains { $0.runID == summary.runID && $0.stepPath == "plan" && $0.role == "prompt" && $0.snippet.contains("[zeppelins]") })
        #expect(hits.contains { $0.stepPath.hasPrefix("work/") && $0.role == "prompt" })
        // Words only in the shared system prompt, stored once, still find every call that sent it.
        let system = try store.search("cites sources", limit: 100)
        #expect(Set(system.map(\.stepPath)) == Set((0..<4).map { "work/\($0)" }))
        #expect(try store.search("\"unbalanced", raw: false).isEmpty)
        #expect(throws: (any Error).self) { try store.search("AND OR (", raw: true) }
        await h.shutdown()
    }

    @Test func aResumeLockIsHeldByOneLiveProcessAndTakenOverFromADeadOne() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID().uuidString).db").path
        let store = try TraceStore(path: path)
        try store.lockRun("r")
        #expect(throws: RunLockHeld.self) { try store.lockRun("r", pid: getppid()) }
        try store.unlockRun("r")
        try store.lockRun("r", pid: getppid())
        #expect(throws: RunLockHeld.self) { try store.lockRun("r") }
        // A pid no process has: its lock is stale and is taken over.
        try store.unlockRun("r", pid: getppid())
        try store.lockRun("r", pid: 0x3FFF_FFF0)
        try store.lockRun("r")
    }
}
