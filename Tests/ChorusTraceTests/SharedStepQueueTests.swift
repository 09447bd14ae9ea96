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
        try #require(try PostgresTraceStore(url: newPostgresDatabase()).sharedSteps)
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
        #expect(try queue.lease(runKey: "r", owner: "b", limit: 10, seconds: 30, now: 120).map(\.path) == ["work/3", "work/4", "more/0", "more/1"],
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
        #expect(try queue.runsWithWork(now: 110).map(\.runKey) == ["busy"])
        #expect(Set(try queue.runsWithWork(now: 200).map(\.runKey)) == ["busy", "held"], "a lapsed lease is work again")
    }

    /// Executors on many connections lease from one table at once: no step twice.
    @Test func concurrentExecutorsNeverLeaseAStepTwice() async throws {
        let url = try newPostgresDatabase()
        let setup = try #require(try PostgresTraceStore(url: url).sharedSteps)
        _ = try setup.enqueue(runKey: "r", steps(2000), now: 100)
        let leased = try await withThrowingTaskGroup(of: [String].self) { group in
            for owner in 0..<6 {
                group.addTask {
                    let queue = try #require(try PostgresTraceStore(url: url).sharedSteps)
                    var mine: [String] = []
                    while true {
                        let batch = try queue.lease(runKey: "r", owner: "o\(owner)", limit: 37, seconds: 30, now: 100)
                        if batch.isEmpty { return mine }
                        for step in batch { _ = try queue.complete(runKey: "r", path: step.path, owner: "o\(owner)", resultJSON: "{}", now: 101) }
                        mine += batch.map(\.path)
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
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
        #expect(try queue.enqueue(runKey: "r", [SharedStep(path: path, node: "n", kind: "item", itemIndex: nil, agent: "w", variablesJSON: "{}")], now: 4).count == 1)
    }
}
