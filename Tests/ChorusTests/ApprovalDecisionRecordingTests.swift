import Chorus
import ChorusJSON
@testable import ChorusTrace
import Foundation
import GRDB
import Testing

/// A person's decision, recorded by the library on a run paused for approval: in the run's
/// audit chain, in the form `chorus approve` has always stored, and only on an intact
/// record of a run that waits for the node.
@Suite struct ApprovalDecisionRecordingTests {
    private let path = FileManager.default.temporaryDirectory.appendingPathComponent("approval-\(UUID().uuidString)/chorus.db").path

    /// A run paused at `answer`, as the scheduler leaves it.
    private func pausedRun() throws -> TraceStore {
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        var run = RunRecord(id: "p", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1, ownerPID: nil)
        writer.append(.run(run))
        writer.append(.event(runID: "p", .runStarted, stepPath: nil, detailJSON: "{}", at: 1))
        writer.append(.event(runID: "p", .approvalRequested, stepPath: "answer", detailJSON: #"{"node":"answer","rule":"always"}"#, at: 2))
        run.status = .awaitingApproval
        run.endedAt = 3
        writer.append(.run(run))
        writer.append(.event(runID: "p", .runAwaitingApproval, stepPath: nil, detailJSON: nil, at: 3))
        writer.close()
        return store
    }

    @Test func aDecisionIsAnEventInTheRunsAuditChain() throws {
        let store = try pausedRun()
        let decision = ApprovalDecision(node: "answer", approved: true, by: "alice", note: "looks fine")
        try decision.record(onRun: "p", store: store, at: 10)
        let event = try #require(try store.events(ofRun: "p").last)
        #expect(event.isKind(.approvalDecided) && event.stepPath == nil && event.at == 10 && event.seq == 4)
        #expect(
            event.detailJSON == #"{"by":"alice","decision":"approved","node":"answer","note":"looks fine"}"#,
            "the form chorus approve has always stored")
        #expect(ApprovalDecision.decisions(in: try store.events(ofRun: "p")) == ["answer": decision])
        #expect(ApprovalDecision.pending(in: try store.events(ofRun: "p")).isEmpty)
        #expect(try store.verify("p").intact, "the decision is sealed into the chain")
    }

    @Test func aNodeTheRunDoesNotWaitForIsRefusedAndNothingIsWritten() throws {
        let store = try pausedRun()
        let error = #expect(throws: ApprovalDecisionError.self) {
            try ApprovalDecision(node: "nope", approved: false, by: "bob", note: nil).record(onRun: "p", store: store)
        }
        #expect(error?.description == "run p does not wait for node 'nope' (it waits for: answer)")
        #expect(try store.events(ofRun: "p").count == 3)
    }

    @Test func aBrokenRecordIsRefusedUnlessForcedAndThenTheBreakIsRecorded() throws {
        let store = try pausedRun()
        try store.pool.write { db in try db.execute(sql: "UPDATE event SET detailJSON = '{\"node\":\"answer\",\"rule\":\"never\"}' WHERE seq = 2") }
        let decision = ApprovalDecision(node: "answer", approved: true, by: "alice", note: nil)
        #expect(throws: UnverifiedRecord.self) { try decision.record(onRun: "p", store: store) }
        #expect(try store.events(ofRun: "p").count == 3)
        try decision.record(onRun: "p", store: store, forceUnverified: true)
        let detail = try #require(try store.events(ofRun: "p").last?.detailJSON.map { try JSONValue(parsing: Array($0.utf8)) })
        #expect(detail["unverified_source"]?.stringValue?.hasPrefix("run p: event 2") == true, "\(detail)")
    }
}
