import ChorusJSON
import Foundation
import GRDB

/// Another live process holds a run's lock.
public struct RunLockHeld: Error, Sendable, CustomStringConvertible {
    /// The run locked.
    public var runID: String
    /// The process holding the lock.
    public var ownerPID: Int32
    /// Its host.
    public var ownerHost: String
    public var description: String { "run \(runID) is already being resumed by process \(ownerPID) on \(ownerHost)" }
}

/// What `TraceStore.prune` removed.
public struct PruneReport: Sendable {
    /// Ids of the runs removed.
    public var runsRemoved: [String]
    /// Blobs removed (bodies no remaining row referred to).
    public var blobsRemoved: Int
    /// The database's size before, in bytes.
    public var bytesBefore: Int64
    /// The database's size after, the space reclaimed.
    public var bytesAfter: Int64

    /// A report as a trace store returns it from `prune`.
    public init(runsRemoved: [String], blobsRemoved: Int, bytesBefore: Int64, bytesAfter: Int64) {
        self.runsRemoved = runsRemoved
        self.blobsRemoved = blobsRemoved
        self.bytesBefore = bytesBefore
        self.bytesAfter = bytesAfter
    }
}

/// One full-text match.
public struct SearchHit: Sendable {
    /// The run the match is in.
    public var runID: String
    /// The step whose call sent or received the text.
    public var stepPath: String
    /// That call's attempt number in the step.
    public var attempt: Int
    /// "prompt" or "response".
    public var role: String
    /// The matching text around the match, with the matched terms in [brackets].
    public var snippet: String

    /// A match as a trace store returns it from `search`.
    public init(runID: String, stepPath: String, attempt: Int, role: String, snippet: String) {
        self.runID = runID
        self.stepPath = stepPath
        self.attempt = attempt
        self.role = role
        self.snippet = snippet
    }
}

extension TraceStore {
    /// The rest of a search after its `hit` CTE (the best bodies, each with a snippet and a
    /// rank): the calls that sent or received them, and how to order them — the same SQL for
    /// SQLite and PostgreSQL; only the rank's direction (`bestFirst`) and the limit's
    /// placeholder differ.
    static func callsOfSearchHits(bestFirst: String, limit: String) -> String {
        """
        call AS MATERIALIZED (
            SELECT runID, stepPath, attempt, requestHash, responseHash FROM modelCall
            WHERE requestHash IN (SELECT hash FROM hit) OR responseHash IN (SELECT hash FROM hit))
        SELECT c.runID, c.stepPath, c.attempt, 'prompt' AS role, hit.snippet, hit.rank FROM call c JOIN hit ON c.requestHash = hit.hash
        UNION ALL
        SELECT c.runID, c.stepPath, c.attempt, 'response' AS role, hit.snippet, hit.rank FROM call c JOIN hit ON c.responseHash = hit.hash
        ORDER BY \(bestFirst), 1 DESC, 2, 3 LIMIT \(limit)
        """
    }

    // MARK: Resume locks

