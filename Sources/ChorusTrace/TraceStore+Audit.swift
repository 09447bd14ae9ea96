import Foundation
import GRDB

/// What `TraceStore.verify` found for one run.
public struct VerifyReport: Sendable {
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

    public var intact: Bool { problem == nil }
}

extension TraceStore {
    /// Recomputes `runID`'s audit chain (TraceChain): every event's hash from the one
    /// before, every sealed row's content, every body against its content hash. Reports
    /// the first event or row that was changed, deleted or moved.
    public func verify(_ runID: String) throws -> VerifyReport {
        try pool.read { db in
            var report = VerifyReport(runID: runID, events: 0, sealedRows: 0, unsealedRows: 0, blobs: 0)
            guard let run = try RunRecord.fetchOne(db, key: runID) else {
                report.problem = "no run '\(runID)'"
                return report
            }
            let events = try Row.fetchAll(db, sql: """
                SELECT seq, at, kind, stepPath, detailJSON, hash, contentHash FROM event WHERE runID = ? ORDER BY seq
                """, arguments: [runID])
            let sealed = try Self.sealedDigests(runID, db)
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
                    report.problem = seq > expected
                        ? "event \(expected) is missing: the log goes from event \(expected - 1) to event \(seq)"
                        : "\(name) appears twice"
                    return report
                }
                let content = TraceChain.contentHash(sealed[seq] ?? [])
                if content != storedContent {
                    report.problem = "\(name): the rows it seals were changed or deleted (\((sealed[seq] ?? []).count) rows now)"
                    return report
                }
                let recomputed = TraceChain.eventHash(previous: previous, runID: runID, seq: seq, at: row["at"], kind: kind,
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
            let hashes = try String.fetchAll(db, sql: """
                SELECT requestHash FROM modelCall WHERE runID = ? UNION SELECT responseHash FROM modelCall WHERE runID = ? AND responseHash IS NOT NULL
                UNION SELECT inputHash FROM toolCall WHERE runID = ? UNION SELECT outputHash FROM toolCall WHERE runID = ?
                """, arguments: [runID, runID, runID, runID])
            for hash in hashes {
                guard let bytes = try Self.body(hash, db) else {
                    report.problem = "body \(hash.prefix(12))… (or a part of it) is missing from the blob table"
                    return report
                }
                if Self.hash(bytes) != hash {
                    report.problem = "body \(hash.prefix(12))… was changed: its bytes no longer hash to its key"
                    return report
                }
                report.blobs += 1
            }
            return report
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
