/// One row a write session writes: the record with the hashes and the seal the planner
/// gave it. Runs and steps are upserts; every other row is an insert (bodies and parts
/// kept when already there).
enum TraceRowWrite: Equatable {
    /// `sealSeq` nil: still in progress, not sealed yet.
    case run(RunRecord, sealSeq: Int?)
    case step(StepRecord, sealSeq: Int?)
    case modelCall(ModelCallRecord, sealSeq: Int)
    case toolCall(ToolCallRecord, sealSeq: Int)
    case body(BodyRow)
    case bodyPart(body: String, part: String)
    case event(EventRow)
    /// Evals are not chained: written through their GRDB encoding, as they were.
    case eval(EvalRecord)
    case evalResult(EvalResultRecord)
}

/// What both trace backends do with a batch of changes, as a pure function of the batch
/// and the chains' state: which rows to write in which order, each body's SHA-256 and its
/// split into parts (BodyParts), and each finished row's seal (TraceChain). A write session
/// (SQLite's, PostgreSQL's) only executes the plan, so the two store the same rows, hashes
/// and seals by construction.
///
/// The rules, in one place:
/// - A step's `running` row is skipped when its final row is in the same batch (a busy
///   writer's batches hold thousands of both).
/// - A finished row (a run or step not `running`, every model and tool call) is sealed by
///   the next event of its run: its seal is that event's seq, and its digest goes into
///   that event's content hash. Each event chains to the one before.
/// - A body is stored once per content hash; a request body with long strings is stored
///   as a skeleton and parts. Each body appears in a batch's plan once.
///
/// Rows come in an order that keeps references sound: a call's bodies before the call.
/// State carried between batches: each run's next seq, last hash and the digests the next
/// event will seal. A session that fails to commit restores its checkpoint.
struct TraceBatchPlanner {
    private var chains: [String: Chain] = [:]
    fileprivate struct Chain {
        var nextSeq: Int
        var lastHash: String
        var unsealed: [String] = []
    }

    /// Steps whose final row is in the batch being planned.
    private var finishing = Set<StepKey>()
    /// Bodies already in the batch's plan.
    private var planned = Set<String>()

    /// A step's identity: its run and path.
    struct StepKey: Hashable {
        let runID: String
        let path: String
    }

    /// A run's last stored event: its seq and hash (0 and `TraceChain.origin` before its first).
    typealias LastEvent = (String) throws -> (seq: Int, hash: String)

    init() {}

    /// The chains as they are: what a session restores when its batch fails to commit, so
    /// the chains do not run ahead of what was written. (Only the chains: the sets are
    /// scratch, and a copy of them would make each batch reallocate them.)
    struct Checkpoint {
        fileprivate let chains: [String: Chain]
    }

    var checkpoint: Checkpoint { Checkpoint(chains: chains) }

    mutating func restore(_ checkpoint: Checkpoint) { chains = checkpoint.chains }

    /// Appends `batch`'s rows to `writes`. `lastEvent` gives a run's last stored event the
    /// first time the planner meets the run (seq 0 and `TraceChain.origin` before its first);
    /// `isStored` says whether a body is stored already, asked only before splitting a
    /// request into parts (a parse the store can save: identical requests are common).
    mutating func plan(
        _ batch: [TraceChange], into writes: inout [TraceRowWrite],
        lastEvent: LastEvent,
        isStored: (String) throws -> Bool
    ) throws {
        finishing.removeAll(keepingCapacity: true)
        planned.removeAll(keepingCapacity: true)
        for change in batch {
            if case .step(let s) = change, s.status.isFinal { finishing.insert(StepKey(runID: s.runID, path: s.path)) }
        }
        for change in batch {
            switch change {
            case .run(let r):
                let seal = r.status == .running ? nil : try seal(r.id, lastEvent) { TraceChain.digest(r) }
                writes.append(.run(r, sealSeq: seal))
            case .step(let s):
                let final = s.status.isFinal
                if !final && finishing.contains(StepKey(runID: s.runID, path: s.path)) { continue }
                let seal = final ? try seal(s.runID, lastEvent) { TraceChain.digest(s) } : nil
                writes.append(.step(s, sealSeq: seal))
            case .modelCall(var c, let request, let response):
                try bodies(of: &c, request: request, response: response, into: &writes, isStored: isStored)
                writes.append(.modelCall(c, sealSeq: try seal(c.runID, lastEvent) { TraceChain.digest(c) }))
            case .copiedModelCall(let c):
                writes.append(.modelCall(c, sealSeq: try seal(c.runID, lastEvent) { TraceChain.digest(c) }))
            case .toolCall(var t, let input, let output):
                bodies(of: &t, input: input, output: output, into: &writes)
                writes.append(.toolCall(t, sealSeq: try seal(t.runID, lastEvent) { TraceChain.digest(t) }))
            case .copiedToolCall(let t):
                writes.append(.toolCall(t, sealSeq: try seal(t.runID, lastEvent) { TraceChain.digest(t) }))
            case .eval(let e):
                writes.append(.eval(e))
            case .evalResult(let r):
                writes.append(.evalResult(r))
            case .event(let runID, let kind, let stepPath, let detail, let at):
                let event = try withChain(runID, lastEvent) { chain in
                    let event = TraceChain.event(
                        runID: runID, seq: chain.nextSeq, previous: chain.lastHash, at: at, kind: kind,
                        stepPath: stepPath, detailJSON: detail, sealing: chain.unsealed)
                    chain.nextSeq += 1
                    chain.lastHash = event.hash
                    chain.unsealed.removeAll(keepingCapacity: true)
                    return event
                }
                writes.append(.event(event))
            }
        }
    }

