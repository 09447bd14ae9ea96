import Foundation
import GRDB
import PostgresClient

/// The PostgreSQL trace store (`--db postgres://user@host/db`): the same tables, the same
/// content-addressed bodies and parts, the same audit chain as the SQLite store, so
/// `runs verify`, replay, resume and every `runs` command work on either. Rows read back
/// are turned into GRDB `Row`s and decoded by the same record types.
///
/// Connections: reads share one connection under a lock (they are short and run off the
/// event loop); the trace writer's session opens its own.
public final class PostgresTraceStore: TraceBackend, @unchecked Sendable {
    public let path: String
    public let isReadOnly: Bool
    private let url: String
    private let lock = NSLock()
    private var reader: PostgresConnection?

    /// Connects to `url` and applies pending migrations (unless `readOnly`).
    public init(url: String, readOnly: Bool = false) throws(TraceStoreError) {
        self.url = url
        path = TraceLocation.redacted(url)
        isReadOnly = readOnly
        let connection: PostgresConnection
        var empty = false
        do {
            connection = try PostgresConnection(url: url)
            if !readOnly { try PostgresSchema.migrate(connection) }
            // A database no run has written to has no tables: say so, as SQLite says "no such
            // file", rather than fail the first query with `relation "run" does not exist`.
            if readOnly { empty = try connection.query("SELECT to_regclass('chorus_migrations') IS NULL").strings(0).first == "t" }
        } catch {
            throw TraceStoreError(path: path, reason: Self.describe(error))
        }
        if empty { throw TraceStoreError(path: path, reason: "no Chorus tables yet (a run creates them)") }
        reader = connection
    }

    package static func describe(_ error: Error) -> String {
        // One line. libpq's messages name host and port, never the password (tested).
        "\(error)".replacingOccurrences(of: "\n", with: " ")
    }

