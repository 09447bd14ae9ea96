@testable import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Budgets are reserved before each call and settled after: no concurrency overshoots them.
@Suite struct BudgetTests {
    /// A planner (free, so its huge max_tokens reserves nothing) fanning out `items` worker
    /// calls at 1/2 µ$ per token in/out, all at once.
    private func fanOut(_ h: RunHarness, items: Int, budget: JSONValue? = nil) throws -> String {
        try h.writeConfig([
            "planner": ["model": .string("planner-\(items)"), "price": ["input_per_mtok": 0, "output_per_mtok": 0]],
            "small": ["model": "sim-small"],
        ])
        try h.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("worker", model: "small", prompt: "{{item}}", extra: ["max_tokens": 300, "retries": 0])
        let workflow = try h.workflow(
            "fan",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": .number(Double(items))],
            ], output: "work")
        if let budget {
            var file = try JSONValue(parsing: Array(try Data(contentsOf: URL(fileURLWithPath: workflow))))
            file = .object((file.objectValue ?? [:]).merging(["budget": budget]) { $1 })
            try Data(file.serialized()).write(to: URL(fileURLWithPath: workflow))
        }
        return workflow
    }

    /// What the trace says was spent, in micro-dollars, priced as the budget prices it.
    private func spent(_ store: TraceStore, _ runID: String, _ h: RunHarness, workflow: String) throws -> Int64 {
        let models = try h.load(workflow).config.models
        return try store.modelCalls(ofRun: runID).reduce(Int64(0)) { total, call in
            total + (models[call.model]?.cost(tokensIn: call.tokensIn, tokensOut: call.tokensOut).microRoundedUp ?? 0)
        }
    }

    @Test func aThousandParallelCallsNeverSpendPastTheBudget() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h, items: 1000)
        let (summary, store) = try await h.run(workflow, maxParallel: 1000, budget: Budget(microUSD: 10_000))  // $0.01
        #expect(summary.status == .failed && summary.errorCode == .budgetExhausted, "\(summary.error ?? "")")
        #expect(summary.errorCode?.exitStatus == 3)
        let spent = try spent(store, summary.runID, h, workflow: workflow)
        #expect(spent <= 10_000, "spent \(spent) µ$ of 10,000")
        #expect(spent > 5_000, "the budget was used, not refused at once (\(spent) µ$)")
        let requests = h.stats()["requests"]?.intValue ?? -1
        #expect(requests == (try store.modelCalls(ofRun: summary.runID).count), "every request the sim saw is in the trace")
        #expect(requests < 1001)
        #expect(summary.failedItems.count == 1000 - (requests - 1), "every item not run is reported")
        #expect(summary.failedItems.allSatisfy { $0.reason.contains("budget exhausted") || $0.reason.contains("not run") })
        await h.shutdown()
    }

    @Test func aCallBudgetAllowsExactlyThatManyCalls() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h, items: 50)
        let (summary, store) = try await h.run(workflow, maxParallel: 50, budget: Budget(calls: 7))
        #expect(summary.errorCode == .budgetExhausted)
        #expect(h.stats()["requests"]?.intValue == 7)
        #expect(try store.modelCalls(ofRun: summary.runID).count == 7)
        #expect(summary.error?.contains("7 of 7 calls made") == true, "\(summary.error ?? "")")
        await h.shutdown()
    }

    /// A model's budget in chorus.json and a node's in the workflow hold like the run's.
    @Test func modelAndNodeBudgetsHoldToo() async throws {
        let h = try RunHarness()
        var workflow = try fanOut(h, items: 30)
        try h.writeConfig([
            "planner": ["model": "planner-30", "price": ["input_per_mtok": 0, "output_per_mtok": 0]],
            "small": ["model": "sim-small", "budget": ["calls": 5]],
        ])
        let (byModel, store) = try await h.run(workflow, maxParallel: 30)
        #expect(byModel.errorCode == .budgetExhausted && byModel.error?.hasPrefix("model 'small': budget exhausted") == true, "\(byModel.error ?? "")")
        #expect(try store.modelCalls(ofRun: byModel.runID).filter { $0.model == "small" }.count == 5)

        try h.writeConfig(["planner": ["model": "planner-30", "price": ["input_per_mtok": 0, "output_per_mtok": 0]], "small": ["model": "sim-small"]])
        workflow = try h.workflow(
            "fan",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": 30, "budget": ["calls": 6]],
            ], output: "work")
        let (byNode, _) = try await h.run(workflow, maxParallel: 30)
        #expect(byNode.errorCode == .budgetExhausted && byNode.error?.hasPrefix("this node: budget exhausted: 6 of 6 calls") == true, "\(byNode.error ?? "")")
        #expect(try store.modelCalls(ofRun: byNode.runID).count == 7, "the plan and six workers")
        await h.shutdown()
    }

    /// Failed calls settle to what they used (nothing): a budget is not eaten by errors.
    @Test func failedCallsSettleToNothing() async throws {
        let h = try RunHarness { $0.errorRate = 1 }
        let workflow = try fanOut(h, items: 3)
        let ledger = BudgetLedger(budget: Budget(microUSD: 1_000_000), loop: h.loop)
        let worst = BudgetLedger.Amount(microUSD: 900_000, tokens: 10)
        #expect(await ledger.reserve(worst) != nil)
        // A second worst case does not fit beside the first: it waits for the settlement.
        let second = Task { await ledger.reserve(worst) }
        await ledger.settle(worst, actual: .init(microUSD: 0, tokens: 0), madeCall: true)
        #expect(await second.value != nil, "the failed call used nothing, so the second fits")
        await ledger.settle(worst, actual: .init(microUSD: 50, tokens: 10), madeCall: true)
        let spentMicro = await ledger.spentMicroUSD
        let spentCalls = await ledger.spentCalls
        #expect(spentMicro == 50 && spentCalls == 2)
        // Nothing in flight and no room: refused at once, not a wait.
        #expect(await ledger.reserve(.init(microUSD: 2_000_000, tokens: 1)) == nil)
        let (summary, _) = try await h.run(workflow, maxParallel: 3, budget: Budget(microUSD: 100_000))
        #expect(summary.errorCode != .budgetExhausted, "every call failed, none was refused: \(summary.error ?? "")")
        await h.shutdown()
    }

    /// A resumed run starts from what its parent spent.
    @Test func aResumeContinuesItsParentsSpend() async throws {
        let h = try RunHarness()
        let workflow = try fanOut(h, items: 20, budget: ["calls": 10])
        let (first, store) = try await h.run(workflow, maxParallel: 20)
        #expect(first.errorCode == .budgetExhausted)
        let before = h.stats()["requests"]?.intValue ?? 0
        let writer = TraceWriter(store: store)
        let resumed = await
            (try? Resumer.resume(
                first.runID, store: store, project: try h.load(workflow), client: h.client, trace: writer,
                loop: h.loop, maxParallel: 20, progress: RunProgress()))
        writer.close()
        #expect(resumed?.errorCode == .budgetExhausted, "\(resumed?.error ?? "")")
        #expect((h.stats()["requests"]?.intValue ?? 0) == before, "the parent spent all 10 calls: none is left")
        await h.shutdown()
    }

    // MARK: the book's rules, without a loop

    private func amount(_ micro: Int64, _ tokens: Int = 0) -> BudgetLedger.Amount { .init(microUSD: micro, tokens: tokens) }

    /// Once nothing is in flight, every waiter is decided: admitted if it fits, else refused.
    /// (The hang of issue 23 was a waiter no settle would ever reach; the rule cannot leave one.)
    @Test func theLastSettleDecidesEveryWaiter() async throws {
        let loop = try EventLoop()
        let ledger = BudgetLedger(budget: Budget(calls: 2), loop: loop)
        #expect(await ledger.reserve(amount(1)) != nil)
        #expect(await ledger.reserve(amount(1)) != nil)
        var waiting: [Task<BudgetLedger.Amount?, Never>] = []
        for count in 1...4 {
            waiting.append(Task(executorPreference: loop) { [one = amount(1)] in await ledger.reserve(one) })
            await untilWaiting(ledger, count)
        }
        await ledger.settle(amount(1), actual: amount(1), madeCall: true)
        #expect(await ledger.waitingCount == 4, "a call is still in flight")
        await ledger.settle(amount(1), actual: amount(1), madeCall: true)
        for task in waiting { #expect(await task.value == nil) }
        #expect(await ledger.waitingCount == 0)
        #expect(await ledger.reserve(amount(1)) == nil, "refused at once: it can never fit")
        loop.shutdown()
    }

    /// A call that never happened gives its room back to the first waiter.
    @Test func aCallNeverMadeAdmitsTheNextWaiter() {
        var book = BudgetBook(budget: Budget(microUSD: 100))
        #expect(book.admission(amount(80), first: true).held == true)
        #expect(book.admission(amount(80), first: true).held == nil, "it waits while the first is in flight")
        #expect(book.admission(amount(30), first: false).held == nil, "first come, first served: it waits behind")
        book.settle(amount(80), reported: nil, madeCall: false)
        #expect(book.spentCalls == 0 && book.spentMicroUSD == 0)
        #expect(book.admission(amount(80), first: true).held == true)
    }

    /// A provider's report is charged, but never past the reservation.
    @Test func aSettleIsCappedAtTheReservation() {
        var book = BudgetBook(budget: Budget(microUSD: 1_000, tokens: 1_000))
        #expect(book.admission(amount(300, 200), first: true).held == true)
        let charged = book.settle(amount(300, 200), reported: amount(15_000, 10_000), madeCall: true)
        #expect(charged == amount(300, 200))
        #expect(book.spentMicroUSD == 300 && book.spentTokens == 200)
        // A waiter that can never fit beside what is spent is refused even while others are in flight.
        #expect(book.admission(amount(100), first: true).held == true)
        #expect(book.admission(amount(800), first: false).held == false)
    }

    /// What a call is charged from what its provider reported.
    @Test func reportedUsageIsBoundedByWhatWasAskedFor() {
        let honest = ReportedUsage(reportedIn: 40, reportedOut: 50, requestBytes: 300, answerBytes: 200, maxTokens: 50)
        #expect(honest == ReportedUsage(reportedIn: 40, reportedOut: 50, requestBytes: 300, answerBytes: 200, maxTokens: 50))
        #expect(honest.tokensIn == 40 && honest.tokensOut == 50 && honest.fault == nil && honest.capped == nil)
        let liar = ReportedUsage(reportedIn: 10, reportedOut: 2_500, requestBytes: 300, answerBytes: 4, maxTokens: 50)
        #expect(liar.tokensOut == 50 && liar.fault?.contains("2500 output tokens for max_tokens 50") == true)
        let inflated = ReportedUsage(reportedIn: 9_000, reportedOut: 5, requestBytes: 300, answerBytes: 20, maxTokens: 50)
        #expect(inflated.tokensIn == 300 && inflated.fault == nil && inflated.capped != nil, "charged, not failed")
        let silent = ReportedUsage(reportedIn: 0, reportedOut: 0, requestBytes: 400, answerBytes: 180, maxTokens: 50)
        #expect(silent.tokensIn == 100 && silent.tokensOut == 45 && silent.fault == nil, "estimated at 4 bytes a token")
        let flood = ReportedUsage(reportedIn: 0, reportedOut: 0, requestBytes: 400, answerBytes: 45_000, maxTokens: 50)
        #expect(flood.tokensOut == 50 && flood.fault != nil)
        let understated = ReportedUsage(reportedIn: 1, reportedOut: 1, requestBytes: 400, answerBytes: 1_000_000, maxTokens: 50)
        #expect(
            understated.tokensOut == 50 && understated.fault?.contains("though 1 output tokens were reported") == true,
            "what arrived counts, whatever was reported")
        let terse = ReportedUsage(reportedIn: 1, reportedOut: 1, requestBytes: 400, answerBytes: 320, maxTokens: 50)
        #expect(terse.tokensOut == 20 && terse.fault == nil, "320 bytes hold at least 20 tokens")
    }

    /// The polls' pause: 5 ms doubling to its ceiling, short again after a change.
    @Test func aBackoffDoublesToItsCeilingAndStartsOver() {
        var backoff = Backoff(upTo: .milliseconds(50))
        var pauses: [Duration] = []
        for _ in 0..<6 { pauses.append(backoff.pause); backoff.grow() }
        #expect(pauses == [.milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(50), .milliseconds(50)])
        backoff.reset()
        #expect(backoff.pause == .milliseconds(5))
    }
}

private extension Admission<Bool> {
    /// Held (true), refused (false) or waiting (nil).
    var held: Bool? { if case .decided(let held) = self { held } else { nil } }
}
