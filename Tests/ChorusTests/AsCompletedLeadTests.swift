import ChorusJSON
import ChorusSim
import Testing

@testable import Chorus

/// The as_completed lead's state machine, driven without a loop or a socket.
@Suite struct AsCompletedLeadTests {
    typealias Lead = AsCompletedLead

    static func limits(rounds: Int = 4, subtasks: Int = 100, parallel: Int = .max, replanAfter: Int? = nil, cancel: Bool = false) -> Lead.Limits {
        Lead.Limits(maxRounds: rounds, maxSubtasks: subtasks, maxParallel: parallel, replanAfter: replanAfter, cancelOnDone: cancel)
    }

    static func items(_ n: Int) -> [JSONValue] { (0..<n).map { .string("t\($0)") } }

    static func started(_ actions: [Lead.Action]) -> [String] {
        actions.compactMap { if case .start(let s) = $0 { Lead.path(node: "r", round: s.round, index: s.index) } else { nil } }
    }

    static func leadCalls(_ actions: [Lead.Action]) -> [(Int, [String])] {
        actions.compactMap { if case .callLead(let round, let seen) = $0 { (round, seen) } else { nil } }
    }

    @Test func theLeadIsCalledAgainOnceEnoughFindingsArriveWithEverySoFarInArrivalOrder() {
        var lead = Lead(node: "r", limits: Self.limits(replanAfter: 2))
        #expect(Self.leadCalls(lead.start()).map(\.0) == [1])
        let first = lead.leadAnswered(round: 1, subtasks: Self.items(4), done: false)
        #expect(Self.started(first) == ["r/round-1/0", "r/round-1/1", "r/round-1/2", "r/round-1/3"])
        #expect(lead.subtaskEnded("r/round-1/2", .succeeded).isEmpty, "one finding is not yet two")
        let second = lead.subtaskEnded("r/round-1/0", .succeeded)
        #expect(Self.leadCalls(second).map(\.0) == [2])
        #expect(Self.leadCalls(second).first?.1 == ["r/round-1/2", "r/round-1/0"], "arrival order, as the prompt holds them")
        // Only one lead call in flight: findings that arrive meanwhile wait for the next.
        #expect(lead.subtaskEnded("r/round-1/1", .succeeded).isEmpty)
        #expect(lead.subtaskEnded("r/round-1/3", .failed).isEmpty)
        let third = lead.leadAnswered(round: 2, subtasks: Self.items(1), done: false)
        #expect(Self.started(third) == ["r/round-2/0"])
        // One new finding so far, against replan_after 2: the lead waits...
        #expect(Self.leadCalls(third).isEmpty)
        // ...until nothing is left running, then sees what there is.
        let last = lead.subtaskEnded("r/round-2/0", .succeeded)
        #expect(Self.leadCalls(last).first?.1 == ["r/round-1/2", "r/round-1/0", "r/round-1/1", "r/round-2/0"])
        #expect(lead.leadAnswered(round: 3, subtasks: [], done: false).isEmpty)
        #expect(lead.finished, "nothing running, nothing new: the lead is not called again")
        #expect(lead.leadCalls == 3)
    }

