import ChorusCoordination
import ChorusTrace
import Testing
import TestSupport

/// The run queue on a real PostgreSQL server.
@Suite(.enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
struct RunQueueTests {
    /// A worker taking over a run whose lease lapsed marks it interrupted as the trace marks
    /// an abandoned run: sealed by a `run_interrupted` event, so the chain still verifies.
    @Test func aRunWhoseLeaseLapsedIsMarkedInterruptedInItsChain() throws {
        let url = try newPostgresDatabase()
        let store = try PostgresTraceStore(url: url)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1)))
        writer.append(.event(runID: "r", kind: "run_started", stepPath: nil, detailJSON: "{}", at: 1))
        writer.close()
        let queue = try coordination(url).runQueue()
        try queue.markInterrupted(runID: "r")
        try queue.markInterrupted(runID: "r")
        #expect(try queue.runStatus("r") == "interrupted")
        let events = try store.events(ofRun: "r")
        #expect(events.map(\.kind) == ["run_started", "run_interrupted"] && events.last?.detailJSON == #"{"reason":"worker lease lapsed"}"#)
        let report = try store.verify("r")
        #expect(report.intact && report.unsealedRows == 0, "\(report)")
    }
}