    /// Runs `body` on the shared read connection, reconnecting once if it was lost.
    @discardableResult
    func read<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try lock.withLock {
            if reader == nil || reader?.isOK == false { reader = try PostgresConnection(url: url) }
            do {
                return try body(reader!)
            } catch let error as PostgresError {
                throw TraceStoreError(path: path, reason: Self.describe(error))
            }
        }
    }

    public var location: TraceLocation { .postgres(url: url) }

    public func makeWriteSession(staging: StagedSteps?) throws -> any TraceWriteSession {
        try PostgresWriteSession(connection: PostgresConnection(url: url), location: path, staging: staging)
    }

    // MARK: Reads

    private func records<R: FetchableRecord>(_ type: R.Type, _ sql: String, _ parameters: [PostgresValue?]) throws -> [R] {
        try read { connection in try connection.query(sql, parameters).grdbRows().map { try R(row: $0) } }
    }

    public func runs(limit: Int) throws -> [RunRecord] {
        try records(RunRecord.self, "SELECT * FROM run ORDER BY startedAt DESC, id DESC LIMIT $1", [.text(String(limit))])
    }

    public func run(matching id: String) throws -> RunRecord? {
        if let exact = try records(RunRecord.self, "SELECT * FROM run WHERE id = $1", [.text(id)]).first { return exact }
        let escaped = id.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
        let matches = try records(RunRecord.self, "SELECT * FROM run WHERE id LIKE $1 LIMIT 2", [.text(escaped + "%")])
        return matches.count == 1 ? matches[0] : nil
    }

    public func runs(parent id: String) throws -> [RunRecord] {
        try records(RunRecord.self, "SELECT * FROM run WHERE parentRunID = $1 ORDER BY startedAt", [.text(id)])
    }

    public func steps(ofRun id: String) throws -> [StepRecord] {
        try records(StepRecord.self, "SELECT * FROM step WHERE runID = $1 ORDER BY startedAt, path", [.text(id)])
    }

    public func modelCalls(ofRun id: String) throws -> [ModelCallRecord] {
        try records(ModelCallRecord.self, "SELECT * FROM modelCall WHERE runID = $1 ORDER BY startedAt, attempt, id", [.text(id)])
    }

    public func toolCalls(ofRun id: String) throws -> [ToolCallRecord] {
        try records(ToolCallRecord.self, "SELECT * FROM toolCall WHERE runID = $1 ORDER BY stepPath, attempt, callIndex", [.text(id)])
    }

    public func events(ofRun id: String) throws -> [EventRecord] {
        try records(EventRecord.self, "SELECT * FROM event WHERE runID = $1 ORDER BY seq", [.text(id)])
    }

    public func blob(_ hash: String) throws -> [UInt8]? {
        try read { try Self.body(hash, $0) }
    }

    public func blobs(_ hashes: Set<String>) throws -> [String: [UInt8]] {
        try read { connection in
            var found: [String: [UInt8]] = [:]
            for hash in hashes { found[hash] = try Self.body(hash, connection) }
            return found
        }
    }

    static func body(_ hash: String, _ connection: PostgresConnection, depth: Int = 0) throws -> [UInt8]? {
        let result = try connection.query("SELECT bytes, kind FROM blob WHERE hash = $1", [.text(hash)])
        guard let row = result.rows.first, case .bytes(let bytes)? = row[0] else { return nil }
        guard case .text("1")? = row[1] else { return bytes }
        // A part is found by its hash whatever its row's kind (see TraceStore.body).
        guard depth < BodyParts.maxDepth else { return nil }
        return try BodyParts.join(bytes) { part in try Self.body(part, connection, depth: depth + 1) }
    }

    public func counts() throws -> [String: Int] {
        try read { connection in
            var result: [String: Int] = [:]
            for table in ["run", "step", "modelCall", "blob", "event"] {
                result[table] = try connection.query("SELECT COUNT(*) FROM \(table)").int(0, 0) ?? 0
            }
            return result
        }
    }

    /// PostgreSQL keeps its own pages sound; this checks that every table answers and that
    /// no row points at a body or run that is not there.
    public func integrityCheck() throws -> String {
        try read { connection in
            let dangling =
                try connection.query(
                    """
                    SELECT (SELECT COUNT(*) FROM modelCall c WHERE NOT EXISTS (SELECT 1 FROM blob b WHERE b.hash = c.requestHash))
                         + (SELECT COUNT(*) FROM step s WHERE NOT EXISTS (SELECT 1 FROM run r WHERE r.id = s.runID))
                    """
                ).int(0, 0) ?? 0
            return dangling == 0 ? "ok" : "\(dangling) rows refer to a body or run that is missing"
        }
    }

    // MARK: Audit

    public func verify(_ runID: String) throws -> VerifyReport {
        try read { connection in
            guard let run = try connection.query("SELECT * FROM run WHERE id = $1", [.text(runID)]).grdbRows().first.map({ try RunRecord(row: $0) }) else {
                return VerifyReport(runID: runID, events: 0, sealedRows: 0, unsealedRows: 0, blobs: 0, problem: "no run '\(runID)'")
            }
            let events = try connection.query(
                "SELECT seq, at, kind, stepPath, detailJSON, hash, contentHash FROM event WHERE runID = $1 ORDER BY seq",
                [.text(runID)]
            ).grdbRows()
            let hashes = try connection.query(
                """
                SELECT requestHash FROM modelCall WHERE runID = $1 UNION SELECT responseHash FROM modelCall WHERE runID = $1 AND responseHash IS NOT NULL
                UNION SELECT inputHash FROM toolCall WHERE runID = $1 UNION SELECT outputHash FROM toolCall WHERE runID = $1
                """, [.text(runID)]
            ).strings(0)
            return try TraceChain.verify(run: run, events: events, sealed: try Self.sealedDigests(runID, connection), bodies: hashes) {
                try Self.body($0, connection)
            }
        }
    }

    // MARK: Resume locks

    /// One row per run, taken in a transaction that locks the run's row first (FOR UPDATE),
    /// so two processes on any machines never both hold it.
    public func lockRun(_ runID: String, pid: Int32) throws {
        try read { connection in
            try connection.execute("BEGIN")
            do {
                let held = try connection.query("SELECT ownerPID, ownerHost FROM runLock WHERE runID = $1 FOR UPDATE", [.text(runID)])
                if let row = held.rows.first, case .text(let ownerText)? = row[0], case .text(let host)? = row[1], let owner = Int32(ownerText),
                    owner != pid || host != TraceStore.hostName, !TraceStore.processIsGone(owner, host: host)
                {
                    try connection.execute("ROLLBACK")
                    throw RunLockHeld(runID: runID, ownerPID: owner, ownerHost: host)
                }
                try connection.query(
                    """
                    INSERT INTO runLock (runID, ownerPID, ownerHost, acquiredAt) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (runID) DO UPDATE SET ownerPID = excluded.ownerPID, ownerHost = excluded.ownerHost, acquiredAt = excluded.acquiredAt
                    """, [.text(runID), .text(String(pid)), .text(TraceStore.hostName), .text(String(Date().timeIntervalSince1970))])
                try connection.execute("COMMIT")
            } catch let error as PostgresError {
                try? connection.execute("ROLLBACK")
                // Two first lockers raced on the insert: the loser sees the winner's row.
                if error.state == "23505" { return try lockRunAfterRace(runID, pid: pid, connection) }
                throw error
            }
        }
    }

    private func lockRunAfterRace(_ runID: String, pid: Int32, _ connection: PostgresConnection) throws {
        let held = try connection.query("SELECT ownerPID, ownerHost FROM runLock WHERE runID = $1", [.text(runID)])
        guard let row = held.rows.first, case .text(let ownerText)? = row[0], case .text(let host)? = row[1], let owner = Int32(ownerText) else { return }
        throw RunLockHeld(runID: runID, ownerPID: owner, ownerHost: host)
    }

    public func unlockRun(_ runID: String, pid: Int32) throws {
        try read { connection in
            try connection.query(
                "DELETE FROM runLock WHERE runID = $1 AND ownerPID = $2 AND ownerHost = $3",
                [.text(runID), .text(String(pid)), .text(TraceStore.hostName)])
        }
    }

    // MARK: Size, pruning

    public func fileSize() -> Int64 {
        (try? read { try $0.query("SELECT pg_database_size(current_database())").int(0, 0) }).flatMap { $0 }.map(Int64.init) ?? 0
    }

    public func prune(olderThan: Double?, keep: Int?, now: Double) throws -> PruneReport {
        let before = fileSize()
        var removed: [String] = []
        var blobs = 0
        try read { connection in
            try connection.execute("BEGIN")
            do {
                let runs = try connection.query("SELECT id, status, startedAt FROM run ORDER BY startedAt DESC, id DESC FOR UPDATE").grdbRows()
                for (rank, run) in runs.enumerated() where (run["status"] as String) != RunStatus.running.rawValue {
                    let tooOld = olderThan.map { (run["startedAt"] as Double) < now - $0 } ?? false
                    let beyondKeep = keep.map { rank >= $0 } ?? false
                    if tooOld || beyondKeep { removed.append(run["id"]) }
                }
                for id in removed {
                    try connection.query("DELETE FROM run WHERE id = $1", [.text(id)])
                    try connection.query("DELETE FROM runLock WHERE runID = $1", [.text(id)])
                    // A shared run's key is its first run's id: its step table and budgets go with it.
                    try connection.query("DELETE FROM stepTask WHERE runKey = $1", [.text(id)])
                    try connection.query("DELETE FROM sharedRun WHERE runKey = $1", [.text(id)])
                    try connection.query("DELETE FROM sharedBudget WHERE key LIKE $1", [.text(Self.likePrefix(id) + "/%")])
                }
                // Bodies a shared step's executor stored are referenced only by its result until
                // the coordinator copies it into the trace: while any step is leased or a result
                // is kept (a run still going, or interrupted and waiting for a takeover),
                // unreferenced bodies are kept (a later prune removes them). The
                // table lock holds new leases (whose bodies would come next) until this commits.
                try connection.execute("LOCK TABLE stepTask IN SHARE MODE")
                let staged = try connection.query("SELECT 1 FROM stepTask WHERE status = 'leased' OR resultJSON IS NOT NULL LIMIT 1").rows.isEmpty == false
                if !staged {
                    // Skeletons first, again while one freed another (see TraceStore.prune).
                    for _ in 0..<BodyParts.maxDepth {
                        let removed = try connection.query("DELETE FROM blob WHERE kind = 1 AND \(Self.unreferenced)").affected
                        try connection.query("DELETE FROM blobPart WHERE NOT EXISTS (SELECT 1 FROM blob WHERE hash = blobPart.body)")
                        blobs += removed
                        if removed == 0 { break }
                    }
                    blobs += try connection.query("DELETE FROM blob WHERE kind != 1 AND \(Self.unreferenced)").affected
                    try connection.query("DELETE FROM blobText WHERE hash NOT IN (SELECT hash FROM blob)")
                }
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
            // Space goes back to PostgreSQL's free space map; VACUUM FULL would lock every table.
            try connection.execute("VACUUM blob")
        }
        return PruneReport(runsRemoved: removed, blobsRemoved: blobs, bytesBefore: before, bytesAfter: fileSize())
    }

    /// `text` for a LIKE pattern, its wildcards escaped.
    static func likePrefix(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
    }

    private static let referencedBodies =
        "SELECT requestHash FROM modelCall UNION SELECT responseHash FROM modelCall WHERE responseHash IS NOT NULL "
        + "UNION SELECT inputHash FROM toolCall UNION SELECT outputHash FROM toolCall"

    /// A blob no call refers to and no stored body uses as a part (see TraceStore.unreferenced).
    private static let unreferenced = "hash NOT IN (\(referencedBodies)) AND NOT EXISTS (SELECT 1 FROM blobPart WHERE part = blob.hash)"

    public func orphanBlobCount() throws -> Int {
        try read { connection in
            try connection.query(
                """
                SELECT COUNT(*) FROM blob WHERE \(Self.unreferenced)
                """
            ).int(0, 0) ?? 0
        }
    }

    // MARK: Search

    /// PostgreSQL's own full-text search ('simple' configuration: no stemming, like the
    /// SQLite store's unicode61): every term must appear; with `raw`, `text` is a web-search
    /// query (`"exact phrase"`, `or`, `-word`). Indexed on first search, like SQLite's.
    public func search(_ text: String, raw: Bool, limit: Int) throws -> [SearchHit] {
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { return [] }
        if !isReadOnly { try updateSearchIndex() }
        let query = raw ? "websearch_to_tsquery('simple', $1)" : "plainto_tsquery('simple', $1)"
        return try read { connection in
            let rows = try connection.query(
                """
                WITH hit AS MATERIALIZED (
                    SELECT t.hash, ts_headline('simple', t.text, \(query), 'StartSel=[, StopSel=], MaxWords=12, MinWords=4') AS snippet,
                           ts_rank(t.tsv, \(query)) AS rank
                    FROM blobText t WHERE t.tsv @@ \(query) ORDER BY rank DESC LIMIT $2),
                \(TraceStore.callsOfSearchHits(bestFirst: "6 DESC", limit: "$2"))
                """, [.text(text), .text(String(limit))]
            ).grdbRows()
            return rows.map { SearchHit(runID: $0["runID"], stepPath: $0["stepPath"], attempt: $0["attempt"], role: $0["role"], snippet: $0["snippet"]) }
        }
    }

    private func updateSearchIndex() throws {
        try read { connection in
            let pending = try connection.query(
                """
                SELECT hash FROM blob b WHERE kind != 2 AND NOT EXISTS (SELECT 1 FROM blobText t WHERE t.hash = b.hash)
                """
            ).strings(0)
            for hash in pending {
                guard let bytes = try Self.body(hash, connection) else { continue }
                // tsvector refuses words over 2 KB and lexemes past 1 MB: long texts are cut.
                let text = String(TraceStore.searchableText(bytes).prefix(200_000)).replacingOccurrences(of: "\u{0}", with: " ")
                try connection.query(
                    "INSERT INTO blobText (hash, text, tsv) VALUES ($1, $2, to_tsvector('simple', $2)) ON CONFLICT DO NOTHING",
                    [.text(hash), .text(text)])
            }
        }
    }

    // MARK: Evals

    public func evals(limit: Int) throws -> [EvalRecord] {
        try records(EvalRecord.self, "SELECT * FROM eval ORDER BY startedAt DESC LIMIT $1", [.text(String(limit))])
    }

    public func eval(matching id: String) throws -> EvalRecord? {
        if let exact = try records(EvalRecord.self, "SELECT * FROM eval WHERE id = $1", [.text(id)]).first { return exact }
        let matches = try records(EvalRecord.self, "SELECT * FROM eval WHERE starts_with(id, $1) LIMIT 2", [.text(id)])
        return matches.count == 1 ? matches[0] : nil
    }

    public func evalResults(of id: String) throws -> [EvalResultRecord] {
        try records(EvalResultRecord.self, "SELECT * FROM evalResult WHERE evalID = $1 ORDER BY caseIndex, rowOrder", [.text(id)])
    }
}