    @Test func byDefaultHalfOfWhatIsOutstandingTriggersTheNextCall() {
        var lead = Lead(node: "r", limits: Self.limits())
        _ = lead.start()
        _ = lead.leadAnswered(round: 1, subtasks: Self.items(8), done: false)
        for i in 0..<3 { #expect(lead.subtaskEnded("r/round-1/\(i)", .succeeded).isEmpty) }
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/3", .succeeded)).map(\.0) == [2], "4 of 8")
    }

    @Test func newSubtasksStartBesideRunningOnesWithinMaxParallel() {
        var lead = Lead(node: "r", limits: Self.limits(parallel: 3, replanAfter: 1))
        _ = lead.start()
        #expect(Self.started(lead.leadAnswered(round: 1, subtasks: Self.items(5), done: false)).count == 3)
        let next = lead.subtaskEnded("r/round-1/0", .succeeded)
        #expect(Self.started(next) == ["r/round-1/3"])
        #expect(Self.leadCalls(next).map(\.0) == [2])
        // Round 2's subtasks queue behind round 1's.
        _ = lead.leadAnswered(round: 2, subtasks: Self.items(2), done: false)
        #expect(Self.started(lead.subtaskEnded("r/round-1/1", .failed)) == ["r/round-1/4"])
        #expect(Self.started(lead.subtaskEnded("r/round-1/2", .failed)) == ["r/round-2/0"])
        #expect(lead.running.count == 3)
    }

    @Test func doneLetsRunningSubtasksFinishOrCancelsThem() {
        var waiting = Lead(node: "r", limits: Self.limits(parallel: 2, replanAfter: 1))
        _ = waiting.start()
        _ = waiting.leadAnswered(round: 1, subtasks: Self.items(2), done: false)
        _ = waiting.subtaskEnded("r/round-1/0", .succeeded)
        let after = waiting.leadAnswered(round: 2, subtasks: Self.items(3), done: true)
        #expect(Self.started(after) == ["r/round-2/0"])
        #expect(!after.contains(.cancelRunning))
        _ = waiting.subtaskEnded("r/round-1/1", .succeeded)
        _ = waiting.subtaskEnded("r/round-2/0", .succeeded)
        _ = waiting.subtaskEnded("r/round-2/1", .succeeded)
        #expect(Self.leadCalls(waiting.subtaskEnded("r/round-2/2", .succeeded)).isEmpty, "done: no more lead calls")
        #expect(waiting.finished && waiting.leadCalls == 2)

        var cancelling = Lead(node: "r", limits: Self.limits(parallel: 2, replanAfter: 1, cancel: true))
        _ = cancelling.start()
        _ = cancelling.leadAnswered(round: 1, subtasks: Self.items(2), done: false)
        _ = cancelling.subtaskEnded("r/round-1/0", .succeeded)
        let cancelled = cancelling.leadAnswered(round: 2, subtasks: Self.items(3), done: true)
        #expect(cancelled == [.cancelRunning], "the new plan is dropped, the running one cancelled")
        #expect(cancelling.dropped == 3)
        #expect(cancelling.subtaskEnded("r/round-1/1", .cancelled).isEmpty)
        #expect(cancelling.finished && cancelling.arrived == ["r/round-1/0"])
    }

    @Test func maxSubtasksCutsAPlanAndMaxRoundsCountsLeadCalls() {
        var lead = Lead(node: "r", limits: Self.limits(rounds: 2, subtasks: 5, replanAfter: 1))
        _ = lead.start()
        #expect(Self.started(lead.leadAnswered(round: 1, subtasks: Self.items(3), done: false)).count == 3)
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/0", .succeeded)).map(\.0) == [2])
        #expect(Self.started(lead.leadAnswered(round: 2, subtasks: Self.items(4), done: false)).count == 2)
        #expect(lead.truncated == 2 && lead.planned == 5)
        for path in ["r/round-1/1", "r/round-1/2", "r/round-2/0"] { #expect(Self.leadCalls(lead.subtaskEnded(path, .succeeded)).isEmpty) }
        _ = lead.subtaskEnded("r/round-2/1", .succeeded)
        #expect(lead.finished && lead.leadCalls == 2)
    }

    @Test func whenEverythingOutstandingFailedTheLeadPlansAgain() {
        var lead = Lead(node: "r", limits: Self.limits(rounds: 3, replanAfter: 5))
        _ = lead.start()
        _ = lead.leadAnswered(round: 1, subtasks: Self.items(2), done: false)
        #expect(lead.subtaskEnded("r/round-1/0", .failed).isEmpty)
        // A provider down for one batch does not end the node: the lead plans again, as
        // after a round, seeing what there is (nothing).
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/1", .failed)).first?.0 == 2)
        #expect(lead.leadAnswered(round: 2, subtasks: [], done: false).isEmpty)
        #expect(lead.finished, "nothing ended since: not called again")
    }

    @Test func aReproducedDoneLeavesCancellingToTheShellALiveOneCancels() {
        for reproduced in [true, false] {
            var lead = Lead(
                node: "r", limits: Self.limits(parallel: 2, replanAfter: 1, cancel: true),
                script: [1: [], 2: ["r/round-1/0"]], reproduced: reproduced ? [1, 2] : [])
            _ = lead.start()
            _ = lead.leadAnswered(round: 1, subtasks: Self.items(2), done: false)
            _ = lead.subtaskEnded("r/round-1/0", .succeeded)
            let done = lead.leadAnswered(round: 2, subtasks: Self.items(2), done: true)
            // Replayed: the recorded ends are reproduced subtask by subtask (LeadLoop.work);
            // resumed or forked live: the done cancels what runs now and drops the plan.
            #expect(done.contains(.cancelRunning) == !reproduced)
            #expect(lead.dropped == (reproduced ? 0 : 2))
        }
    }

    @Test func aScriptedCallWaitsForExactlyItsRecordedFindings() {
        let script = [1: [String](), 2: ["r/round-1/1", "r/round-1/0"]]
        var lead = Lead(node: "r", limits: Self.limits(replanAfter: 1), script: script)
        _ = lead.start()
        _ = lead.leadAnswered(round: 1, subtasks: Self.items(3), done: false)
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/2", .succeeded)).isEmpty, "not in the recorded view")
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/0", .succeeded)).isEmpty)
        let call = Self.leadCalls(lead.subtaskEnded("r/round-1/1", .succeeded))
        #expect(call.first?.0 == 2 && call.first?.1 == ["r/round-1/1", "r/round-1/0"], "the recorded order, not this arrival order")
        // Round 3 is not scripted: the arrival rule takes over with what is unseen.
        let third = Self.leadCalls(lead.leadAnswered(round: 2, subtasks: [], done: false))
        #expect(third.first?.1 == ["r/round-1/2", "r/round-1/0", "r/round-1/1"])
    }

    @Test func aScriptThatCannotBeFollowedFallsBackInsteadOfWaitingForever() {
        var lead = Lead(node: "r", limits: Self.limits(replanAfter: 1), script: [2: ["r/round-1/0", "r/round-9/9"]])
        _ = lead.start()
        _ = lead.leadAnswered(round: 1, subtasks: Self.items(1), done: false)
        #expect(Self.leadCalls(lead.subtaskEnded("r/round-1/0", .succeeded)).first?.1 == ["r/round-1/0"])
    }

    /// A run driven in a random arrival order (seeded), then driven again from its recorded
    /// views in other random orders: the lead calls see the same findings in the same order
    /// and the same subtasks run, whatever the order.
    @Test(arguments: 0..<40) func replayingTheRecordedViewsReproducesTheLeadCallsInAnyArrivalOrder(seed: UInt64) {
        let limits = Self.limits(rounds: 5, subtasks: 30, parallel: Int(seed % 5) + 2, replanAfter: seed % 3 == 0 ? nil : Int(seed % 4) + 1)
        let recorded = Self.drive(limits: limits, script: [:], seed: seed)
        #expect(recorded.calls.count >= 3, "a run that re-plans")
        let script = Dictionary(uniqueKeysWithValues: recorded.calls.map { ($0.0, $0.1) })
        for other in 1...3 {
            let replayed = Self.drive(limits: limits, script: script, seed: seed &* 7919 &+ UInt64(other))
            #expect(replayed.calls.map(\.0) == recorded.calls.map(\.0))
            #expect(replayed.calls.map(\.1) == recorded.calls.map(\.1))
            #expect(replayed.ran == recorded.ran)
        }
    }

    /// Runs the machine to the end: a lead whose plan depends only on what it saw (as a
    /// recorded answer does on its request), subtasks failing by name, completions taken in
    /// an order drawn from `seed`.
    static func drive(limits: Lead.Limits, script: [Int: [String]], seed: UInt64) -> (calls: [(Int, [String])], ran: Set<String>) {
        var rng = SplitMix64(seed: seed)
        var lead = Lead(node: "r", limits: limits, script: script)
        var calls: [(Int, [String])] = []
        var pendingLead: (Int, [String])?
        var running: [String] = []
        var ran = Set<String>()
        func take(_ actions: [Lead.Action]) {
            for action in actions {
                switch action {
                case .callLead(let round, let seen):
                    calls.append((round, seen))
                    pendingLead = (round, seen)
                case .start(let s):
                    let path = Lead.path(node: "r", round: s.round, index: s.index)
                    running.append(path)
                    ran.insert(path)
                case .cancelRunning: break
                }
            }
        }
        take(lead.start())
        var steps = 0
        while pendingLead != nil || !running.isEmpty, steps < 10_000 {
            steps += 1
            let pick = Int.random(in: 0...running.count, using: &rng)
            if pick == running.count, let (round, seen) = pendingLead {
                pendingLead = nil
                let count = (seen.count * 3 + round) % 7 + 1
                take(lead.leadAnswered(round: round, subtasks: Self.items(count), done: seen.count > 12))
            } else if !running.isEmpty {
                let path = running.remove(at: min(pick, running.count - 1))
                take(lead.subtaskEnded(path, path.hasSuffix("3") ? .failed : .succeeded))
            }
        }
        #expect(lead.finished)
        return (calls, ran)
    }
}
