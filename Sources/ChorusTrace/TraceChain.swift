import Crypto
import GRDB

/// The audit chain over a run's trace. Every event carries a hash of the previous event's
/// hash, its own fields and the rows it seals; a row (a model call, a finished step, a
/// finished run) is sealed by the next event of its run written after it. Changing,
/// deleting or reordering any sealed row or event breaks the chain from there on, and
/// `TraceStore.verify` finds where.
///
/// Rows still in progress (a step or run `running`) are not sealed: they are rewritten
/// when they finish and are sealed then.
package enum TraceChain {
    /// The hash before a run's first event.
    package static let origin = String(repeating: "0", count: 64)

    /// A row's content, field by field, as the chain commits to it. (A run's parent is in
    /// its `run_started` event instead: pruning the parent clears the column.)
    static func digest(_ run: RunRecord) -> String {
        var c = Canonical()
        c.add("run"); c.add(run.id); c.add(run.workflow); c.add(run.workflowPath); c.add(run.inputsJSON); c.add(run.status.rawValue)
        c.add(run.startedAt); c.add(run.endedAt); c.add(run.outputJSON); c.add(run.error); c.add(run.tokensIn); c.add(run.tokensOut)
        c.add(run.cost)
        // Added in schema v5; absent from older rows, whose digests stay as they were.
        if let configPath = run.configPath { c.add("v5"); c.add(configPath) }
        return c.hash()
    }

    static func digest(_ step: StepRecord) -> String {
        var c = Canonical()
        c.add("step"); c.add(step.runID); c.add(step.path); c.add(step.node); c.add(step.kind); c.add(step.itemIndex); c.add(step.agent)
        c.add(step.model); c.add(step.status.rawValue); c.add(step.startedAt); c.add(step.endedAt); c.add(step.outputJSON); c.add(step.provenanceJSON)
        c.add(step.error); c.add(step.attempts); c.add(step.tokensIn); c.add(step.tokensOut); c.add(step.cost)
        return c.hash()
    }

    static func digest(_ call: ModelCallRecord) -> String {
        var c = Canonical()
        c.add("call"); c.add(call.runID); c.add(call.stepPath); c.add(call.attempt); c.add(call.model); c.add(call.providerModel)
        c.add(call.url); c.add(call.requestHash); c.add(call.responseHash); c.add(call.httpStatus); c.add(call.error); c.add(call.tokensIn)
        c.add(call.tokensOut); c.add(call.cost); c.add(call.latencyMs); c.add(call.startedAt)
        // Added in schema v5; absent from older rows, whose digests stay as they were.
        if call.finishReason != nil || call.firstTokenMs != nil { c.add("v5"); c.add(call.finishReason); c.add(call.firstTokenMs) }
        // Added in schema v6, likewise.
        if let outcome = call.outcome { c.add("v6"); c.add(outcome.rawValue) }
        return c.hash()
    }

    static func digest(_ call: ToolCallRecord) -> String {
        var c = Canonical()
        c.add("tool"); c.add(call.runID); c.add(call.stepPath); c.add(call.attempt); c.add(call.callIndex); c.add(call.callID)
        c.add(call.tool); c.add(call.kind); c.add(call.inputHash); c.add(call.outputHash); c.add(call.isError ? 1 : 0)
        c.add(call.exitStatus); c.add(call.error); c.add(call.latencyMs); c.add(call.startedAt)
        return c.hash()
    }

    /// The hash of a set of row digests (order-free: sorted first).
    static func contentHash(_ digests: [String]) -> String {
        switch digests.count {
        case 0: return emptyContentHash
        case 1: return TraceStore.hash(Array(digests[0].utf8))
        default: return TraceStore.hash(Array(digests.sorted().joined(separator: "\n").utf8))
        }
    }

    /// Most events seal nothing (node and run events, retries, escalations).
    private static let emptyContentHash = TraceStore.hash([])

    /// An event's hash, chained to `previous`.
    static func eventHash(
        previous: String, runID: String, seq: Int, at: Double, kind: String, stepPath: String?,
        detailJSON: String?, contentHash: String
    ) -> String {
        var c = Canonical()
        c.add(previous); c.add(runID); c.add(seq); c.add(at); c.add(kind); c.add(stepPath); c.add(detailJSON); c.add(contentHash)
        return c.hash()
    }

    /// The seq and hash of `runID`'s last event (0 and `origin` before the first).
    static func lastEvent(_ runID: String, _ db: Database) throws -> (seq: Int, hash: String) {
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT seq, hash FROM event WHERE runID = ? ORDER BY seq DESC LIMIT 1"),
            arguments: [runID])
        return (row?["seq"] as Int? ?? 0, row?["hash"] as String? ?? origin)
    }

    /// Event `seq` of `runID`'s log, chained to `previous` and sealing the rows whose
    /// digests are given: the one place an event's hashes are made.
    static func event(
        runID: String, seq: Int, previous: String, at: Double, kind: String, stepPath: String?, detailJSON: String?,
        sealing digests: [String]
    ) -> EventRow {
        let content = contentHash(digests)
        let hash = eventHash(
            previous: previous, runID: runID, seq: seq, at: at, kind: kind, stepPath: stepPath,
            detailJSON: detailJSON, contentHash: content)
        return EventRow(runID: runID, seq: seq, at: at, kind: kind, stepPath: stepPath, detailJSON: detailJSON, hash: hash, contentHash: content)
    }

    /// Why a run left `running` was marked interrupted by someone other than its process.
    package enum Interruption: String, Sendable {
        /// Its process on this host is gone (`markAbandonedRuns`).
        case ownerGone = "owner process gone"
        /// Its worker's lease on the run queue lapsed (a worker taking the run over).
        case leaseLapsed = "worker lease lapsed"
    }

    /// A run marked interrupted outside the trace writer: its row as it becomes, and the
    /// `run_interrupted` event after `last` that seals it with the rows its process wrote
    /// after its last event (`unsealed`, their digests). Both backends write these two.
    static func interruption(
        of run: RunRecord, after last: (seq: Int, hash: String), unsealed: [String], _ why: Interruption, at: Double
    ) -> (run: RunRecord, event: EventRow) {
        var run = run
        run.status = .interrupted
        run.error = run.error ?? "the process running it stopped before it finished"
        let event = event(
            runID: run.id, seq: last.seq + 1, previous: last.hash, at: at, kind: EventKind.runInterrupted.rawValue, stepPath: nil,
            detailJSON: #"{"reason":"\#(why.rawValue)"}"#, sealing: unsealed + [digest(run)])
        return (run, event)
    }

    /// Fields separated by U+001F, U+0000 standing for a missing one, numbers as their
    /// `description`; the digest is the SHA-256 of those bytes. Short fields are gathered in
    /// one buffer (an array of field strings cost the writer thread 8%, perf); a long one (a
    /// fan-out node's output, 23 MB at 100,000 items) is hashed where it lies; copied into
    /// the buffer, grown by doubling, it made the largest thing a run held (heaptrack: 69 MB).
    private struct Canonical {
        private var bytes: [UInt8] = []
        private var hasher = SHA256()
        private static let gathered = 16 * 1024

        init() { bytes.reserveCapacity(512) }

        mutating func add(_ field: String?) {
            if var field {
                field.withUTF8 { utf8 in
                    if utf8.count < Self.gathered {
                        bytes.append(contentsOf: utf8)
                    } else {
                        bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
                        bytes.removeAll(keepingCapacity: true)
                        hasher.update(bufferPointer: UnsafeRawBufferPointer(utf8))
                    }
                }
            } else {
                bytes.append(0)
            }
            bytes.append(0x1F)
        }

        mutating func add<T: CustomStringConvertible>(_ field: T?) { add(field.map(\.description)) }

        func hash() -> String {
            var hasher = hasher
            bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            return TraceStore.hex(hasher.finalize())
        }
    }
}
