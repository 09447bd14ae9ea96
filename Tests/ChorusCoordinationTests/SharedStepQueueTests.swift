import ChorusCoordination
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// The step table of shared runs on a real PostgreSQL server: leases, their lapse and
/// renewal, completion, collection, and what a coordinator taking over gets back.
@Suite(.enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
struct SharedStepQueueTests {
    private func steps(_ count: Int, prefix: String = "work") -> [SharedStep] {
        (0..<count).map { SharedStep(path: "\(prefix)/\($0)", node: prefix, kind: "item", itemIndex: $0, agent: "worker", variablesJSON: #"{"item":\#($0)}"#) }
    }

    private func queue() throws -> any SharedStepQueue {
        try coordination(newPostgresDatabase()).stepQueue()
    }

    @Test func stepsAreLeasedOnceInOrderAndADoneStepIsNeverLeasedAgain() throws {
        let queue = try queue()
        try queue.open(runKey: "r", runID: "r", workflowPath: "/w.json", configPath: "/c.json")
        #expect(try queue.enqueue(runKey: "r", steps(10), now: 100).isEmpty)
        let first = try queue.lease(runKey: "r", owner: "a", limit: 4, seconds: 30, now: 100)
        #expect(first.map(\.path) == ["work/0", "work/1", "work/2", "work/3"] && first.allSatisfy { $0.leases == 1 })
        #expect(first[0].variablesJSON == #"{"item":0}"# && first[0].itemIndex == 0)
        let second = try queue.lease(runKey: "r", owner: "b", limit: 100, seconds: 30, now: 100)
        #expect(second.count == 6 && Set(second.map(\.path)).isDisjoint(with: first.map(\.path)))
        #expect(try queue.lease(runKey: "r", owner: "c", limit: 100, seconds: 30, now: 100).isEmpty, "every step is held")
        // Only the holder completes; a done step is collected once.
        #expect(try queue.complete(runKey: "r", path: "work/0", owner: "b", resultJSON: "{}", now: 101) == false)
        #expect(try queue.complete(runKey: "r", path: "work/0", owner: "a", resultJSON: #"{"x":1}"#, now: 101))
        let collected = try queue.collect(runKey: "r")
        #expect(collected.map(\.path) == ["work/0"] && collected[0].resultJSON == #"{"x":1}"# && collected[0].doneBy == "a")
        #expect(try queue.collect(runKey: "r").isEmpty)
        // Past every lease: the unfinished steps are leased again, the done one never.
        let again = try queue.lease(runKey: "r", owner: "c", limit: 100, seconds: 30, now: 200)
        #expect(again.count == 9 && !again.map(\.path).contains("work/0") && again.allSatisfy { $0.leases == 2 })
        #expect(try queue.complete(runKey: "r", path: "work/1", owner: "a", resultJSON: "{}", now: 201) == false, "a lapsed lease completes nothing")
        #expect(try queue.stepCounts(runKey: "r") == (10, 1, 19))
    }

    @Test func renewedLeasesHoldAndGivenBackStepsGoAtOnce() throws {
        let queue = try queue()
        _ = try queue.enqueue(runKey: "r", steps(4), now: 100)
        let held = try queue.lease(runKey: "r", owner: "a", limit: 4, seconds: 10, now: 100)
        #expect(try queue.renew(runKey: "r", paths: held.map(\.path), owner: "a", seconds: 10, now: 105) == 4)
        #expect(try queue.lease(runKey: "r", owner: "b", limit: 4, seconds: 10, now: 112).isEmpty, "renewed until 115")
        #expect(try queue.renew(runKey: "r", paths: held.map(\.path), owner: "b", seconds: 10, now: 112) == 0, "not b's to renew")
        try queue.giveBack(runKey: "r", paths: ["work/2", "work/3"], owner: "a")
        #expect(Set(try queue.lease(runKey: "r", owner: "b", limit: 4, seconds: 10, now: 112).map(\.path)) == ["work/2", "work/3"])
    }

    /// A coordinator that takes over enqueues the run's steps again: the ones already done
    /// come back with their results (collected or not), the others are left as they are.
    @Test func aTakeoverGetsBackTheStepsAlreadyDone() throws {
        let queue = try queue()
        try queue.open(runKey: "r", runID: "r", workflowPath: "/w.json", configPath: "/c.json")
        _ = try queue.enqueue(runKey: "r", steps(5), now: 100)
        let held = try queue.lease(runKey: "r", owner: "a", limit: 3, seconds: 30, now: 100)
        for step in held.prefix(2) { #expect(try queue.complete(runKey: "r", path: step.path, owner: "a", resultJSON: "\"\(step.path)\"", now: 101)) }
        _ = try queue.collect(runKey: "r")  // the first coordinator collected them, then died
        try queue.open(runKey: "r", runID: "r-2", workflowPath: "/w.json", configPath: "/c.json")
        #expect(try queue.run("r")?.runID == "r-2")
        let back = try queue.enqueue(runKey: "r", steps(5) + steps(2, prefix: "more"), now: 150)
        #expect(Set(back.map(\.path)) == ["work/0", "work/1"] && back.allSatisfy { $0.resultJSON == "\"\($0.path)\"" })
        #expect(try queue.stepCounts(runKey: "r").steps == 7, "new steps are added, old ones kept")
        #expect(
            try queue.lease(runKey: "r", owner: "b", limit: 10, seconds: 30, now: 120).map(\.path) == ["work/3", "work/4", "more/0", "more/1"],
            "work/2 is still held by a (until 130)")
    }

    @Test func runsWithWorkAreThoseBeingCoordinatedWithStepsToLease() throws {
        let queue = try queue()
        try queue.open(runKey: "busy", runID: "busy", workflowPath: "/w.json", configPath: "/c.json")
        try queue.open(runKey: "ended", runID: "ended", workflowPath: "/w.json", configPath: "/c.json")
        try queue.open(runKey: "held", runID: "held", workflowPath: "/w.json", configPath: "/c.json")
        _ = try queue.enqueue(runKey: "busy", steps(1), now: 100)
        _ = try queue.enqueue(runKey: "ended", steps(1), now: 100)
        _ = try queue.enqueue(runKey: "held", steps(1), now: 100)
        _ = try queue.lease(runKey: "held", owner: "a", limit: 1, seconds: 30, now: 100)
        try queue.close(runKey: "ended", status: "failed")
        #expect(try queue.runsWithWork(now: 100.5, waitedSeconds: 1).isEmpty, "queued for half a second: its executors keep up")
        #expect(try queue.runsWithWork(now: 110, waitedSeconds: 1).map(\.runKey) == ["busy"])
        #expect(Set(try queue.runsWithWork(now: 200, waitedSeconds: 1).map(\.runKey)) == ["busy", "held"], "a lapsed lease is work again")
    }

    /// A run that ended drops the steps it never needed: not leased again, not completed,
    /// and no result kept (what it used is in its trace). An interrupted run keeps them all.
    @Test func anEndedRunDropsItsUnfinishedSteps() throws {
        let queue = try queue()
        for key in ["ended", "paused"] {
            try queue.open(runKey: key, runID: key, workflowPath: "/w.json", configPath: "/c.json")
            _ = try queue.enqueue(runKey: key, steps(3), now: 100)
            _ = try queue.lease(runKey: key, owner: "a", limit: 2, seconds: 30, now: 100)
            #expect(try queue.complete(runKey: key, path: "work/0", owner: "a", resultJSON: "{}", now: 101))
        }
        try queue.close(runKey: "ended", status: "failed")
        try queue.close(runKey: "paused", status: "interrupted")
        #expect(try queue.complete(runKey: "ended", path: "work/1", owner: "a", resultJSON: "{}", now: 102) == false)
        #expect(try queue.lease(runKey: "ended", owner: "b", limit: 10, seconds: 30, now: 500).isEmpty)
        #expect(try queue.enqueue(runKey: "ended", steps(1), now: 600).first?.resultJSON == nil, "no result kept")
        #expect(try queue.complete(runKey: "paused", path: "work/1", owner: "a", resultJSON: "{}", now: 102))
        #expect(try queue.enqueue(runKey: "paused", steps(3), now: 600).count == 2, "a takeover gets both back")
    }

    /// Executors on many connections (threads of their own: a blocking call must not hold
    /// the test pool's few threads) lease from one table at once: no step twice.
    @Test func concurrentExecutorsNeverLeaseAStepTwice() throws {
        let url = try newPostgresDatabase()
        let setup = try coordination(url).stepQueue()
        _ = try setup.enqueue(runKey: "r", steps(2000), now: 100)
        let leased = onThreads(6) { owner -> [String] in
            guard let queue = TraceLocation.postgres(url: url).openCoordination()?.stepQueue() else { return [] }
            var mine: [String] = []
            while let batch = try? queue.lease(runKey: "r", owner: "o\(owner)", limit: 37, seconds: 30, now: 100), !batch.isEmpty {
                for step in batch { _ = try? queue.complete(runKey: "r", path: step.path, owner: "o\(owner)", resultJSON: "{}", now: 101) }
                mine += batch.map(\.path)
            }
            return mine
        }.flatMap { $0 }
        #expect(leased.count == 2000 && Set(leased).count == 2000)
        #expect(try setup.stepCounts(runKey: "r") == (2000, 2000, 2000))
        #expect(try setup.doneBy(runKey: "r").count >= 2, "the executors shared the work")
    }

    /// A path with quotes, backslashes and commas goes through the array parameters intact.
    @Test func pathsWithAwkwardCharactersRoundTrip() throws {
        let queue = try queue()
        let path = #"n/{"a,b"}\x"#
        _ = try queue.enqueue(runKey: "r", [SharedStep(path: path, node: "n", kind: "item", itemIndex: nil, agent: "w", variablesJSON: "{}")], now: 1)
        let held = try queue.lease(runKey: "r", owner: "a", limit: 1, seconds: 30, now: 1)
        #expect(held.map(\.path) == [path] && held[0].itemIndex == nil)
        #expect(try queue.renew(runKey: "r", paths: [path], owner: "a", seconds: 30, now: 2) == 1)
        #expect(try queue.complete(runKey: "r", path: path, owner: "a", resultJSON: "{}", now: 3))
        #expect(
            try queue.enqueue(runKey: "r", [SharedStep(path: path, node: "n", kind: "item", itemIndex: nil, agent: "w", variablesJSON: "{}")], now: 4).count
                == 1)
    }
}

/// Budgets and per-minute windows in PostgreSQL, shared by every process on the database.
@Suite(.enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
struct SharedLimitsTests {
    @Test func aBudgetHoldsWaitsAndRefusesAsTheLedgerDoes() throws {
        let budgets = try coordination(newPostgresDatabase()).budgets
        #expect(try budgets.reserve(key: "k", microUSD: 1, tokens: 1, holder: "a", leaseSeconds: 60, now: 0) == .unknown, "never opened")
        try budgets.open(key: "k", limitMicroUSD: 1000, limitTokens: nil, limitCalls: 3, spent: (100, 0, 0))
        guard case .held(let first) = try budgets.reserve(key: "k", microUSD: 600, tokens: 10, holder: "a", leaseSeconds: 60, now: 0) else {
            Issue.record("the first call fits"); return
        }
        #expect(
            try budgets.reserve(key: "k", microUSD: 600, tokens: 10, holder: "b", leaseSeconds: 60, now: 0) == .wait,
            "100 spent + 600 held + 600 > 1000, and a call in flight may free room")
        try budgets.settle(key: "k", hold: first, microUSD: 200, tokens: 10, madeCall: true)
        #expect(try budgets.spent(key: "k") == (300, 10, 1))
        guard case .held(let second) = try budgets.reserve(key: "k", microUSD: 600, tokens: 10, holder: "b", leaseSeconds: 60, now: 0) else {
            Issue.record("300 + 600 fits"); return
        }
        try budgets.settle(key: "k", hold: second, microUSD: 650, tokens: 0, madeCall: true)
        #expect(
            try budgets.reserve(key: "k", microUSD: 100, tokens: 0, holder: "c", leaseSeconds: 60, now: 0) == .refused,
            "950 spent, nothing in flight: it can never fit")
        // Reopening (a takeover) keeps what was spent.
        try budgets.open(key: "k", limitMicroUSD: 2000, limitTokens: nil, limitCalls: 3, spent: (0, 0, 0))
        #expect(try budgets.spent(key: "k") == (950, 10, 2))
        guard case .held = try budgets.reserve(key: "k", microUSD: 100, tokens: 0, holder: "c", leaseSeconds: 10, now: 0) else {
            Issue.record("the third call fits the raised limit"); return
        }
        #expect(try budgets.reserve(key: "k", microUSD: 100, tokens: 0, holder: "d", leaseSeconds: 10, now: 5) == .wait, "3 calls: 2 made, 1 held")
        guard case .held = try budgets.reserve(key: "k", microUSD: 100, tokens: 0, holder: "d", leaseSeconds: 10, now: 11) else {
            Issue.record("the hold of a process that died lapses (at 10) and frees its room"); return
        }
    }

    /// Six connections reserving $0.01 calls against a $1 budget at once: never more than
    /// 100 holds, whatever the interleaving.
    @Test func concurrentReserversNeverPassTheLimit() throws {
        let url = try newPostgresDatabase()
        let setup = try coordination(url).budgets
        try setup.open(key: "run", limitMicroUSD: 1_000_000, limitTokens: nil, limitCalls: nil, spent: (0, 0, 0))
        let held = onThreads(6) { worker -> Int in
            guard let budgets = TraceLocation.postgres(url: url).openCoordination()?.budgets else { return 0 }
            var count = 0
            while case .held? = try? budgets.reserve(key: "run", microUSD: 10_000, tokens: 1, holder: "w\(worker)", leaseSeconds: 60, now: 0) {
                count += 1
            }
            return count
        }
        #expect(held.reduce(0, +) == 100)
    }

    /// Six connections each reserving and settling calls against a limit of 500 calls: the
    /// calls made never pass it, however settles and reserves interleave (read apart, the
    /// budget and its holds once let a settle slip between the reads: 101 of 100 calls).
    @Test func reservesAndSettlesInterleavedNeverPassTheLimit() throws {
        let url = try newPostgresDatabase()
        let setup = try coordination(url).budgets
        try setup.open(key: "run", limitMicroUSD: nil, limitTokens: nil, limitCalls: 500, spent: (0, 0, 0))
        let made = onThreads(6) { worker -> Int in
            guard let budgets = TraceLocation.postgres(url: url).openCoordination()?.budgets else { return 0 }
            var count = 0
            while true {
                switch try? budgets.reserve(key: "run", microUSD: 0, tokens: 1, holder: "w\(worker)", leaseSeconds: 60, now: 0) {
                case .held(let hold)?:
                    try? budgets.settle(key: "run", hold: hold, microUSD: 0, tokens: 1, madeCall: true)
                    count += 1
                case .wait?: continue
                default: return count
                }
            }
        }
        let spent = try setup.spent(key: "run").calls
        #expect(made.reduce(0, +) == 500 && spent == 500, "\(made), \(spent) spent")
    }

    @Test func rateWindowsSlideOverTheLastMinute() throws {
        let rates = try coordination(newPostgresDatabase()).rates
        for second in 0..<3 {
            guard case .admitted = try rates.take(key: "m", requestsPerMinute: 3, tokensPerMinute: nil, tokens: 10, now: Double(second)) else {
                Issue.record("request \(second) fits"); return
            }
        }
        #expect(
            try rates.take(key: "m", requestsPerMinute: 3, tokensPerMinute: nil, tokens: 10, now: 30) == .wait(seconds: 30),
            "the oldest leaves the window at 60")
        guard case .admitted = try rates.take(key: "m", requestsPerMinute: 3, tokensPerMinute: nil, tokens: 10, now: 60.5) else {
            Issue.record("room once the first has left"); return
        }
        // Tokens: an estimate settled to what was used frees the difference.
        guard case .admitted(let big) = try rates.take(key: "t", requestsPerMinute: nil, tokensPerMinute: 1000, tokens: 900, now: 0) else {
            Issue.record("900 of 1000 fits"); return
        }
        if case .admitted = try rates.take(key: "t", requestsPerMinute: nil, tokensPerMinute: 1000, tokens: 200, now: 1) {
            Issue.record("900 + 200 > 1000")
        }
        try rates.settle(entry: big, tokens: 300)
        guard case .admitted = try rates.take(key: "t", requestsPerMinute: nil, tokensPerMinute: 1000, tokens: 200, now: 2) else {
            Issue.record("300 + 200 fits"); return
        }
        // A request larger than the whole limit goes alone once the window is empty.
        guard case .admitted = try rates.take(key: "huge", requestsPerMinute: nil, tokensPerMinute: 100, tokens: 5000, now: 0) else {
            Issue.record("alone in an empty window"); return
        }
    }
}