    /// A shared step's executor's batch: its bodies go in `writes` (content-addressed, so
    /// the copy the run's coordinator makes refers to them) and its records are returned
    /// with their hashes filled in and their bodies dropped, for the coordinator to write
    /// into the run's chain. Nothing is sealed here: a run's chain has one writer.
    mutating func stage(_ batch: [TraceChange], into writes: inout [TraceRowWrite]) -> [TraceChange] {
        planned.removeAll(keepingCapacity: true)
        var records: [TraceChange] = []
        records.reserveCapacity(batch.count)
        for change in batch {
            switch change {
            case .modelCall(var c, let request, let response):
                // Nothing asked: an executor's requests are rarely stored before, and a parse costs less than a round trip.
                bodies(of: &c, request: request, response: response, into: &writes, isStored: { _ in false })
                records.append(.modelCall(c, request: [], response: nil))
            case .toolCall(var t, let input, let output):
                bodies(of: &t, input: input, output: output, into: &writes)
                records.append(.toolCall(t, input: [], output: []))
            default:
                records.append(change)
            }
        }
        return records
    }

    // The non-throwing `isStored` of `stage` makes this rethrow.
    private mutating func bodies(
        of call: inout ModelCallRecord, request: [UInt8], response: [UInt8]?, into writes: inout [TraceRowWrite],
        isStored: (String) throws -> Bool
    ) rethrows {
        call.requestHash = TraceStore.hash(request)
        call.responseHash = response.map(TraceStore.hash)
        try self.request(request, hash: call.requestHash, into: &writes, isStored: isStored)
        if let response, let hash = call.responseHash { body(response, hash: hash, into: &writes) }
    }

    private mutating func bodies(of call: inout ToolCallRecord, input: [UInt8], output: [UInt8], into writes: inout [TraceRowWrite]) {
        call.inputHash = TraceStore.hash(input)
        call.outputHash = TraceStore.hash(output)
        body(input, hash: call.inputHash, into: &writes)
        body(output, hash: call.outputHash, into: &writes)
    }

    /// A request body, its long strings (a repeated system prompt) stored once as parts.
    private mutating func request(
        _ bytes: [UInt8], hash: String, into writes: inout [TraceRowWrite],
        isStored: (String) throws -> Bool
    ) rethrows {
        guard BodyParts.mayHaveParts(bytes) else { return body(bytes, hash: hash, into: &writes) }
        guard planned.insert(hash).inserted, try !isStored(hash) else { return }
        guard let (skeleton, parts) = BodyParts.split(bytes) else {
            return writes.append(.body(BodyRow(hash: hash, size: bytes.count, bytes: bytes, kind: .whole)))
        }
        writes.append(.body(BodyRow(hash: hash, size: bytes.count, bytes: skeleton, kind: .skeleton)))
        for part in parts {
            if planned.insert(part.hash).inserted {
                writes.append(.body(BodyRow(hash: part.hash, size: part.bytes.count, bytes: part.bytes, kind: .part)))
            }
            writes.append(.bodyPart(body: hash, part: part.hash))
        }
    }

    private mutating func body(_ bytes: [UInt8], hash: String, into writes: inout [TraceRowWrite]) {
        guard planned.insert(hash).inserted else { return }
        writes.append(.body(BodyRow(hash: hash, size: bytes.count, bytes: bytes, kind: .whole)))
    }

    /// The seq of the event that will seal a finished row of `runID`, noting the row's
    /// digest for that event.
    private mutating func seal(_ runID: String, _ lastEvent: LastEvent, digest: () -> String) throws -> Int {
        try withChain(runID, lastEvent) { chain in
            chain.unsealed.append(digest())
            return chain.nextSeq
        }
    }

    /// Runs `body` on `runID`'s chain in place (a copy out and back would copy its digests
    /// on every append).
    private mutating func withChain<T>(
        _ runID: String, _ lastEvent: LastEvent,
        _ body: (inout Chain) -> T
    ) throws -> T {
        if chains[runID] == nil {
            let last = try lastEvent(runID)
            chains[runID] = Chain(nextSeq: last.seq + 1, lastHash: last.hash)
        }
        return body(&chains[runID, default: Chain(nextSeq: 1, lastHash: TraceChain.origin)])
    }
}
