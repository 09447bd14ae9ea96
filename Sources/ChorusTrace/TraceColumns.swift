import SQLiteStatement

/// Where a row's values go, in its table's column order: a prepared SQLite statement binds
/// them (RowInsert), a PostgreSQL insert collects them as text. Generic rather than an
/// array of values, so the writer's hot loop boxes nothing.
protocol TraceRowSink {
    mutating func add(_ value: String?)
    mutating func add(_ value: Int?)
    mutating func add(_ value: Double?)
    mutating func add(_ value: Bool)
    mutating func add(bytes: [UInt8])
}

/// A table the trace writer fills: its columns in the order a row binds them, and what
/// an insert does when the row's key is there already. Both backends' INSERTs are made
/// from it, so a record's columns are listed once (here) and its values once (its
/// `bind(to:)` below, next to the list).
struct TraceTable: Sendable {
    let name: String
    let columns: [String]
    let conflict: Conflict

    enum Conflict: Sendable {
        /// Always a new row (an autoincremented id, or a key nothing else writes).
        case none
        /// The row already there is kept: content-addressed bodies and their parts.
        case keep(key: String?)
        /// The row already there takes these columns from the new one: runs and steps,
        /// rewritten as they progress. Never a replace, which is a delete and would cascade
        /// to the run's steps and calls.
        case update(key: String, columns: [String])
    }

    /// The SQL each backend speaks.
    enum Dialect {
        /// `?` parameters; a row kept is `INSERT OR IGNORE`: with `ON CONFLICT DO NOTHING`
        /// SQLite seeks the (random) body hash a second time, and a 10,000-step run took
        /// ~0.05 ms more CPU per step (perf: SQLite's share 6.7% → 7.4%).
        case sqlite
        /// `$n` parameters, many rows a statement; a row kept is `ON CONFLICT … DO NOTHING`.
        case postgres
    }

    /// `INSERT INTO name (columns) VALUES (…), (…)` for `rows` rows, with what a conflict does.
    func insertSQL(rows: Int = 1, _ dialect: Dialect) -> String {
        var sql = "INSERT INTO \(name) (\(columns.joined(separator: ", "))) VALUES "
        if case (.keep, .sqlite) = (conflict, dialect) { sql = "INSERT OR IGNORE" + sql.dropFirst("INSERT".count) }
        var number = 1
        for row in 0..<rows {
            sql += row == 0 ? "(" : ", ("
            for column in columns.indices {
                if column > 0 { sql += "," }
                sql += dialect == .sqlite ? "?" : "$" + String(number)
                number += 1
            }
            sql += ")"
        }
        switch conflict {
        case .none: break
        case .keep(let key): if dialect == .postgres { sql += " ON CONFLICT" + (key.map { " (\($0))" } ?? "") + " DO NOTHING" }
        case .update(let key, let updates):
            sql += " ON CONFLICT (\(key)) DO UPDATE SET " + updates.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        }
        return sql
    }
}

extension TraceTable {
    static let run = TraceTable(
        name: "run",
        columns: [
            "id", "workflow", "workflowPath", "inputsJSON", "status", "startedAt", "endedAt", "outputJSON", "error", "tokensIn",
            "tokensOut", "cost", "parentRunID", "relation", "ownerPID", "ownerHost", "configPath", "sealSeq",
        ],
        // Who ran it, with what and from where never changes once the run is started.
        conflict: .update(key: "id", columns: ["status", "endedAt", "outputJSON", "error", "tokensIn", "tokensOut", "cost", "sealSeq"]))

    static let step = TraceTable(
        name: "step",
        columns: [
            "runID", "path", "node", "kind", "itemIndex", "agent", "model", "status", "startedAt", "endedAt", "outputJSON",
            "provenanceJSON", "error", "attempts", "tokensIn", "tokensOut", "cost", "sealSeq",
        ],
        conflict: .update(
            key: "runID, path",
            columns: [
                "node", "kind", "itemIndex", "agent", "model", "status", "startedAt", "endedAt",
                "outputJSON", "provenanceJSON", "error", "attempts", "tokensIn", "tokensOut",
                "cost", "sealSeq",
            ]))

    static let modelCall = TraceTable(
        name: "modelCall",
        columns: [
            "runID", "stepPath", "attempt", "model", "providerModel", "url", "requestHash", "responseHash", "httpStatus", "error",
            "tokensIn", "tokensOut", "cost", "latencyMs", "startedAt", "finishReason", "firstTokenMs", "outcome", "sealSeq",
        ],
        conflict: .none)

