import Foundation
import GRDB
import PostgresClient

/// How `TraceWriter` commits to PostgreSQL: one transaction per batch, the same rows and
/// the same audit chain as `SQLiteWriteSession` (TraceChain), on the writer's own
/// connection. Rows of a kind are sent as multi-row INSERTs (up to 500 rows a statement):
/// one round trip per statement costs ~50 µs on loopback, more across machines, so a
/// statement per row would bound a busy writer at a few thousand rows a second.
final class PostgresWriteSession: TraceWriteSession {
    private let connection: PostgresConnection
    private var chains: [String: Chain] = [:]
    private struct Chain {
        var nextSeq: Int
        var lastHash: String
        var unsealed: [String] = []
    }

    /// The database, for messages (the URL without its password).
    private let location: String
    /// Set for a shared step's executor (`StagedSteps`): bodies are stored, every other
    /// change is kept for the run's coordinator, which writes it into the run's own chain.
    private let staging: StagedSteps?

    init(connection: PostgresConnection, location: String, staging: StagedSteps? = nil) {
        self.connection = connection
        self.location = location
        self.staging = staging
    }

    func commit(_ batch: [TraceChange]) throws {
        let saved = chains
        do {
            try connection.execute("BEGIN")
            try apply(batch)
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            chains = saved  // the chain state must not run ahead of what was committed
            if let error = error as? PostgresError { throw TraceStoreError(path: location, reason: PostgresTraceStore.describe(error)) }
            throw error
        }
    }

    private func apply(_ batch: [TraceChange]) throws {
        if let staging { return try stage(batch, into: staging) }
        var finishing = Set<[String]>()
        for change in batch {
            if case .step(let s) = change, TraceChain.isFinal(s.status) { finishing.insert([s.runID, s.path]) }
        }
        var pending = Pending()
        for change in batch {
            switch change {
            case .run(let r):
                // A run row goes at once: steps and calls refer to it.
                try pending.flush(connection)
                let seal = try sealSeq(r.id, final: r.status != .running) { TraceChain.digest(r) }
                try connection.query("""
                    INSERT INTO run (id, workflow, workflowPath, inputsJSON, status, startedAt, endedAt, outputJSON, error, tokensIn,
                    tokensOut, cost, parentRunID, relation, ownerPID, ownerHost, configPath, sealSeq)
                    VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)
                    ON CONFLICT (id) DO UPDATE SET status = excluded.status, endedAt = excluded.endedAt, outputJSON = excluded.outputJSON,
                    error = excluded.error, tokensIn = excluded.tokensIn, tokensOut = excluded.tokensOut, cost = excluded.cost,
                    sealSeq = excluded.sealSeq
                    """, [t(r.id), t(r.workflow), t(r.workflowPath), t(r.inputsJSON), t(r.status.rawValue), t(r.startedAt), t(r.endedAt),
                          t(r.outputJSON), t(r.error), t(r.tokensIn), t(r.tokensOut), t(r.cost), t(r.parentRunID), t(r.relation),
                          t(r.ownerPID.map(Int.init)), t(r.ownerHost), t(r.configPath), t(seal)])
            case .step(let s):
                let final = TraceChain.isFinal(s.status)
                if !final && finishing.contains([s.runID, s.path]) { continue }
                let seal = try sealSeq(s.runID, final: final) { TraceChain.digest(s) }
                // One statement may not upsert a row twice: a step's rows in one batch go in turn.
                if !pending.stepKeys.insert([s.runID, s.path]).inserted {
                    try pending.flush(connection)
                    pending.stepKeys.insert([s.runID, s.path])
                }
                pending.steps.append([t(s.runID), t(s.path), t(s.node), t(s.kind), t(s.itemIndex), t(s.agent), t(s.model), t(s.status.rawValue),
                                      t(s.startedAt), t(s.endedAt), t(s.outputJSON), t(s.provenanceJSON), t(s.error), t(s.attempts),
                                      t(s.tokensIn), t(s.tokensOut), t(s.cost), t(seal)])
            case .modelCall(var c, let request, let response):
                c.requestHash = TraceStore.hash(request)
                c.responseHash = response.map(TraceStore.hash)
                storeRequest(request, hash: c.requestHash, &pending)
                if let response, let hash = c.responseHash { pending.blob(hash, response, kind: 0) }
                try pending.calls.append(callRow(c))
            case .copiedModelCall(let c):
                try pending.calls.append(callRow(c))
            case .toolCall(var tc, let input, let output):
                tc.inputHash = TraceStore.hash(input)
                tc.outputHash = TraceStore.hash(output)
                pending.blob(tc.inputHash, input, kind: 0)
                pending.blob(tc.outputHash, output, kind: 0)
                try pending.tools.append(toolRow(tc))
            case .copiedToolCall(let tc):
                try pending.tools.append(toolRow(tc))
            case .eval(let e):
                try pending.flush(connection)
                try upsert(e, table: "eval", conflict: "id")
            case .evalResult(let r):
                try pending.flush(connection)
                try upsert(r, table: "evalResult", conflict: "evalID, variant, caseID")
            case .event(let runID, let kind, let stepPath, let detail, let at):
                var chain = try self.chain(runID)
                let content = TraceChain.contentHash(chain.unsealed)
                let hash = TraceChain.eventHash(previous: chain.lastHash, runID: runID, seq: chain.nextSeq, at: at, kind: kind,
                                                stepPath: stepPath, detailJSON: detail, contentHash: content)
                pending.events.append([t(runID), t(chain.nextSeq), t(at), t(kind), t(stepPath), t(detail), t(hash), t(content)])
                chain.nextSeq += 1
                chain.lastHash = hash
                chain.unsealed.removeAll(keepingCapacity: true)
                chains[runID] = chain
            }
        }
        try pending.flush(connection)
    }