    /// Takes `runID`'s lock for this process, in one write transaction, so two processes
    /// never both hold it. A lock left by a process that died is taken over.
    public func lockRun(_ runID: String, pid: Int32 = getpid()) throws {
        try pool.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT ownerPID, ownerHost FROM runLock WHERE runID = ?", arguments: [runID]) {
                let owner: Int32 = row["ownerPID"]
                let host: String = row["ownerHost"]
                if owner != pid && !Self.processIsGone(owner, host: host) {
                    throw RunLockHeld(runID: runID, ownerPID: owner, ownerHost: host)
                }
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO runLock (runID, ownerPID, ownerHost, acquiredAt) VALUES (?,?,?,?)",
                arguments: [runID, pid, Self.hostName, Date().timeIntervalSince1970])
        }
    }

    /// Releases `runID`'s lock if this process holds it.
    public func unlockRun(_ runID: String, pid: Int32 = getpid()) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM runLock WHERE runID = ? AND ownerPID = ? AND ownerHost = ?", arguments: [runID, pid, Self.hostName])
        }
    }

    // MARK: Pruning

    /// The database file and its write-ahead log, in bytes.
    public func fileSize() -> Int64 {
        [path, path + "-wal"].reduce(0) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int64) ?? 0)
        }
    }

    /// Removes runs that started before `olderThan` seconds ago and all but the newest
    /// `keep`, then the bodies no remaining call uses, then reclaims the space (VACUUM).
    /// Runs still running are never removed.
    public func prune(olderThan: Double?, keep: Int?, now: Double = Date().timeIntervalSince1970) throws -> PruneReport {
        let before = fileSize()
        var removed: [String] = []
        var blobs = 0
        try pool.write { db in
            let runs = try RunRecord.order(Column("startedAt").desc, Column("id").desc).fetchAll(db)
            for (rank, run) in runs.enumerated() where run.status != .running {
                let tooOld = olderThan.map { run.startedAt < now - $0 } ?? false
                let beyondKeep = keep.map { rank >= $0 } ?? false
                if tooOld || beyondKeep { removed.append(run.id) }
            }
            for id in removed {
                try db.execute(sql: "DELETE FROM run WHERE id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM runLock WHERE runID = ?", arguments: [id])
            }
            // Skeletons first, then the parts and bodies nobody uses any more, whatever kind
            // their row is: a tool's output may be a later request's part, and the other way
            // round. A skeleton can be another's part (a request quoting a whole earlier
            // body), freed only once that one goes: again, while skeletons go.
            for _ in 0..<BodyParts.maxDepth {
                try db.execute(sql: "DELETE FROM blob WHERE kind = 1 AND \(Self.unreferenced)")
                let removed = db.changesCount
                try db.execute(sql: "DELETE FROM blobPart WHERE NOT EXISTS (SELECT 1 FROM blob WHERE hash = blobPart.body)")
                blobs += removed
                if removed == 0 { break }
            }
            try db.execute(sql: "DELETE FROM blob WHERE kind != 1 AND \(Self.unreferenced)")
            blobs += db.changesCount
            try db.execute(sql: "DELETE FROM blobText WHERE rowid NOT IN (SELECT rowid FROM blob)")
        }
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "VACUUM")
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
        return PruneReport(runsRemoved: removed, blobsRemoved: blobs, bytesBefore: before, bytesAfter: fileSize())
    }

    /// Every body a model call refers to. No index on the hashes (schema v4): SQLite builds
    /// this set once per statement, one pass over modelCall.
    private static let referencedBodies =
        "SELECT requestHash FROM modelCall UNION SELECT responseHash FROM modelCall WHERE responseHash IS NOT NULL "
        + "UNION SELECT inputHash FROM toolCall UNION SELECT outputHash FROM toolCall"

    /// A blob no call refers to and no stored body uses as a part. Content-addressed, so one
    /// row may be both: the text of a tool's output (a whole body) and the same text quoted in
    /// the next request (a part of its skeleton) share a hash and a row.
    private static let unreferenced = "hash NOT IN (\(referencedBodies)) AND NOT EXISTS (SELECT 1 FROM blobPart WHERE part = blob.hash)"

    /// Blobs no model call refers to (zero after a prune).
    public func orphanBlobCount() throws -> Int {
        try pool.read { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM blob WHERE \(Self.unreferenced)
                    """) ?? 0
        }
    }

    // MARK: Full-text search

    /// Searches prompts and responses (SQLite FTS5). Each term of `text` must appear; with
    /// `raw`, `text` is an FTS5 query (`"exact phrase"`, `OR`, `NEAR`, `prefix*`). The index
    /// is brought up to date first, so runs never pay for it (a store opened read-only
    /// searches what was indexed before).
    public func search(_ text: String, raw: Bool = false, limit: Int = 20) throws -> [SearchHit] {
        if !isReadOnly { try updateSearchIndex() }
        let query =
            raw
            ? text
            : text.split(whereSeparator: \.isWhitespace)
                .map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: " ")
        guard !query.isEmpty else { return [] }
        return try pool.read { db in
            // The best `limit` bodies first (FTS5 ranks them without building every snippet),
            // then the calls that sent or received them, found in one pass over modelCall:
            // there is no index on body hashes (schema v4).
            let rows = try Row.fetchAll(
                db,
                sql: """
                    WITH hit AS MATERIALIZED (
                        SELECT b.hash AS hash, snippet(blobText, 0, '[', ']', '…', 12) AS snippet, blobText.rank AS rank
                        FROM blobText JOIN blob b ON b.rowid = blobText.rowid WHERE blobText MATCH ? ORDER BY blobText.rank LIMIT ?),
                    \(Self.callsOfSearchHits(bestFirst: "6", limit: "?"))
                    """, arguments: [query, limit, limit])
            return rows.map { SearchHit(runID: $0[0], stepPath: $0[1], attempt: $0[2], role: $0[3], snippet: $0[4]) }
        }
    }

    /// Indexes the text of every blob stored since the last search.
    private func updateSearchIndex() throws {
        try pool.write { db in
            let upTo = try Int64.fetchOne(db, sql: "SELECT upTo FROM blobTextIndexed") ?? 0
            var last = upTo
            let rows = try Row.fetchAll(db, sql: "SELECT rowid, hash, kind FROM blob WHERE rowid > ? ORDER BY rowid", arguments: [upTo])
            let insert = try db.makeStatement(sql: "INSERT INTO blobText (rowid, text) VALUES (?, ?)")
            for row in rows {
                let rowid: Int64 = row[0]
                last = rowid
                // Parts are searched through the bodies that carry them.
                guard row[2] as Int != 2, let bytes = try Self.body(row[1], db) else { continue }
                try insert.execute(arguments: [rowid, Self.searchableText(bytes)])
            }
            if last != upTo { try db.execute(sql: "UPDATE blobTextIndexed SET upTo = ?", arguments: [last]) }
        }
    }

    /// The words people wrote or read in a body: every string under a `content`, `text` or
    /// `system` key (OpenAI and Anthropic alike), not the JSON around them.
    static func searchableText(_ bytes: [UInt8]) -> String {
        guard let value = try? JSONValue(parsing: bytes) else { return String(decoding: bytes, as: UTF8.self) }
        var parts: [String] = []
        func walk(_ value: JSONValue, collecting: Bool) {
            switch value {
            case .string(let s) where collecting: parts.append(s)
            case .array(let items): items.forEach { walk($0, collecting: collecting) }
            case .object(let fields):
                for (key, field) in fields { walk(field, collecting: collecting || key == "content" || key == "text" || key == "system") }
            default: break
            }
        }
        walk(value, collecting: false)
        return parts.joined(separator: "\n")
    }
}