/// The PostgreSQL schema: the SQLite store's tables at schema v8, in PostgreSQL's types.
/// Names are left unquoted, so PostgreSQL folds them to lower case; rows read back get
/// their camelCase names again (`PostgresResult.grdbRows`). Versioned like SQLite's, in a
/// table of applied migrations, under an advisory lock so concurrent first openers on
/// many machines apply each migration once.
package enum PostgresSchema {
    static let migrations: [(String, String)] = [
        (
            "1 runs, steps, calls, tool calls, events, bodies, locks, search, evals",
            """
            CREATE TABLE run (
                id text PRIMARY KEY, workflow text NOT NULL, workflowPath text NOT NULL, inputsJSON text NOT NULL,
                status text NOT NULL, startedAt double precision NOT NULL, endedAt double precision, outputJSON text, error text,
                tokensIn bigint NOT NULL DEFAULT 0, tokensOut bigint NOT NULL DEFAULT 0, cost double precision NOT NULL DEFAULT 0,
                parentRunID text REFERENCES run(id) ON DELETE SET NULL, ownerPID bigint, ownerHost text, relation text,
                sealSeq bigint, configPath text);
            CREATE TABLE step (
                runID text NOT NULL REFERENCES run(id) ON DELETE CASCADE, path text NOT NULL, node text NOT NULL, kind text NOT NULL,
                itemIndex bigint, agent text, model text, status text NOT NULL, startedAt double precision NOT NULL,
                endedAt double precision, outputJSON text, provenanceJSON text, error text, attempts bigint NOT NULL DEFAULT 0,
                tokensIn bigint NOT NULL DEFAULT 0, tokensOut bigint NOT NULL DEFAULT 0, cost double precision NOT NULL DEFAULT 0,
                sealSeq bigint, PRIMARY KEY (runID, path));
            CREATE TABLE blob (hash text PRIMARY KEY, size bigint NOT NULL, bytes bytea NOT NULL, kind integer NOT NULL DEFAULT 0);
            CREATE TABLE blobPart (body text NOT NULL, part text NOT NULL, PRIMARY KEY (body, part));
            CREATE INDEX blobPart_part ON blobPart (part);
            CREATE TABLE modelCall (
                id bigserial PRIMARY KEY, runID text NOT NULL REFERENCES run(id) ON DELETE CASCADE, stepPath text NOT NULL,
                attempt bigint NOT NULL, model text NOT NULL, providerModel text NOT NULL, url text NOT NULL,
                requestHash text NOT NULL, responseHash text, httpStatus bigint, error text, tokensIn bigint NOT NULL,
                tokensOut bigint NOT NULL, cost double precision NOT NULL, latencyMs double precision NOT NULL,
                startedAt double precision NOT NULL, sealSeq bigint, finishReason text, firstTokenMs double precision, outcome text);
            CREATE INDEX modelCall_run_step ON modelCall (runID, stepPath, attempt);
            CREATE TABLE toolCall (
                id bigserial PRIMARY KEY, runID text NOT NULL REFERENCES run(id) ON DELETE CASCADE, stepPath text NOT NULL,
                attempt bigint NOT NULL, callIndex bigint NOT NULL, callID text NOT NULL, tool text NOT NULL, kind text NOT NULL,
                inputHash text NOT NULL, outputHash text NOT NULL, isError boolean NOT NULL, exitStatus bigint, error text,
                latencyMs double precision NOT NULL, startedAt double precision NOT NULL, sealSeq bigint);
            CREATE INDEX toolCall_run_step ON toolCall (runID, stepPath, attempt);
            CREATE TABLE event (
                runID text NOT NULL REFERENCES run(id) ON DELETE CASCADE, seq bigint NOT NULL, at double precision NOT NULL,
                kind text NOT NULL, stepPath text, detailJSON text, hash text, contentHash text, PRIMARY KEY (runID, seq));
            CREATE TABLE runLock (runID text PRIMARY KEY, ownerPID bigint NOT NULL, ownerHost text NOT NULL, acquiredAt double precision NOT NULL);
            CREATE TABLE blobText (hash text PRIMARY KEY, text text NOT NULL, tsv tsvector NOT NULL);
            CREATE INDEX blobText_tsv ON blobText USING gin (tsv);
            CREATE TABLE eval (
                id text PRIMARY KEY, workflow text NOT NULL, workflowPath text NOT NULL, casesPath text NOT NULL,
                casesDigest text NOT NULL, configPath text, variantsJSON text NOT NULL, optionsJSON text, status text NOT NULL,
                startedAt double precision NOT NULL, endedAt double precision, sourceEvalID text);
            CREATE TABLE evalResult (
                evalID text NOT NULL REFERENCES eval(id) ON DELETE CASCADE, variant text NOT NULL, caseID text NOT NULL,
                caseIndex bigint NOT NULL, runID text, runStatus text NOT NULL, passed boolean NOT NULL,
                score double precision NOT NULL, gradesJSON text NOT NULL, error text, cost double precision NOT NULL,
                tokensIn bigint NOT NULL, tokensOut bigint NOT NULL, calls bigint NOT NULL, latencyMs double precision NOT NULL,
                modelSteps bigint NOT NULL, escalatedSteps bigint NOT NULL, rowOrder bigserial, UNIQUE (evalID, variant, caseID));
            """
        ),
        (
            "2 the run queue of chorus submit and chorus worker",
            """
            CREATE TABLE runQueue (
                id text PRIMARY KEY, workflowPath text NOT NULL, configPath text NOT NULL, inputsJSON text NOT NULL,
                status text NOT NULL, submittedAt double precision NOT NULL, attempts bigint NOT NULL DEFAULT 0,
                runIDs text NOT NULL DEFAULT '', leaseOwner text, leaseExpiresAt double precision, finishedAt double precision, error text);
            CREATE INDEX runQueue_ready ON runQueue (status, submittedAt);
            """
        ),
        (
            "3 model concurrency slots shared by every worker",
            """
            CREATE TABLE modelSlot (key text NOT NULL, slot integer NOT NULL, holder text, expiresAt double precision,
                PRIMARY KEY (key, slot));
            """
        ),
        (
            "4 shared runs: steps leased by the workers of every machine",
            """
            CREATE TABLE sharedRun (
                runKey text PRIMARY KEY, runID text NOT NULL, workflowPath text NOT NULL, configPath text NOT NULL,
                status text NOT NULL, updatedAt double precision NOT NULL);
            CREATE TABLE stepTask (
                runKey text NOT NULL, path text NOT NULL, seq bigserial, node text NOT NULL, kind text NOT NULL, itemIndex bigint,
                agent text NOT NULL, variablesJSON text NOT NULL, status text NOT NULL, leaseOwner text,
                leaseExpiresAt double precision, leases bigint NOT NULL DEFAULT 0, queuedAt double precision NOT NULL,
                doneAt double precision, doneBy text, resultJSON text, collected boolean NOT NULL DEFAULT false,
                PRIMARY KEY (runKey, path));
            CREATE INDEX stepTask_ready ON stepTask (runKey, status, seq);
            CREATE INDEX stepTask_uncollected ON stepTask (runKey) WHERE status = 'done' AND NOT collected;
            """
        ),
        (
            "5 budgets and per-minute rate limits shared by every worker",
            """
            ALTER TABLE sharedRun ADD COLUMN budgetJSON text;
            CREATE TABLE sharedBudget (
                key text PRIMARY KEY, limitMicroUSD bigint, limitTokens bigint, limitCalls bigint,
                spentMicroUSD bigint NOT NULL DEFAULT 0, spentTokens bigint NOT NULL DEFAULT 0, spentCalls bigint NOT NULL DEFAULT 0);
            CREATE TABLE budgetHold (
                id bigserial PRIMARY KEY, key text NOT NULL, holder text NOT NULL, microUSD bigint NOT NULL, tokens bigint NOT NULL,
                expiresAt double precision NOT NULL);
            CREATE INDEX budgetHold_key ON budgetHold (key);
            CREATE FUNCTION chorus_budget_reserve(k text, usd bigint, toks bigint, who text, now double precision, lease double precision)
            RETURNS bigint AS $$
            DECLARE
                b record;
                held_usd bigint;
                held_tokens bigint;
                held_calls bigint;
                hold bigint;
            BEGIN
                -- Reservers take the key's lock in turn. A settle (one statement: its hold goes as its
                -- spending comes) does not: the budget and its holds are read in one statement, one
                -- snapshot, so a settle is seen whole or not at all (read apart, a settle between the
                -- two reads let a 101st call through a limit of 100).
                PERFORM pg_advisory_xact_lock(hashtext('chorus-budget:' || k));
                DELETE FROM budgetHold WHERE key = k AND expiresAt < now;
                SELECT s.*, (SELECT COALESCE(SUM(h.microUSD), 0) FROM budgetHold h WHERE h.key = k) AS heldUSD,
                       (SELECT COALESCE(SUM(h.tokens), 0) FROM budgetHold h WHERE h.key = k) AS heldTokens,
                       (SELECT COUNT(*) FROM budgetHold h WHERE h.key = k) AS heldCalls
                    INTO b FROM sharedBudget s WHERE s.key = k;
                IF NOT FOUND THEN RETURN -2; END IF;
                held_usd := b.heldUSD;
                held_tokens := b.heldTokens;
                held_calls := b.heldCalls;
                IF (b.limitMicroUSD IS NULL OR b.spentMicroUSD + held_usd + usd <= b.limitMicroUSD)
                   AND (b.limitTokens IS NULL OR b.spentTokens + held_tokens + toks <= b.limitTokens)
                   AND (b.limitCalls IS NULL OR b.spentCalls + held_calls + 1 <= b.limitCalls) THEN
                    INSERT INTO budgetHold (key, holder, microUSD, tokens, expiresAt) VALUES (k, who, usd, toks, now + lease)
                        RETURNING id INTO hold;
                    RETURN hold;
                END IF;
                IF held_calls > 0 THEN RETURN 0; END IF;
                RETURN -1;
            END $$ LANGUAGE plpgsql;
            CREATE TABLE rateUse (id bigserial PRIMARY KEY, key text NOT NULL, at double precision NOT NULL, tokens bigint NOT NULL);
            CREATE INDEX rateUse_key_at ON rateUse (key, at);
            CREATE FUNCTION chorus_rate_take(k text, rpm bigint, tpm bigint, toks bigint, now double precision)
            RETURNS double precision AS $$
            DECLARE
                n bigint;
                used bigint;
                oldest double precision;
                entry bigint;
            BEGIN
                PERFORM pg_advisory_xact_lock(hashtext('chorus-rate:' || k));
                DELETE FROM rateUse WHERE key = k AND at <= now - 60;
                SELECT COUNT(*), COALESCE(SUM(tokens), 0), MIN(at) INTO n, used, oldest FROM rateUse WHERE key = k;
                IF (rpm IS NULL OR n < rpm) AND (tpm IS NULL OR used + toks <= tpm OR used = 0) THEN
                    INSERT INTO rateUse (key, at, tokens) VALUES (k, now, toks) RETURNING id INTO entry;
                    RETURN entry;
                END IF;
                RETURN -GREATEST(oldest + 60 - now, 0.001);
            END $$ LANGUAGE plpgsql;
            """
        ),
    ]

    /// Applies the migrations not yet applied, each in its own transaction, holding an
    /// advisory lock (taken before reading which are applied) for the whole of it.
    package static func migrate(_ connection: PostgresConnection) throws {
        try connection.execute("SELECT pg_advisory_lock(7262011)")
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(7262011)") }
        try connection.execute("CREATE TABLE IF NOT EXISTS chorus_migrations (identifier text PRIMARY KEY, appliedAt double precision NOT NULL)")
        let applied = Set(try connection.query("SELECT identifier FROM chorus_migrations").strings(0))
        for (identifier, sql) in migrations where !applied.contains(identifier) {
            try connection.execute("BEGIN")
            do {
                try connection.execute(sql)
                try connection.query(
                    "INSERT INTO chorus_migrations (identifier, appliedAt) VALUES ($1, $2)",
                    [.text(identifier), .text(String(Date().timeIntervalSince1970))])
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Every column name of the schema, by its folded (lower-case) form.
    static let columnNames: [String: String] = {
        let names = """
            id workflow workflowPath inputsJSON status startedAt endedAt outputJSON error tokensIn tokensOut cost parentRunID
            ownerPID ownerHost relation sealSeq configPath runID path node kind itemIndex agent model provenanceJSON attempts
            hash size bytes body part stepPath attempt providerModel url requestHash responseHash httpStatus latencyMs
            finishReason firstTokenMs outcome callIndex callID tool inputHash outputHash isError exitStatus seq at detailJSON
            contentHash acquiredAt text casesPath casesDigest variantsJSON optionsJSON sourceEvalID evalID variant caseID caseIndex
            runStatus passed score gradesJSON calls modelSteps escalatedSteps role snippet rank identifier appliedAt
            submittedAt runIDs leaseOwner leaseExpiresAt finishedAt key slot holder expiresAt budgetJSON
            """.split(whereSeparator: \.isWhitespace).map(String.init)
        return Dictionary(names.map { ($0.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
    }()
}

extension PostgresResult {
    /// The rows as GRDB rows, with the schema's camelCase column names, so the record
    /// types decode them as they decode SQLite's.
    package func grdbRows() -> [Row] {
        let names = columns.map { PostgresSchema.columnNames[$0] ?? $0 }
        return rows.map { cells in
            var values: [String: (any DatabaseValueConvertible)?] = [:]
            for (index, cell) in cells.enumerated() {
                values[names[index]] = cell.map { Self.value($0, kinds[index]) } ?? nil
            }
            return Row(values)
        }
    }

    private static func value(_ cell: Cell, _ kind: Kind) -> any DatabaseValueConvertible {
        switch (cell, kind) {
        case (.bytes(let bytes), _): return Data(bytes)
        case (.text(let text), .integer): return Int64(text) ?? 0
        case (.text(let text), .real): return Double(text) ?? .nan
        case (.text(let text), .boolean): return Int64(text == "t" ? 1 : 0)
        case (.text(let text), _): return text
        }
    }

    /// Column `column` of every row, as text.
    package func strings(_ column: Int) -> [String] {
        rows.compactMap { if case .text(let text)? = $0[column] { text } else { nil } }
    }

    package func int(_ row: Int, _ column: Int) -> Int? {
        guard row < rows.count, case .text(let text)? = rows[row][column] else { return nil }
        return Int(text)
    }
}