    /// A staged batch: the bodies go to the database now (content-addressed, so a copy
    /// the coordinator makes refers to them); the records wait in `staging` for the step's
    /// result. Nothing is chained here: the run's chain has one writer, its coordinator.
    private func stage(_ batch: [TraceChange], into staging: StagedSteps) throws {
        var pending = Pending()
        for change in batch {
            switch change {
            case .modelCall(var c, let request, let response):
                c.requestHash = TraceStore.hash(request)
                c.responseHash = response.map(TraceStore.hash)
                storeRequest(request, hash: c.requestHash, &pending)
                if let response, let hash = c.responseHash { pending.blob(hash, response, kind: 0) }
                staging.add(.modelCall(c, request: [], response: nil))
            case .toolCall(var tc, let input, let output):
                tc.inputHash = TraceStore.hash(input)
                tc.outputHash = TraceStore.hash(output)
                pending.blob(tc.inputHash, input, kind: 0)
                pending.blob(tc.outputHash, output, kind: 0)
                staging.add(.toolCall(tc, input: [], output: []))
            default:
                staging.add(change)
            }
        }
        try pending.flush(connection)
    }

    private func callRow(_ c: ModelCallRecord) throws -> [PostgresValue?] {
        let seal = try sealSeq(c.runID, final: true) { TraceChain.digest(c) }
        return [t(c.runID), t(c.stepPath), t(c.attempt), t(c.model), t(c.providerModel), t(c.url), t(c.requestHash), t(c.responseHash),
                t(c.httpStatus), t(c.error), t(c.tokensIn), t(c.tokensOut), t(c.cost), t(c.latencyMs), t(c.startedAt), t(c.finishReason),
                t(c.firstTokenMs), t(c.outcome?.rawValue), t(seal)]
    }

    private func toolRow(_ c: ToolCallRecord) throws -> [PostgresValue?] {
        let seal = try sealSeq(c.runID, final: true) { TraceChain.digest(c) }
        return [t(c.runID), t(c.stepPath), t(c.attempt), t(c.callIndex), t(c.callID), t(c.tool), t(c.kind), t(c.inputHash), t(c.outputHash),
                t(c.isError ? "true" : "false"), t(c.exitStatus), t(c.error), t(c.latencyMs), t(c.startedAt), t(seal)]
    }

    /// A request body, its long strings stored once as parts (BodyParts), as SQLite does.
    private func storeRequest(_ bytes: [UInt8], hash: String, _ pending: inout Pending) {
        guard BodyParts.mayHaveParts(bytes), let (skeleton, parts) = BodyParts.split(bytes) else {
            return pending.blob(hash, bytes, kind: 0)
        }
        pending.blob(hash, skeleton, kind: 1, size: bytes.count)
        for part in parts {
            pending.blob(part.hash, part.bytes, kind: 2)
            pending.parts.append([t(hash), t(part.hash)])
        }
    }

    /// An eval row or result through its GRDB encoding: every column it has, upserted.
    private func upsert(_ record: some EncodableRecord, table: String, conflict: String) throws {
        let values = try record.databaseDictionary.sorted { $0.key < $1.key }
        let columns = values.map(\.key)
        let updates = columns.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        try connection.query("""
            INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\((1...columns.count).map { "$\($0)" }.joined(separator: ", ")))
            ON CONFLICT (\(conflict)) DO UPDATE SET \(updates)
            """, values.map { Self.parameter($0.value) })
    }

    private static func parameter(_ value: DatabaseValue) -> PostgresValue? {
        switch value.storage {
        case .null: return nil
        case .int64(let int): return .text(String(int))
        case .double(let double): return .text(double.description)
        case .string(let string): return .text(string)
        case .blob(let data): return .bytes(Array(data))
        }
    }

