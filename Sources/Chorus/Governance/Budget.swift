import ChorusIO
import ChorusTrace
import Foundation
import ChorusJSON

/// Limits on what one run may spend: money in integer micro-dollars, tokens, model calls.
/// Nil means unlimited.
public struct Budget: Sendable, Equatable {
    public var microUSD: Int64?
    public var tokens: Int?
    public var calls: Int?

    public init(microUSD: Int64? = nil, tokens: Int? = nil, calls: Int? = nil) {
        self.microUSD = microUSD
        self.tokens = tokens
        self.calls = calls
    }

    /// Whether any limit is set.
    public var isLimited: Bool { microUSD != nil || tokens != nil || calls != nil }

    /// Dollars as whole micro-dollars, rounded up (a budget is never rounded in the run's favour
    /// of spending more). Nil for a value that is not a finite non-negative number.
    public static func microUSD(_ dollars: Double) -> Int64? {
        guard dollars.isFinite, dollars >= 0, dollars < 9e12 else { return nil }
        return Int64((dollars * 1_000_000).rounded(.up))
    }

    /// The `budget` object of a workflow file (`{"usd": 0.5, "tokens": 200000, "calls": 5000}`).
    init(json: JSONValue?) {
        microUSD = json?["usd"]?.numberValue.flatMap(Self.microUSD)
        tokens = json?["tokens"]?.intValue
        calls = json?["calls"]?.intValue
    }

    /// A budget from its JSON text (as `json` writes it); unlimited when unreadable.
    public init(jsonText: String?) {
        self.init(json: jsonText.flatMap { try? JSONValue(parsing: $0) })
    }

    /// This budget with `other`'s limits where it sets them (the command line over the file).
    public func overridden(by other: Budget) -> Budget {
        Budget(microUSD: other.microUSD ?? microUSD, tokens: other.tokens ?? tokens, calls: other.calls ?? calls)
    }

    /// As JSON, for the run's `run_started` event and reports.
    var json: JSONValue {
        var object: [String: JSONValue] = [:]
        if let microUSD { object["usd"] = .number(Double(microUSD) / 1_000_000) }
        if let tokens { object["tokens"] = .number(Double(tokens)) }
        if let calls { object["calls"] = .number(Double(calls)) }
        return .object(object)
    }
}

