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
    private var planner = TraceBatchPlanner()
    /// The plan of the batch being committed, its capacity kept from batch to batch.
    private var writes: [TraceRowWrite] = []
    private var pending = Pending()

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
        let saved = planner.checkpoint
        do {
            try connection.execute("BEGIN")
            writes.removeAll(keepingCapacity: true)
            if let staging {
                for record in planner.stage(batch, into: &writes) { staging.add(record) }
            } else {
                // Not asked whether a body is stored: a round trip per request costs more than the parse it saves.
                try planner.plan(batch, into: &writes, lastEvent: lastEvent, isStored: { _ in false })
            }
            try execute(writes)
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            pending = Pending()
            planner.restore(saved)
            if let error = error as? PostgresError { throw TraceStoreError(path: location, reason: PostgresTraceStore.describe(error)) }
            throw error
        }
    }

    /// Sends the plan's rows, those of a kind together (Pending); a run, an eval or a step
    /// already in the statement being gathered sends what is gathered first.
    private func execute(_ writes: [TraceRowWrite]) throws {
        for write in writes {
            switch write {
            case .run(let r, let seal):
                // A run row goes at once: steps and calls refer to it.
                try pending.flush(connection)
                var row = PostgresRows(table: .run)
                r.bind(sealSeq: seal, to: &row)
                try row.send(connection)
            case .step(let s, let seal):
                // One statement may not upsert a row twice: a step's rows in one batch go in turn.
                if !pending.stepKeys.insert(TraceBatchPlanner.StepKey(runID: s.runID, path: s.path)).inserted {
                    try pending.flush(connection)
                    pending.stepKeys.insert(TraceBatchPlanner.StepKey(runID: s.runID, path: s.path))
                }
                s.bind(sealSeq: seal, to: &pending.steps)
            case .modelCall(let c, let seal):
                c.bind(sealSeq: seal, to: &pending.calls)
            case .toolCall(let t, let seal):
                t.bind(sealSeq: seal, to: &pending.tools)
            case .body(let body):
                body.bind(to: &pending.blobs)
            case .bodyPart(let body, let part):
                pending.parts.add(body)
                pending.parts.add(part)
            case .event(let event):
                event.bind(to: &pending.events)
            case .eval(let e):
                try pending.flush(connection)
                try upsert(e, table: "eval", conflict: "id")
            case .evalResult(let r):
                try pending.flush(connection)
                try upsert(r, table: "evalResult", conflict: "evalID, variant, caseID")
            }
        }
        try pending.flush(connection)
    }

    /// An eval row or result through its GRDB encoding: every column it has, upserted.
    private func upsert(_ record: some EncodableRecord, table: String, conflict: String) throws {
        let values = try record.databaseDictionary.sorted { $0.key < $1.key }
        let columns = values.map(\.key)
        let updates = columns.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        try connection.query(
            """
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

    private func lastEvent(_ runID: String) throws -> (seq: Int, hash: String) { try PostgresTraceStore.lastEvent(runID, connection) }
}

/// Rows waiting to go as multi-row INSERTs, in an order that keeps references sound:
/// bodies, then steps, calls, tool calls, parts, events.
private struct Pending {
    var blobs = PostgresRows(table: .blob)
    var steps = PostgresRows(table: .step)
    var stepKeys = Set<TraceBatchPlanner.StepKey>()
    var calls = PostgresRows(table: .modelCall)
    var tools = PostgresRows(table: .toolCall)
    var parts = PostgresRows(table: .blobPart)
    var events = PostgresRows(table: .event)

    mutating func flush(_ connection: PostgresConnection) throws {
        stepKeys.removeAll(keepingCapacity: true)
        try blobs.send(connection)
        try steps.send(connection)
        try calls.send(connection)
        try tools.send(connection)
        try parts.send(connection)
        try events.send(connection)
    }
}

/// Rows of one table gathered as PostgreSQL text parameters, one flat list (no array per
/// row), sent as INSERTs of up to 500 rows: PostgreSQL takes at most 65,535 parameters.
struct PostgresRows: TraceRowSink {
    let table: TraceTable
    private var values: [PostgresValue?] = []

    init(table: TraceTable) { self.table = table }

    mutating func add(_ value: String?) { values.append(value.map { .text($0) }) }
    mutating func add(_ value: Int?) { values.append(value.map { .text(String($0)) }) }
    mutating func add(_ value: Double?) { values.append(value.map { .text($0.description) }) }
    mutating func add(_ value: Bool) { values.append(.text(value ? "true" : "false")) }
    mutating func add(bytes: [UInt8]) { values.append(.bytes(bytes)) }

    mutating func send(_ connection: PostgresConnection) throws {
        let width = table.columns.count
        var start = 0
        while start < values.count {
            let end = min(start + 500 * width, values.count)
            try connection.query(table.insertSQL(rows: (end - start) / width, .postgres), Array(values[start..<end]))
            start = end
        }
        values.removeAll(keepingCapacity: true)
    }
}
