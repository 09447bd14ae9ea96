@testable import ChorusTrace
import Crypto
import Foundation
import GRDB
import PostgresClient
import Testing
import TestSupport

/// A known set of batches, committed through each backend's write session, stores the
/// rows, bodies, parts, seals and event hashes it stored before the write path was shared
/// (issue 25): the constants were taken from the two sessions as they were. A change here
/// would leave old runs unverifiable, or two backends disagreeing on one run.
@Suite struct TraceWriteGoldenTests {
    /// Every stored row of the trace tables, one line each, hashed: SQLite's and PostgreSQL's
    /// own renderings differ (types, booleans), so each has its constant.
    static let sqliteTables = "1e3f9970490ef02e22e90a6d9eaf56a79d9f9d4dbc1c032aa5bab7e360b26aeb"
    static let postgresTables = "05c9d7c03edd5d0a5a8bbb071e9ba322cb6b5269bfb96f6983615d737a754d18"
    /// The last event's hash of each run: the chain commits to every sealed row and event,
    /// and is the same on both backends.
    static let heads = [
        "g1": "d7f47fc7f2d086ffa77554837efa81023b05f5a03427646cf419311bab12ed93",
        "g2": "d04f8b97a81e788d96a62ed21b3203b2896567def319ef4f044097d4951af582",
    ]
    /// A shared step's executor: the bodies it stores and the records it stages for the
    /// run's coordinator (the same on both backends).
    static let stagedBodies = "395c82e884774cab70f7dac4099e7152ba3f7e49f622907fc29333df21e2334a"
    static let stagedRecords = "a64709ca1580bc39e7f211b0ec64596d30b3bfb7a87536fb9b3b11cffff9c0db"