/// What a run has spent and holds reserved, against its budget. Before each call the worst
/// case is reserved — every prompt byte counted as a token (a token is at least one byte in
/// the byte-level tokenizers of current model families, so this bound never undercounts)
/// plus `max_tokens`, priced at the model's price and rounded up to a micro-dollar — and the
/// call waits while reservations in flight leave no room, or is refused when nothing is in
/// flight and it still does not fit. After the call the reservation is settled to the
/// provider's usage. So concurrency cannot overshoot: spent + reserved never passes a limit.
///
/// An actor on the event loop, like the model limiters: callers on the loop never hop.
actor BudgetLedger {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    let budget: Budget
    /// Spent so far (settled calls, and what a resumed run's ancestors spent).
    private(set) var spentMicroUSD: Int64
    private(set) var spentTokens: Int
    private(set) var spentCalls: Int
    private var reservedMicroUSD: Int64 = 0
    private var reservedTokens = 0
    private var reservedCalls = 0
    private var waiters: [(id: Int, amount: Amount, continuation: CheckedContinuation<Bool, Never>)] = []
    private var nextWaiter = 0

    /// One call's worst case (reserved) or actual usage (settled).
    struct Amount: Sendable, Equatable {
        var microUSD: Int64
        var tokens: Int
        /// The hold in the database that reserves it (a shared budget).
        var hold: Int64? = nil
    }

    /// A budget many processes spend together (a shared run's): its row in the database.
    struct Shared: Sendable {
        let budgets: any SharedBudgets
        let key: String
        let holder: String
    }
    private let shared: Shared?
    /// Why the shared budget could not be reached, when it could not (calls are refused then).
    private var sharedFailure: String?

    init(budget: Budget, loop: EventLoop, alreadySpent: (microUSD: Int64, tokens: Int, calls: Int) = (0, 0, 0), shared: Shared? = nil) {
        self.budget = budget
        self.loop = loop
        self.shared = shared
        spentMicroUSD = alreadySpent.microUSD
        spentTokens = alreadySpent.tokens
        spentCalls = alreadySpent.calls
    }

    /// The worst case of a request of `promptBytes` with `maxTokens`, at `spec`'s price.
    nonisolated static func worstCase(promptBytes: Int, maxTokens: Int, spec: ModelSpec) -> Amount {
        let tokens = promptBytes + maxTokens
        return Amount(microUSD: spec.microUSD(tokensIn: promptBytes, tokensOut: maxTokens), tokens: tokens)
    }

    /// Reserves `amount` and one call: true at once when it fits; waits while calls in flight
    /// hold what it needs; false when nothing is in flight and it cannot fit (or the task
    /// is cancelled).
    func reserve(_ amount: Amount) async -> Amount? {
        if let shared { return await reserveShared(amount, shared) }
        return await reserveHere(amount) ? amount : nil
    }

    private func reserveHere(_ amount: Amount) async -> Bool {
        if waiters.isEmpty && fits(amount) { hold(amount); return true }
        if reservedCalls == 0 { return false }
        nextWaiter += 1
        let id = nextWaiter
        return await withTaskCancellationHandler {
            await withCheckedContinuation { waiters.append((id, amount, $0)) }
        } onCancel: {
            loop.execute { [self] in assumeIsolated { $0.dropWaiter(id) } }
        }
    }

    /// A hold in the database, taken under a lock there with every process's holds and
    /// spending counted: the same rule as here (wait while holds in flight leave no room,
    /// refuse when none does and it still cannot fit), polled while it waits. An
    /// unreachable database refuses the call: spending it could not count is not allowed.
    private func reserveShared(_ amount: Amount, _ shared: Shared) async -> Amount? {
        var pause = Duration.milliseconds(5)
        while true {
            let decision: BudgetDecision
            do {
                // A hold the cancelled caller abandons is given back (else it keeps its room for 10 minutes).
                decision = try await OffLoop.run({
                    try shared.budgets.reserve(key: shared.key, microUSD: amount.microUSD, tokens: amount.tokens, holder: shared.holder,
                                               leaseSeconds: 600, now: Date().timeIntervalSince1970)
                }, undo: { decision in
                    if case .held(let id) = decision { try? shared.budgets.settle(key: shared.key, hold: id, microUSD: 0, tokens: 0, madeCall: false) }
                })
            } catch is CancellationError {
                return nil
            } catch {
                sharedFailure = "the shared budget could not be reached: \(error)"
                return nil
            }
            switch decision {
            case .held(let id):
                var held = amount
                held.hold = id
                return held
            case .wait:
                do { try await loop.sleep(for: pause) } catch { return nil }
                pause = min(pause * 2, .milliseconds(100))
            case .refused:
                if let spent = try? await OffLoop.run({ try shared.budgets.spent(key: shared.key) }) {
                    (spentMicroUSD, spentTokens, spentCalls) = spent
                }
                return nil
            case .unknown:
                sharedFailure = "the shared budget \(shared.key) has no row in the database"
                return nil
            }
        }
    }

    /// Replaces `reserved` with what the call really used (nothing for a call never made).
    func settle(_ reserved: Amount, actual: Amount?, madeCall: Bool) async {
        if let shared, let hold = reserved.hold {
            let used = actual ?? Amount(microUSD: 0, tokens: 0)
            spentMicroUSD += used.microUSD
            spentTokens += used.tokens
            if madeCall { spentCalls += 1 }
            // Done even when the caller is cancelled meanwhile: what a call used must be counted.
            _ = try? await OffLoop.runToCompletion {
                try shared.budgets.settle(key: shared.key, hold: hold, microUSD: used.microUSD, tokens: used.tokens, madeCall: madeCall)
            }
            return
        }
        reservedMicroUSD -= reserved.microUSD
        reservedTokens -= reserved.tokens
        reservedCalls -= 1
        if let actual {
            spentMicroUSD += actual.microUSD
            spentTokens += actual.tokens
        }
        if madeCall { spentCalls += 1 }
        wake()
    }

    /// Which limit a request of `amount` runs into, in words, for the refusal.
    func exhausted(_ amount: Amount) -> String {
        if let sharedFailure { return sharedFailure }
        if let limit = budget.microUSD, spentMicroUSD + amount.microUSD > limit {
            return "budget exhausted: $\(Self.dollars(spentMicroUSD)) of $\(Self.dollars(limit)) spent, the next call may cost $\(Self.dollars(amount.microUSD))"
        }
        if let limit = budget.tokens, spentTokens + amount.tokens > limit {
            return "budget exhausted: \(spentTokens) of \(limit) tokens used, the next call may use \(amount.tokens)"
        }
        if let limit = budget.calls { return "budget exhausted: \(spentCalls) of \(limit) calls made" }
        return "budget exhausted"
    }

    nonisolated static func dollars(_ micro: Int64) -> String {
        let whole = micro / 1_000_000, fraction = micro % 1_000_000
        let digits = String(fraction)
        return "\(whole)." + String(repeating: "0", count: 6 - digits.count) + digits
    }

    private func fits(_ amount: Amount) -> Bool {
        if let limit = budget.microUSD, spentMicroUSD + reservedMicroUSD + amount.microUSD > limit { return false }
        if let limit = budget.tokens, spentTokens + reservedTokens + amount.tokens > limit { return false }
        if let limit = budget.calls, spentCalls + reservedCalls + 1 > limit { return false }
        return true
    }

    private func hold(_ amount: Amount) {
        reservedMicroUSD += amount.microUSD
        reservedTokens += amount.tokens
        reservedCalls += 1
    }

    /// Admits waiters in order while they fit; once nothing is in flight, those that still
    /// do not fit never will: they are refused.
    private func wake() {
        while let first = waiters.first, fits(first.amount) {
            waiters.removeFirst()
            hold(first.amount)
            first.continuation.resume(returning: true)
        }
        if reservedCalls == 0 {
            let refused = waiters
            waiters.removeAll()
            for waiter in refused { waiter.continuation.resume(returning: false) }
        }
    }

    private func dropWaiter(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(returning: false)
        wake()
    }
}
