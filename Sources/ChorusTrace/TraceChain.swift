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
public enum TraceChain {
    /// The hash before a run's first event.
    public static let origin = String(repeating: "0", count: 64)

    /// A row's content, field by field, as the chain commits to it. (A run's parent is in
    /// its `run_started` event instead: pruning the parent clears the column.)
    static func digest(_ run: RunRecord) -> String {
        canonical(["run", run.id, run.workflow, run.workflowPath, run.inputsJSON, run.status, text(run.startedAt), text(run.endedAt),
                   run.outputJSON, run.error, text(run.tokensIn), text(run.tokensOut), text(run.cost)])
    }

    static func digest(_ step: StepRecord) -> String {
        canonical(["step", step.runID, step.path, step.node, step.kind, text(step.itemIndex), step.agent, step.model, step.status,
                   text(step.startedAt), text(step.endedAt), step.outputJSON, step.provenanceJSON, step.error, text(step.attempts),
                   text(step.tokensIn), text(step.tokensOut), text(step.cost)])
    }

    static func digest(_ call: ModelCallRecord) -> String {
        canonical(["call", call.runID, call.stepPath, text(call.attempt), call.model, call.providerModel, call.url, call.requestHash,
                   call.responseHash, text(call.httpStatus), call.error, text(call.tokensIn), text(call.tokensOut), text(call.cost),
                   text(call.latencyMs), text(call.startedAt)])
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
    static func eventHash(previous: String, runID: String, seq: Int, at: Double, kind: String, stepPath: String?,
                         detailJSON: String?, contentHash: String) -> String {
        canonical([previous, runID, text(seq), text(at), kind, stepPath, detailJSON, contentHash])
    }

    /// The seq and hash of `runID`'s last event (0 and `origin` before the first).
    static func lastEvent(_ runID: String, _ db: Database) throws -> (seq: Int, hash: String) {
        let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM event WHERE runID = ? ORDER BY seq DESC LIMIT 1"),
                                   arguments: [runID])
        return (row?["seq"] as Int? ?? 0, row?["hash"] as String? ?? origin)
    }

    /// Appends event `seq` to `runID`'s log, chained to `previous` and sealing the rows
    /// whose digests are given; returns its hash. The one place events are written: through
    /// the writer's prepared `insert`, or a statement of its own when none is given.
    static func appendEvent(_ db: Database, runID: String, seq: Int, previous: String, at: Double, kind: String,
                            stepPath: String?, detailJSON: String?, sealing digests: [String], insert: RowInsert? = nil) throws -> String {
        let content = contentHash(digests)
        let hash = eventHash(previous: previous, runID: runID, seq: seq, at: at, kind: kind, stepPath: stepPath,
                             detailJSON: detailJSON, contentHash: content)
        let statement = try insert ?? RowInsert(db, sql: insertSQL)
        statement.bind(runID)
        statement.bind(seq)
        statement.bind(at)
        statement.bind(kind)
        statement.bind(stepPath)
        statement.bind(detailJSON)
        statement.bind(hash)
        statement.bind(content)
        try statement.run()
        return hash
    }

    static let insertSQL = "INSERT INTO event (runID, seq, at, kind, stepPath, detailJSON, hash, contentHash) VALUES (?,?,?,?,?,?,?,?)"

    /// Whether a step or run in this state is final, and so sealed.
    static func isFinal(_ status: String) -> Bool { status != "running" }

    private static func text<T: CustomStringConvertible>(_ value: T?) -> String? { value.map(\.description) }

    /// SHA-256 of the fields separated by U+001F, with U+0000 standing for a missing one.
    private static func canonical(_ fields: [String?]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        for field in fields {
            if let field { bytes.append(contentsOf: field.utf8) } else { bytes.append(0) }
            bytes.append(0x1F)
        }
        return TraceStore.hash(bytes)
    }
}