    @Test(arguments: BackendKind.all) func aKnownBatchIsStoredAsItAlwaysWas(_ kind: BackendKind) throws {
        let (backend, dump) = try Self.open(kind)
        let session = try backend.makeWriteSession()
        for batch in Self.batches { try session.commit(batch) }
        #expect(try backend.verify("g1").intact && backend.verify("g2").intact)
        let tables = try dump()
        let expected = kind.description == "sqlite" ? Self.sqliteTables : Self.postgresTables
        #expect(TraceStore.hash(Array(tables.joined(separator: "\n").utf8)) == expected, "\(tables.joined(separator: "\n"))")
        var heads: [String: String] = [:]
        for line in tables where line.hasPrefix("event|") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false)
            heads[String(cells[1])] = String(cells[7])
        }
        #expect(heads == Self.heads)
    }

    @Test(arguments: BackendKind.all) func aSharedStepsExecutorStagesAsItAlwaysDid(_ kind: BackendKind) throws {
        let (backend, dump) = try Self.open(kind)
        let staged = StagedSteps()
        let session = try backend.makeWriteSession(staging: staged)
        for batch in Self.batches.prefix(2) { try session.commit(batch) }
        let bodies = try dump().filter { $0.hasPrefix("blob") }
        #expect(TraceStore.hash(Array(bodies.joined(separator: "\n").utf8)) == Self.stagedBodies, "\(bodies.joined(separator: "\n"))")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let records = try ["research/0", "research/1"].map { String(decoding: try encoder.encode(staged.take($0)), as: UTF8.self) }
        #expect(TraceStore.hash(Array(records.joined(separator: "\n").utf8)) == Self.stagedRecords, "\(records.joined(separator: "\n"))")
        #expect(try backend.counts()["modelCall"] == 0 && backend.counts()["event"] == 0, "the coordinator writes the records")
    }

    /// The tables the write path fills, each in an order that does not depend on the backend.
    static let tables: [(name: String, order: String)] = [
        ("run", "id"), ("step", "runID, path"), ("modelCall", "id"), ("toolCall", "id"), ("blob", "hash"),
        ("blobPart", "body, part"), ("event", "runID, seq"), ("eval", "id"), ("evalResult", "evalID, variant, caseID"),
    ]

    /// A fresh database of `kind`, and a function that renders its tables as lines
    /// (`table|cell|cell…`, a blob cell as the SHA-256 of its bytes).
    static func open(_ kind: BackendKind) throws -> (any TraceBackend, () throws -> [String]) {
        if kind.description == "sqlite" {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("golden-\(UUID().uuidString)/chorus.db").path
            let store = try TraceStore(path: path)
            return (
                store,
                {
                    try store.pool.read { db in
                        var lines: [String] = []
                        for table in tables {
                            for row in try Row.fetchAll(db, sql: "SELECT * FROM \(table.name) ORDER BY \(table.order)") {
                                let cells = row.databaseValues.map { value -> String in
                                    switch value.storage {
                                    case .null: "∅"
                                    case .int64(let int): String(int)
                                    case .double(let double): double.description
                                    case .string(let string): string
                                    case .blob(let data): "#" + TraceStore.hash(Array(data))
                                    }
                                }
                                lines.append(([table.name] + cells).joined(separator: "|"))
                            }
                        }
                        return lines
                    }
                }
            )
        }
        let url = try newPostgresDatabase()
        let store = try PostgresTraceStore(url: url)
        let connection = try PostgresConnection(url: url)
        return (
            store,
            {
                var lines: [String] = []
                for table in tables {
                    let result = try connection.query("SELECT * FROM \(table.name) ORDER BY \(table.order)")
                    for row in result.rows {
                        let cells = row.map { cell -> String in
                            switch cell {
                            case nil: "∅"
                            case .text(let text)?: text
                            case .bytes(let bytes)?: "#" + TraceStore.hash(bytes)
                            }
                        }
                        lines.append(([table.name] + cells).joined(separator: "|"))
                    }
                }
                return lines
            }
        )
    }

    /// Two runs (the second resumes the first) over three batches: a step whose running and
    /// final rows share a batch and one whose do not, a request with long strings (parts)
    /// sent twice, a response, tool calls, copies of calls already stored, failed and
    /// cancelled rows, events with and without a step, and an eval.
    static let batches: [[TraceChange]] = {
        let system = String(repeating: "You are a careful researcher; cite every source you use. ", count: 20)
        let request = Array(#"{"messages":[{"content":"\#(system)","role":"system"},{"content":"Compare herons and egrets","role":"user"}],"model":"m"}"#.utf8)
        let short = Array(#"{"messages":[{"content":"hi","role":"user"}],"model":"m"}"#.utf8)
        let response = Array(#"{"choices":[{"message":{"content":"Herons are larger."}}]}"#.utf8)
        var run = RunRecord(id: "g1", workflow: "w", workflowPath: "w.json", inputsJSON: #"{"q":"birds"}"#, startedAt: 100, ownerPID: nil)
        run.configPath = "chorus.json"
        func call(_ runID: String, _ path: String, attempt: Int, at: Double) -> ModelCallRecord {
            ModelCallRecord(
                runID: runID, stepPath: path, attempt: attempt, model: "small", providerModel: "sim-small",
                url: "http://127.0.0.1:1/v1/chat/completions", requestHash: "", responseHash: nil, httpStatus: 200, error: nil,
                tokensIn: 120, tokensOut: 30, cost: 0.000125, latencyMs: 12.5, startedAt: at, finishReason: "stop",
                firstTokenMs: 3.25, outcome: .answered)
        }
        var a = StepRecord(runID: "g1", path: "research/0", node: "research", kind: "item", itemIndex: 0, agent: "researcher", startedAt: 101)
        var b = StepRecord(runID: "g1", path: "research/1", node: "research", kind: "item", itemIndex: 1, agent: "researcher", startedAt: 101.5)
        var first: [TraceChange] = [
            .run(run),
            .event(runID: "g1", .runStarted, stepPath: nil, detailJSON: #"{"inputs":{"q":"birds"}}"#, at: 100),
            .step(a), .step(b),
        ]
        first.append(.modelCall(call("g1", a.path, attempt: 1, at: 102), request: request, response: response))
        var failed = call("g1", a.path, attempt: 2, at: 102.5)
        failed.httpStatus = 500
        failed.error = "HTTP 500"
        failed.outcome = .failed
        failed.finishReason = nil
        failed.firstTokenMs = nil
        first.append(.modelCall(failed, request: request, response: nil))
        var tool = ToolCallRecord(
            runID: "g1", stepPath: a.path, attempt: 1, callIndex: 0, callID: "call_1", tool: "search", kind: "http",
            isError: false, exitStatus: 200, error: nil, latencyMs: 4, startedAt: 102.2)
        first.append(.toolCall(tool, input: Array(#"{"q":"heron"}"#.utf8), output: Array(#"{"hits":3}"#.utf8)))
        a.status = .succeeded
        a.endedAt = 103
        a.model = "small"
        a.outputJSON = #"{"answer":"Herons are larger."}"#
        a.attempts = 2
        a.tokensIn = 240
        a.tokensOut = 60
        a.cost = 0.00025
        first.append(.step(a))
        first.append(.event(runID: "g1", .stepSucceeded, stepPath: a.path, detailJSON: #"{"model":"small"}"#, at: 103))

        var second: [TraceChange] = [.modelCall(call("g1", b.path, attempt: 1, at: 104), request: short, response: response)]
        tool.stepPath = b.path
        tool.isError = true
        tool.exitStatus = nil
        tool.error = "timed out"
        second.append(.toolCall(tool, input: Array(#"{"q":"egret"}"#.utf8), output: Array(#"{"error":"timed out"}"#.utf8)))
        b.status = .failed
        b.endedAt = 105
        b.error = "research/1: timed out"
        b.attempts = 1
        second.append(.step(b))
        second.append(.event(runID: "g1", .stepFailed, stepPath: b.path, detailJSON: #"{"error":"timed out"}"#, at: 105))
        run.status = .interrupted
        run.endedAt = 106
        run.error = "interrupted"
        run.tokensIn = 360
        run.tokensOut = 90
        run.cost = 0.000375
        second.append(.run(run))
        second.append(.event(runID: "g1", .runInterrupted, stepPath: nil, detailJSON: nil, at: 106))

        var resumed = RunRecord(id: "g2", workflow: "w", workflowPath: "w.json", inputsJSON: #"{"q":"birds"}"#, startedAt: 200, ownerPID: nil)
        resumed.parentRunID = "g1"
        resumed.relation = .resume
        var third: [TraceChange] = [
            .run(resumed),
            .event(runID: "g2", .runStarted, stepPath: nil, detailJSON: #"{"resumes":"g1"}"#, at: 200),
        ]
        var copied = call("g2", a.path, attempt: 1, at: 102)
        copied.requestHash = TraceStore.hash(request)
        copied.responseHash = TraceStore.hash(response)
        third.append(.copiedModelCall(copied))
        var copiedTool = ToolCallRecord(
            runID: "g2", stepPath: a.path, attempt: 1, callIndex: 0, callID: "call_1", tool: "search", kind: "http",
            isError: false, exitStatus: 200, error: nil, latencyMs: 4, startedAt: 102.2)
        copiedTool.inputHash = TraceStore.hash(Array(#"{"q":"heron"}"#.utf8))
        copiedTool.outputHash = TraceStore.hash(Array(#"{"hits":3}"#.utf8))
        third.append(.copiedToolCall(copiedTool))
        var reused = a
        reused.runID = "g2"
        third.append(.step(reused))
        third.append(.event(runID: "g2", .stepReused, stepPath: a.path, detailJSON: #"{"from":"g1"}"#, at: 201))
        var c = StepRecord(runID: "g2", path: "research/1", node: "research", kind: "item", itemIndex: 1, agent: "researcher", startedAt: 202)
        third.append(.step(c))
        third.append(.modelCall(call("g2", c.path, attempt: 1, at: 203), request: request, response: response))
        c.status = .cancelled
        c.endedAt = 204
        c.error = "cancelled"
        third.append(.step(c))
        var cancelled = call("g2", c.path, attempt: 2, at: 203.5)
        cancelled.error = "cancelled"
        cancelled.outcome = .cancelled
        third.append(.modelCall(cancelled, request: short, response: nil))
        var result = StepRecord(runID: "g2", path: "research#result", node: "research", kind: "reconcile", startedAt: 204)
        result.status = .succeeded
        result.endedAt = 204.5
        result.outputJSON = "[1,2]"
        result.provenanceJSON = #"{"0":"research/0"}"#
        third.append(.step(result))
        third.append(.event(runID: "g2", .nodeSucceeded, stepPath: "research", detailJSON: nil, at: 204.5))
        resumed.status = .succeeded
        resumed.endedAt = 205
        resumed.outputJSON = #"{"summary":"done"}"#
        third.append(.run(resumed))
        third.append(.event(runID: "g2", .runSucceeded, stepPath: nil, detailJSON: nil, at: 205))
        third.append(
            .eval(
                EvalRecord(
                    id: "e1", workflow: "w", workflowPath: "w.json", casesPath: "c.jsonl", casesDigest: "d",
                    configPath: nil, variantsJSON: "[]", optionsJSON: nil, startedAt: 300)))
        third.append(
            .evalResult(
                EvalResultRecord(
                    evalID: "e1", variant: "as-configured", caseID: "c1", caseIndex: 0, runID: "g2",
                    runStatus: "succeeded", passed: true, score: 0.75, gradesJSON: "[]", error: nil, cost: 0.5,
                    tokensIn: 1, tokensOut: 2, calls: 1, latencyMs: 3, modelSteps: 1, escalatedSteps: 0)))
        return [first, second, third]
    }()
}
