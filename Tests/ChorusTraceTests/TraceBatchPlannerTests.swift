@testable import ChorusTrace
import Testing

/// The write path's rules, planned without a database: what both backends execute.
@Suite struct TraceBatchPlannerTests {
    private func step(_ path: String, _ status: StepStatus = .running, run: String = "r") -> StepRecord {
        var record = StepRecord(runID: run, path: path, node: "n", kind: "item", startedAt: 1)
        record.status = status
        return record
    }

    private func call(_ path: String, run: String = "r") -> ModelCallRecord {
        ModelCallRecord(
            runID: run, stepPath: path, attempt: 1, model: "m", providerModel: "m", url: "http://x/v1/chat/completions",
            requestHash: "", responseHash: nil, httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0,
            latencyMs: 1, startedAt: 1)
    }

    /// A request whose system prompt is long enough to be a part.
    private func request(_ question: String) -> [UInt8] {
        let system = String(repeating: "Cite every source you use. ", count: 30)
        return Array(#"{"messages":[{"content":"\#(system)","role":"system"},{"content":"\#(question)","role":"user"}]}"#.utf8)
    }

    /// Plans `batches` in turn on one planner, from an empty log, never finding a body stored.
    private func plan(
        _ batches: [[TraceChange]], lastEvent: @escaping (String) -> (seq: Int, hash: String) = { _ in (0, TraceChain.origin) },
        isStored: @escaping (String) -> Bool = { _ in false }
    ) throws -> [[TraceRowWrite]] {
        var planner = TraceBatchPlanner()
        return try batches.map { batch in
            var writes: [TraceRowWrite] = []
            try planner.plan(batch, into: &writes, lastEvent: lastEvent, isStored: isStored)
            return writes
        }
    }

    /// A long field is hashed where it lies rather than copied into the digest's buffer; the
    /// digest is still the SHA-256 of the fields joined as before, so sealed rows still verify.
    @Test(arguments: [10, 16 * 1024 - 1, 16 * 1024, 100_000])
    func aStepsDigestIsTheHashOfItsFieldsWhateverTheirLength(_ length: Int) {
        var record = step("a/0", .succeeded)
        record.outputJSON = String(repeating: "x", count: length)
        record.provenanceJSON = "[" + String(repeating: "y", count: length) + "]"
        record.error = nil
        let fields: [String?] = [
            "step", "r", "a/0", "n", "item", nil, nil, nil, "succeeded", "1.0", nil, record.outputJSON, record.provenanceJSON,
            nil, "0", "0", "0", "0.0",
        ]
        var bytes: [UInt8] = []
        for field in fields {
            if let field { bytes += Array(field.utf8) } else { bytes.append(0) }
            bytes.append(0x1F)
        }
        #expect(TraceChain.digest(record) == TraceStore.hash(bytes))
    }

    @Test func aRunningStepWhoseFinalRowIsInTheBatchIsSkipped() throws {
        let writes = try plan([[.step(step("a")), .step(step("b")), .step(step("a", .succeeded))]])[0]
        #expect(writes == [.step(step("b"), sealSeq: nil), .step(step("a", .succeeded), sealSeq: 1)])
    }

    @Test func aRunningStepIsWrittenUnsealedWhenItsFinalRowComesLater() throws {
        let writes = try plan([[.step(step("a"))], [.step(step("a", .failed))]])
        #expect(writes == [[.step(step("a"), sealSeq: nil)], [.step(step("a", .failed), sealSeq: 1)]])
    }

    @Test func finishedRowsAreSealedByTheNextEventOfTheirRun() throws {
        var run = RunRecord(id: "r", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1, ownerPID: nil)
        var other = call("o/0", run: "other")
        other.requestHash = "h"
        let batch: [TraceChange] = [
            .run(run), .step(step("a", .succeeded)), .copiedModelCall(other),
            .event(runID: "r", .stepSucceeded, stepPath: "a", detailJSON: nil, at: 2),
            .event(runID: "r", .nodeSucceeded, stepPath: "n", detailJSON: nil, at: 3),
        ]
        run.status = .succeeded
        let later: [TraceChange] = [.run(run), .event(runID: "r", .runSucceeded, stepPath: nil, detailJSON: nil, at: 4)]
        var asked: [String] = []
        let writes = try plan(
            [batch, later],
            lastEvent: { id in
                asked.append(id)
                return id == "r" ? (4, "previous") : (0, TraceChain.origin)
            })
        #expect(asked == ["r", "other"], "a run's last event is looked up once, the first time the planner meets it")
        guard case .run(_, nil) = writes[0][0], case .step(_, 5) = writes[0][1], case .modelCall(_, 1) = writes[0][2],
            case .event(let first) = writes[0][3], case .event(let second) = writes[0][4],
            case .run(_, 7) = writes[1][0], case .event(let last) = writes[1][1]
        else {
            Issue.record("\(writes)")
            return
        }
        #expect(first.seq == 5 && first.contentHash == TraceChain.contentHash([TraceChain.digest(step("a", .succeeded))]))
        #expect(
            first.hash
                == TraceChain.eventHash(
                    previous: "previous", runID: "r", seq: 5, at: 2, kind: "step_succeeded", stepPath: "a",
                    detailJSON: nil, contentHash: first.contentHash))
        #expect(second.seq == 6 && second.contentHash == TraceChain.contentHash([]), "a row is sealed once")
        #expect(
            second.hash
                == TraceChain.eventHash(
                    previous: first.hash, runID: "r", seq: 6, at: 3, kind: "node_succeeded", stepPath: "n",
                    detailJSON: nil, contentHash: second.contentHash))
        #expect(last.seq == 7 && last.contentHash == TraceChain.contentHash([TraceChain.digest(run)]), "the chain carries over batches")
    }

    @Test func bodiesAreHashedAndPlannedOncePerBatch() throws {
        let short = Array(#"{"messages":[]}"#.utf8)
        let answer = Array(#"{"choices":[]}"#.utf8)
        let input = Array(#"{"q":1}"#.utf8)
        var tool = ToolCallRecord(
            runID: "r", stepPath: "a", attempt: 1, callIndex: 0, callID: "c", tool: "t", kind: "http",
            isError: false, exitStatus: nil, error: nil, latencyMs: 1, startedAt: 1)
        let batch: [TraceChange] = [
            .modelCall(call("a"), request: short, response: answer),
            .modelCall(call("b"), request: short, response: answer),
            .toolCall(tool, input: input, output: answer),
        ]
        let writes = try plan([batch, batch])
        var expected = call("a")
        expected.requestHash = TraceStore.hash(short)
        expected.responseHash = TraceStore.hash(answer)
        tool.inputHash = TraceStore.hash(input)
        tool.outputHash = TraceStore.hash(answer)
        let bodies = writes[0].compactMap { if case .body(let body) = $0 { body } else { nil } }
        #expect(
            bodies == [
                BodyRow(hash: TraceStore.hash(short), size: short.count, bytes: short, kind: .whole),
                BodyRow(hash: TraceStore.hash(answer), size: answer.count, bytes: answer, kind: .whole),
                BodyRow(hash: TraceStore.hash(input), size: input.count, bytes: input, kind: .whole),
            ])
        #expect(writes[0].first { if case .modelCall = $0 { true } else { false } } == .modelCall(expected, sealSeq: 1))
        #expect(writes[0].last == .toolCall(tool, sealSeq: 1))
        #expect(
            writes[1].filter { if case .body = $0 { true } else { false } }.count == 3,
            "a new batch writes its bodies again (the store keeps the first)")
    }

    @Test func aRequestWithLongStringsIsASkeletonAndPartsStoredOnce() throws {
        let first = request("Why herons?")
        let second = request("Why egrets?")
        let writes = try plan([[.modelCall(call("a"), request: first, response: nil), .modelCall(call("b"), request: second, response: nil)]])[0]
        let bodies = writes.compactMap { if case .body(let body) = $0 { body } else { nil } }
        let links = writes.compactMap { if case .bodyPart(let body, let part) = $0 { [body, part] } else { nil } }
        let parts = bodies.filter { $0.kind == .part }
        #expect(parts.count == 1, "the shared system prompt is one part")
        #expect(bodies.filter { $0.kind == .skeleton }.map(\.hash) == [TraceStore.hash(first), TraceStore.hash(second)])
        #expect(bodies.filter { $0.kind == .skeleton }.map(\.size) == [first.count, second.count], "a skeleton's size is the whole body's")
        #expect(links == [[TraceStore.hash(first), parts[0].hash], [TraceStore.hash(second), parts[0].hash]])
        let skeleton = bodies[0].bytes
        #expect(try BodyParts.join(skeleton) { $0 == parts[0].hash ? parts[0].bytes : nil } == first)
    }

    @Test func aRequestAlreadyStoredIsNotSplitAgain() throws {
        var asked: [String] = []
        let body = request("Why herons?")
        let short = Array(#"{"messages":[]}"#.utf8)
        let writes = try plan(
            [[.modelCall(call("a"), request: body, response: nil), .modelCall(call("b"), request: short, response: nil)]],
            isStored: {
                asked.append($0); return $0 == TraceStore.hash(body)
            })[0]
        #expect(asked == [TraceStore.hash(body)], "only a request that may have parts is looked up: its split is what a lookup saves")
        #expect(writes.compactMap { if case .body(let body) = $0 { body.hash } else { nil } } == [TraceStore.hash(short)])
    }

    @Test func aSharedStepsRecordsAreStagedWithTheirHashesAndNothingSealed() {
        let body = request("Why herons?")
        var planner = TraceBatchPlanner()
        var writes: [TraceRowWrite] = []
        let batch: [TraceChange] = [
            .step(step("a")), .modelCall(call("a"), request: body, response: nil),
            .event(runID: "r", .stepSucceeded, stepPath: "a", detailJSON: nil, at: 2),
        ]
        let records = planner.stage(batch, into: &writes)
        #expect(writes.allSatisfy { if case .body = $0 { true } else if case .bodyPart = $0 { true } else { false } })
        guard records.count == 3, case .modelCall(let staged, let request, nil) = records[1], case .event = records[2] else {
            Issue.record("\(records)")
            return
        }
        #expect(staged.requestHash == TraceStore.hash(body) && request.isEmpty, "the bodies are stored; the record names them")
    }

    /// Each record binds one value per column of its table, in the order both backends'
    /// INSERTs list them.
    @Test func everyRecordBindsOneValuePerColumn() {
        var run = Counting()
        RunRecord(id: "r", workflow: "w", workflowPath: "w", inputsJSON: "{}", startedAt: 1).bind(sealSeq: nil, to: &run)
        var step = Counting()
        self.step("a").bind(sealSeq: 1, to: &step)
        var call = Counting()
        self.call("a").bind(sealSeq: 1, to: &call)
        var tool = Counting()
        ToolCallRecord(
            runID: "r", stepPath: "a", attempt: 1, callIndex: 0, callID: "c", tool: "t", kind: "http", isError: true,
            exitStatus: nil, error: nil, latencyMs: 1, startedAt: 1
        ).bind(sealSeq: 1, to: &tool)
        var blob = Counting()
        BodyRow(hash: "h", size: 1, bytes: [1], kind: .whole).bind(to: &blob)
        var event = Counting()
        TraceChain.event(runID: "r", seq: 1, previous: TraceChain.origin, at: 1, kind: "k", stepPath: nil, detailJSON: nil, sealing: []).bind(to: &event)
        #expect(run.count == TraceTable.run.columns.count && step.count == TraceTable.step.columns.count)
        #expect(call.count == TraceTable.modelCall.columns.count && tool.count == TraceTable.toolCall.columns.count)
        #expect(blob.count == TraceTable.blob.columns.count && event.count == TraceTable.event.columns.count)
    }

    @Test func insertsAreMadeFromTheColumnLists() {
        #expect(TraceTable.blob.insertSQL(.sqlite) == "INSERT OR IGNORE INTO blob (hash, size, bytes, kind) VALUES (?,?,?,?)")
        #expect(TraceTable.blob.insertSQL(.postgres) == "INSERT INTO blob (hash, size, bytes, kind) VALUES ($1,$2,$3,$4) ON CONFLICT (hash) DO NOTHING")
        #expect(TraceTable.blobPart.insertSQL(rows: 2, .postgres) == "INSERT INTO blobPart (body, part) VALUES ($1,$2), ($3,$4) ON CONFLICT DO NOTHING")
        #expect(
            TraceTable.run.insertSQL(.sqlite).hasSuffix(
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, endedAt = excluded.endedAt, outputJSON = excluded.outputJSON, "
                    + "error = excluded.error, tokensIn = excluded.tokensIn, tokensOut = excluded.tokensOut, cost = excluded.cost, sealSeq = excluded.sealSeq"))
    }

    private struct Counting: TraceRowSink {
        var count = 0
        mutating func add(_ value: String?) { count += 1 }
        mutating func add(_ value: Int?) { count += 1 }
        mutating func add(_ value: Double?) { count += 1 }
        mutating func add(_ value: Bool) { count += 1 }
        mutating func add(bytes: [UInt8]) { count += 1 }
    }
}
