// Type-checked by scripts/doc-coverage as a module outside the Chorus package (no
// -package-name, so `package` declarations are out of sight): a trace store of an
// application's own must be possible with what is public. Not run; it keeps only what a
// run writes and answers the reads a run, a replay and `runs` need.
import Chorus
import ChorusTrace
import Foundation

final class MemoryTraceStore: TraceBackend, @unchecked Sendable {
    private let lock = NSLock()
    private var runRows: [String: RunRecord] = [:]
    private var stepRows: [String: [StepRecord]] = [:]
    private var eventRows: [String: [EventRecord]] = [:]

    var path: String { "memory" }
    var isReadOnly: Bool { false }
    var location: TraceLocation { .sqlite(path: ":memory:") }

    func makeWriteSession(staging: StagedSteps?) throws -> any TraceWriteSession {
        guard staging == nil else { throw CocoaError(.featureUnsupported) }
        return Session(store: self)
    }

    final class Session: TraceWriteSession {
        let store: MemoryTraceStore
        init(store: MemoryTraceStore) { self.store = store }
        func commit(_ batch: [TraceChange]) throws {
            store.lock.lock()
            defer { store.lock.unlock() }
            for change in batch {
                switch change {
                case .run(let run): store.runRows[run.id] = run
                case .step(let step): store.stepRows[step.runID, default: []].append(step)
                case .event(let runID, let kind, let stepPath, let detailJSON, let at):
                    let seq = (store.eventRows[runID]?.count ?? 0) + 1
                    store.eventRows[runID, default: []].append(
                        EventRecord(runID: runID, seq: seq, at: at, kind: kind, stepPath: stepPath, detailJSON: detailJSON))
                default: break
                }
            }
        }
    }

    private func read<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    func runs(limit: Int) throws -> [RunRecord] { read { Array(runRows.values.sorted { $0.startedAt > $1.startedAt }.prefix(limit)) } }
    func run(matching id: String) throws -> RunRecord? { read { runRows[id] ?? runRows.values.first { $0.id.hasPrefix(id) } } }
    func runs(parent id: String) throws -> [RunRecord] { [] }
    func steps(ofRun id: String) throws -> [StepRecord] { read { stepRows[id] ?? [] } }
    func modelCalls(ofRun id: String) throws -> [ModelCallRecord] { [] }
    func toolCalls(ofRun id: String) throws -> [ToolCallRecord] { [] }
    func events(ofRun id: String) throws -> [EventRecord] { read { eventRows[id] ?? [] } }
    func blob(_ hash: String) throws -> [UInt8]? { nil }
    func blobs(_ hashes: Set<String>) throws -> [String: [UInt8]] { [:] }
    func counts() throws -> [String: Int] { read { ["run": runRows.count] } }
    func integrityCheck() throws -> String { "ok" }
    func markAbandonedRuns(except active: Set<String>) throws -> Int { 0 }
    func verify(_ runID: String) throws -> VerifyReport {
        VerifyReport(runID: runID, events: 0, sealedRows: 0, unsealedRows: 0, blobs: 0, problem: "not chained")
    }
    func lockRun(_ runID: String, pid: Int32) throws {}
    func unlockRun(_ runID: String, pid: Int32) throws {}
    func fileSize() -> Int64 { 0 }
    func prune(olderThan: Double?, keep: Int?, now: Double) throws -> PruneReport {
        PruneReport(runsRemoved: [], blobsRemoved: 0, bytesBefore: 0, bytesAfter: 0)
    }
    func orphanBlobCount() throws -> Int { 0 }
    func search(_ text: String, raw: Bool, limit: Int) throws -> [SearchHit] { [] }
    func evals(limit: Int) throws -> [EvalRecord] { [] }
    func eval(matching id: String) throws -> EvalRecord? { nil }
    func evalResults(of id: String) throws -> [EvalResultRecord] { [] }
}

/// The front door takes it as it takes the shipped stores.
func runtimeOnMemory() throws -> ChorusRuntime {
    try ChorusRuntime(RuntimeConfiguration(store: MemoryTraceStore()))
}