    static let toolCall = TraceTable(
        name: "toolCall",
        columns: [
            "runID", "stepPath", "attempt", "callIndex", "callID", "tool", "kind", "inputHash", "outputHash", "isError",
            "exitStatus", "error", "latencyMs", "startedAt", "sealSeq",
        ],
        conflict: .none)

    /// Bodies: kind 0 whole, 1 a skeleton whose long strings are parts, 2 a part (BodyParts).
    static let blob = TraceTable(name: "blob", columns: ["hash", "size", "bytes", "kind"], conflict: .keep(key: "hash"))

    /// Which skeleton uses which part.
    static let blobPart = TraceTable(name: "blobPart", columns: ["body", "part"], conflict: .keep(key: nil))

    static let event = TraceTable(
        name: "event", columns: ["runID", "seq", "at", "kind", "stepPath", "detailJSON", "hash", "contentHash"], conflict: .none)
}

extension RunRecord {
    /// The run's row, sealed by event `sealSeq` (nil while it runs): TraceTable.run's columns.
    func bind(sealSeq: Int?, to row: inout some TraceRowSink) {
        row.add(id); row.add(workflow); row.add(workflowPath); row.add(inputsJSON); row.add(status.rawValue); row.add(startedAt)
        row.add(endedAt); row.add(outputJSON); row.add(error); row.add(tokensIn); row.add(tokensOut); row.add(cost); row.add(parentRunID)
        row.add(relation?.rawValue); row.add(ownerPID.map(Int.init)); row.add(ownerHost); row.add(configPath); row.add(sealSeq)
    }
}

extension StepRecord {
    /// TraceTable.step's columns.
    func bind(sealSeq: Int?, to row: inout some TraceRowSink) {
        row.add(runID); row.add(path); row.add(node); row.add(kind); row.add(itemIndex); row.add(agent); row.add(model)
        row.add(status.rawValue); row.add(startedAt); row.add(endedAt); row.add(outputJSON); row.add(provenanceJSON); row.add(error)
        row.add(attempts); row.add(tokensIn); row.add(tokensOut); row.add(cost); row.add(sealSeq)
    }
}

extension ModelCallRecord {
    /// TraceTable.modelCall's columns.
    func bind(sealSeq: Int?, to row: inout some TraceRowSink) {
        row.add(runID); row.add(stepPath); row.add(attempt); row.add(model); row.add(providerModel); row.add(url); row.add(requestHash)
        row.add(responseHash); row.add(httpStatus); row.add(error); row.add(tokensIn); row.add(tokensOut); row.add(cost); row.add(latencyMs)
        row.add(startedAt); row.add(finishReason); row.add(firstTokenMs); row.add(outcome?.rawValue); row.add(sealSeq)
    }
}

extension ToolCallRecord {
    /// TraceTable.toolCall's columns.
    func bind(sealSeq: Int?, to row: inout some TraceRowSink) {
        row.add(runID); row.add(stepPath); row.add(attempt); row.add(callIndex); row.add(callID); row.add(tool); row.add(kind)
        row.add(inputHash); row.add(outputHash); row.add(isError); row.add(exitStatus); row.add(error); row.add(latencyMs)
        row.add(startedAt); row.add(sealSeq)
    }
}

/// A body's row: its content hash, its size whole, and the bytes stored (the whole body,
/// a skeleton or a part).
struct BodyRow: Equatable, Sendable {
    var hash: String
    var size: Int
    var bytes: [UInt8]
    var kind: Kind

    enum Kind: Int, Sendable {
        case whole = 0, skeleton = 1, part = 2
    }

    /// TraceTable.blob's columns.
    func bind(to row: inout some TraceRowSink) {
        row.add(hash); row.add(size); row.add(bytes: bytes); row.add(kind.rawValue)
    }
}

/// An event as stored: its place in the run's log and its link in the audit chain.
struct EventRow: Equatable, Sendable {
    var runID: String
    var seq: Int
    var at: Double
    var kind: String
    var stepPath: String?
    var detailJSON: String?
    /// TraceChain.eventHash, chained to the event before.
    var hash: String
    /// TraceChain.contentHash of the rows it seals.
    var contentHash: String

    /// TraceTable.event's columns.
    func bind(to row: inout some TraceRowSink) {
        row.add(runID); row.add(seq); row.add(at); row.add(kind); row.add(stepPath); row.add(detailJSON); row.add(hash); row.add(contentHash)
    }
}

/// A prepared statement binds a row's values as they come.
extension RowInsert: TraceRowSink {
    func add(_ value: String?) { bind(value) }
    func add(_ value: Int?) { bind(value) }
    func add(_ value: Double?) { bind(value) }
    func add(_ value: Bool) { bind(value ? 1 : 0) }
    func add(bytes: [UInt8]) { bind(bytes: bytes) }
}
