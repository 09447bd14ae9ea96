import Foundation
import GRDB

/// What `TraceStore.verify` found for one run.
public struct VerifyReport: Sendable {
    /// The run checked.
    public var runID: String
    /// Events checked.
    public var events: Int
    /// Rows (run, steps, model calls) whose content the chain covers.
    public var sealedRows: Int
    /// Rows a process wrote after the run's last event before it died: present, not sealed.
    public var unsealedRows: Int
    /// Blobs whose bytes were re-hashed.
    public var blobs: Int
    /// The first break in the chain, one line; nil when the trace is intact.
    public var problem: String?

    /// The chain verified: no break found.
    public var intact: Bool { problem == nil }

    /// A report as a trace store returns it from `verify`.
    public init(runID: String, events: Int, sealedRows: Int, unsealedRows: Int, blobs: Int, problem: String? = nil) {
        self.runID = runID
        self.events = events
        self.sealedRows = sealedRows
        self.unsealedRows = unsealedRows
        self.blobs = blobs
        self.problem = problem
    }
}

extension TraceStore {
    /// Recomputes `runID`'s audit chain (TraceChain): every event's hash from the one
    /// before, every sealed row's content, every body against its content hash. Reports
    /// the first event or row that was changed, deleted or moved.
    public func verify(_ runID: String) throws -> VerifyReport {
        try pool.read { db in
            guard let run = try RunRecord.fetchOne(db, key: runID) else {
                return VerifyReport(runID: runID, events: 0, sealedRows: 0, unsealedRows: 0, blobs: 0, problem: "no run '\(runID)'")
            }
            let events = try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, at, kind, stepPath, detailJSON, hash, contentHash FROM event WHERE runID = ? ORDER BY seq
                    """, arguments: [runID])
            let hashes = try String.fetchAll(
                db,
                sql: """
                    SELECT requestHash FROM modelCall WHERE runID = ? UNION SELECT responseHash FROM modelCall WHERE runID = ? AND responseHash IS NOT NULL
                    UNION SELECT inputHash FROM toolCall WHERE runID = ? UNION SELECT outputHash FROM toolCall WHERE runID = ?
                    """, arguments: [runID, runID, runID, runID])
            return try TraceChain.verify(run: run, events: events, sealed: try Self.sealedDigests(runID, db), bodies: hashes) {
                try Self.body($0, db)
            }
        }
    }

    /// The digests of `runID`'s sealed rows, by the seq of the event that seals them.
    static func sealedDigests(_ runID: String, _ db: Database) throws -> [Int: [String]] {
        var sealed: [Int: [String]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM modelCall WHERE runID = ? AND sealSeq IS NOT NULL", arguments: [runID]) {
            sealed[row["sealSeq"], default: []].append(TraceChain.digest(try ModelCallRecord(row: row)))
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM toolCall WHERE runID = ? AND sealSeq IS NOT NULL", arguments: [runID]) {
            sealed[row["sealSeq"], default: []].append(TraceChain.digest(try ToolCallRecord(row: row)))
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM step WHERE runID = ? AND sealSeq IS NOT NULL", arguments: [runID]) {
            sealed[row["sealSeq"], default: []].append(TraceChain.digest(try StepRecord(row: row)))
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM run WHERE id = ? AND sealSeq IS NOT NULL", arguments: [runID]) {
            sealed[row["sealSeq"], default: []].append(TraceChain.digest(try RunRecord(row: row)))
        }
        return sealed
    }
}

extension TraceChain {
    /// Recomputes a run's chain from what a backend read: its events in seq order (rows
    /// with seq, at, kind, stepPath, detailJSON, hash, contentHash), its sealed rows'
    /// digests by sealing seq, and the hashes of the bodies its calls refer to. The one
    /// verification both backends run, so a trace verifies the same on either.
    static func verify(
        run: RunRecord, events: [Row], sealed: [Int: [String]], bodies hashes: [String],
        body: (String) throws -> [UInt8]?
    ) throws -> VerifyReport {
        let runID = run.id
        var report = VerifyReport(runID: runID, events: 0, sealedRows: 0, unsealedRows: 0, blobs: 0)
        report.sealedRows = sealed.values.reduce(0) { $0 + $1.count }
        var previous = TraceChain.origin
        var expected = 1
        for row in events {
            let seq: Int = row["seq"]
            let kind: String = row["kind"]
            let stepPath: String? = row["stepPath"]
            let name = "event \(seq) (\(kind)\(stepPath.map { " " + $0 } ?? ""))"
            guard let hash: String = row["hash"], let storedContent: String = row["contentHash"] else {
                report.problem = "\(name) has no hash: it was written before the audit chain (trace schema v3), or its hash was removed"
                return report
            }
            if seq != expected {
                report.problem =
                    seq > expected
                    ? "event \(expected) is missing: the log goes from event \(expected - 1) to event \(seq)"
                    : "\(name) appears twice"
                return report
            }
            let content = TraceChain.contentHash(sealed[seq] ?? [])
            if content != storedContent {
                report.problem = "\(name): the rows it seals were changed or deleted (\((sealed[seq] ?? []).count) rows now)"
                return report
            }
            let recomputed = TraceChain.eventHash(
                previous: previous, runID: runID, seq: seq, at: row["at"], kind: kind,
                stepPath: stepPath, detailJSON: row["detailJSON"], contentHash: content)
            if recomputed != hash {
                report.problem = "\(name) was changed or moved: its hash does not follow from the event before it"
                return report
            }
            previous = hash
            expected += 1
            report.events += 1
        }
        let last = expected - 1
        for (seal, digests) in sealed.sorted(by: { $0.key < $1.key }) where seal > last {
            if run.status == .running || run.status == .interrupted {
                report.unsealedRows += digests.count
            } else {
                report.problem = "\(digests.count) rows are sealed by event \(seal), which is missing: the log was cut short after event \(last)"
                return report
            }
        }
        report.sealedRows -= report.unsealedRows
        for hash in hashes {
            guard let bytes = try body(hash) else {
                report.problem = "body \(hash.prefix(12))… (or a part of it) is missing from the blob table"
                return report
            }
            if TraceStore.hash(bytes) != hash {
                report.problem = "body \(hash.prefix(12))… was changed: its bytes no longer hash to its key"
                return report
            }
            report.blobs += 1
        }
        return report
    }
}