/// The coordination of the PostgreSQL database at `url` (its tables already made).
func coordination(_ url: String) throws -> any Coordination {
    try #require(TraceLocation.postgres(url: url).openCoordination())
}

/// Runs `body` on `count` threads started together; their results, in order.
func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = ResultSlots<T>(count: count)
    let start = DispatchSemaphore(value: 0)
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Thread {
            start.wait()
            results.set(index, body(index))
            group.leave()
        }.start()
    }
    for _ in 0..<count { start.signal() }
    group.wait()
    return results.values
}

private final class ResultSlots<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { slots[index] = value } }
    var values: [T] { lock.withLock { slots.compactMap { $0 } } }
}

/// Bodies an executor stored for a step whose result is not in the trace yet are kept by
/// prune; once the run succeeded (its results copied), they go like any orphan.
@Suite(.enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
struct SharedStepPruneTests {
    @Test func pruneKeepsTheBodiesOfResultsNotYetCopied() throws {
        let url = try newPostgresDatabase()
        let store = try PostgresTraceStore(url: url)
        let queue = try coordination(url).stepQueue()
        try queue.open(runKey: "r", runID: "r", workflowPath: "/w.json", configPath: "/c.json")
        _ = try queue.enqueue(runKey: "r", [SharedStep(path: "work/0", node: "work", kind: "item", itemIndex: 0, agent: "w", variablesJSON: "{}")], now: 1)
        _ = try queue.lease(runKey: "r", owner: "a", limit: 1, seconds: 30, now: 1)
        let staging = StagedSteps()
        let session = try store.makeWriteSession(staging: staging)
        let call = ModelCallRecord(
            runID: "r", stepPath: "work/0", attempt: 1, model: "small", providerModel: "sim-small", url: "http://x/v1",
            requestHash: "", responseHash: nil, httpStatus: 200, error: nil, tokensIn: 1, tokensOut: 1, cost: 0,
            latencyMs: 1, startedAt: 1)
        try session.commit([.modelCall(call, request: Array(#"{"staged":"request body"}"#.utf8), response: Array(#"{"answer":"staged"}"#.utf8))])
        let bundle = staging.take("work/0")
        #expect(bundle.calls.count == 1 && bundle.calls[0].responseHash != nil)
        #expect(try store.blob(bundle.calls[0].requestHash) != nil, "the body is stored at once")
        // Leased, then done but not copied: kept.
        _ = try store.prune(olderThan: nil, keep: 0)
        #expect(try store.blob(bundle.calls[0].responseHash!) != nil)
        #expect(try queue.complete(runKey: "r", path: "work/0", owner: "a", resultJSON: "{}", now: 2))
        _ = try store.prune(olderThan: nil, keep: 0)
        #expect(try store.blob(bundle.calls[0].responseHash!) != nil)
        // Copied (the run succeeded): an orphan like any other.
        try queue.close(runKey: "r", status: "succeeded")
        let report = try store.prune(olderThan: nil, keep: 0)
        let gone = try store.blob(bundle.calls[0].responseHash!) == nil
        #expect(report.blobsRemoved >= 2 && gone)
    }
}