    private func sealSeq(_ runID: String, final: Bool, digest: () -> String) throws -> Int? {
        guard final else { return nil }
        var chain = try self.chain(runID)
        chain.unsealed.append(digest())
        chains[runID] = chain
        return chain.nextSeq
    }

    private func chain(_ runID: String) throws -> Chain {
        if let known = chains[runID] { return known }
        let last = try connection.query("SELECT seq, hash FROM event WHERE runID = $1 ORDER BY seq DESC LIMIT 1", [.text(runID)])
        guard let row = last.rows.first, case .text(let seq)? = row[0], let number = Int(seq) else {
            return Chain(nextSeq: 1, lastHash: TraceChain.origin)
        }
        if case .text(let hash)? = row[1] { return Chain(nextSeq: number + 1, lastHash: hash) }
        return Chain(nextSeq: number + 1, lastHash: TraceChain.origin)
    }
}

/// Rows waiting to go as multi-row INSERTs, in an order that keeps references sound:
/// bodies, then steps, calls, tool calls, parts, events.
private struct Pending {
    var blobs: [[PostgresValue?]] = []
    var blobHashes = Set<String>()
    var steps: [[PostgresValue?]] = []
    var stepKeys = Set<[String]>()
    var calls: [[PostgresValue?]] = []
    var tools: [[PostgresValue?]] = []
    var parts: [[PostgresValue?]] = []
    var events: [[PostgresValue?]] = []

    mutating func blob(_ hash: String, _ bytes: [UInt8], kind: Int, size: Int? = nil) {
        guard blobHashes.insert(hash).inserted else { return }
        blobs.append([.text(hash), .text(String(size ?? bytes.count)), .bytes(bytes), .text(String(kind))])
    }

    mutating func flush(_ connection: PostgresConnection) throws {
        try insert(&blobs, connection, "INSERT INTO blob (hash, size, bytes, kind) VALUES", "ON CONFLICT (hash) DO NOTHING")
        blobHashes.removeAll(keepingCapacity: true)
        stepKeys.removeAll(keepingCapacity: true)
        try insert(&steps, connection, """
            INSERT INTO step (runID, path, node, kind, itemIndex, agent, model, status, startedAt, endedAt, outputJSON, provenanceJSON,
            error, attempts, tokensIn, tokensOut, cost, sealSeq) VALUES
            """, """
            ON CONFLICT (runID, path) DO UPDATE SET node = excluded.node, kind = excluded.kind, itemIndex = excluded.itemIndex,
            agent = excluded.agent, model = excluded.model, status = excluded.status, startedAt = excluded.startedAt,
            endedAt = excluded.endedAt, outputJSON = excluded.outputJSON, provenanceJSON = excluded.provenanceJSON,
            error = excluded.error, attempts = excluded.attempts, tokensIn = excluded.tokensIn, tokensOut = excluded.tokensOut,
            cost = excluded.cost, sealSeq = excluded.sealSeq
            """)
        try insert(&calls, connection, """
            INSERT INTO modelCall (runID, stepPath, attempt, model, providerModel, url, requestHash, responseHash, httpStatus, error,
            tokensIn, tokensOut, cost, latencyMs, startedAt, finishReason, firstTokenMs, outcome, sealSeq) VALUES
            """, "")
        try insert(&tools, connection, """
            INSERT INTO toolCall (runID, stepPath, attempt, callIndex, callID, tool, kind, inputHash, outputHash, isError, exitStatus,
            error, latencyMs, startedAt, sealSeq) VALUES
            """, "")
        try insert(&parts, connection, "INSERT INTO blobPart (body, part) VALUES", "ON CONFLICT DO NOTHING")
        try insert(&events, connection, "INSERT INTO event (runID, seq, at, kind, stepPath, detailJSON, hash, contentHash) VALUES", "")
    }

    /// Sends `rows` as INSERTs of up to 500 rows (PostgreSQL takes at most 65,535 parameters).
    private func insert(_ rows: inout [[PostgresValue?]], _ connection: PostgresConnection, _ head: String, _ tail: String) throws {
        guard let width = rows.first?.count else { return }
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(start + 500, rows.count)]
            var sql = head
            var number = 1
            for (index, _) in chunk.enumerated() {
                sql += index == 0 ? " (" : ", ("
                for column in 0..<width {
                    sql += (column == 0 ? "$" : ",$") + String(number)
                    number += 1
                }
                sql += ")"
            }
            sql += " " + tail
            try connection.query(sql, chunk.flatMap { $0 })
            start += 500
        }
        rows.removeAll(keepingCapacity: true)
    }
}

private func t(_ value: String?) -> PostgresValue? { value.map { .text($0) } }
private func t(_ value: Int?) -> PostgresValue? { value.map { .text(String($0)) } }
private func t(_ value: Double?) -> PostgresValue? { value.map { .text($0.description) } }
