import ChorusCoordination
import ChorusIO
import ChorusTrace
import Foundation
import ChorusJSON

/// Limits on what one run may spend: money in integer micro-dollars, tokens, model calls.
/// Nil means unlimited.
public struct Budget: Sendable, Equatable {
    /// Money, in whole micro-dollars (10⁻⁶ $): a call is charged its cost rounded up.
    public var microUSD: Int64?
    /// Tokens read and written, over every call.
    public var tokens: Int?
    /// Model requests, retries and escalations included.
    public var calls: Int?

    /// Limits; leave one out for no limit on it.
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

/// The arithmetic of one budget: what is spent and what calls in flight hold, and the rule
/// that decides a reservation. Pure (no loop, no I/O), so every rule is tested without a
/// provider; `BudgetLedger` is its shell on the event loop, queueing the waiters.
///
/// The rules, each one a promise a budgeted run keeps:
/// - spent + held never passes a limit: a reservation is held only when its worst case fits;
/// - a call is charged what the provider reported, but never more than it reserved (a
///   provider that misreports usage cannot overspend the budget);
/// - a reservation that could not fit even with nothing in flight is refused at once, and
///   once nothing is in flight every waiter is either admitted or refused: a budgeted run
///   never waits for room that cannot come.
struct BudgetBook: Sendable {
    let budget: Budget
    private(set) var spentMicroUSD: Int64
    private(set) var spentTokens: Int
    private(set) var spentCalls: Int
    private(set) var heldMicroUSD: Int64 = 0
    private(set) var heldTokens = 0
    private(set) var heldCalls = 0

    init(budget: Budget, spent: (microUSD: Int64, tokens: Int, calls: Int) = (0, 0, 0)) {
        self.budget = budget
        (spentMicroUSD, spentTokens, spentCalls) = spent
    }

    /// A reservation of `amount` and one call, `first` when no reservation waits ahead of it:
    /// refused (false) when it could not fit even with nothing in flight, held (true) when it
    /// fits now, else it waits. Once nothing is in flight, everything that fits at all fits
    /// now, so the first waiter is always decided.
    mutating func admission(_ amount: BudgetLedger.Amount, first: Bool) -> Admission<Bool> {
        guard fits(amount, counting: false) else { return .decided(false) }
        guard first, fits(amount, counting: true) else { return .waits }
        hold(amount)
        return .decided(true)
    }

    /// Ends a held reservation: the call is charged `reported` (nothing for a call never
    /// made), capped at what it reserved. Returns what was charged.
    @discardableResult
    mutating func settle(_ reserved: BudgetLedger.Amount, reported: BudgetLedger.Amount?, madeCall: Bool) -> BudgetLedger.Amount {
        heldMicroUSD -= reserved.microUSD
        heldTokens -= reserved.tokens
        heldCalls -= 1
        let charged = Self.capped(reported ?? BudgetLedger.Amount(microUSD: 0, tokens: 0), at: reserved)
        spentMicroUSD += charged.microUSD
        spentTokens += charged.tokens
        if madeCall { spentCalls += 1 }
        return charged
    }

    /// `reported`, never more than `reserved` in money or tokens.
    static func capped(_ reported: BudgetLedger.Amount, at reserved: BudgetLedger.Amount) -> BudgetLedger.Amount {
        BudgetLedger.Amount(microUSD: max(0, min(reported.microUSD, reserved.microUSD)), tokens: max(0, min(reported.tokens, reserved.tokens)))
    }

    /// Whether `amount` and one call fit beside what is spent (and, `counting`, what is held).
    private func fits(_ amount: BudgetLedger.Amount, counting held: Bool) -> Bool {
        let (money, tokens, calls) = held ? (heldMicroUSD, heldTokens, heldCalls) : (0, 0, 0)
        if let limit = budget.microUSD, spentMicroUSD + money + amount.microUSD > limit { return false }
        if let limit = budget.tokens, spentTokens + tokens + amount.tokens > limit { return false }
        if let limit = budget.calls, spentCalls + calls + 1 > limit { return false }
        return true
    }

    private mutating func hold(_ amount: BudgetLedger.Amount) {
        heldMicroUSD += amount.microUSD
        heldTokens += amount.tokens
        heldCalls += 1
    }
}

/// What a run has spent and holds reserved, against its budget, on the event loop. Before
/// each call its worst case is reserved (`CallSize.worstCase`: every request byte a token,
/// plus `max_tokens`, priced at the model's price and rounded up to a micro-dollar) and the
/// call waits while reservations in flight leave no room, or is
/// refused when it cannot fit. After the call the reservation is settled to the provider's
/// usage, capped at the reservation. The rules are `BudgetBook`'s.
///
/// An actor on the event loop, like the model limiters: callers on the loop never hop.
actor BudgetLedger: LoopWaiting {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    let budget: Budget
    private var book: BudgetBook
    /// Reservations waiting for room: true when held, false when refused or cancelled.
    var waiters = WaiterQueue<Amount, Bool>()
    /// Spent so far (settled calls, and what a resumed run's ancestors spent).
    var spentMicroUSD: Int64 { book.spentMicroUSD }
    var spentTokens: Int { book.spentTokens }
    var spentCalls: Int { book.spentCalls }

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
    /// What a shared budget's row said was spent when it refused a call (for the message).
    private var sharedSpent: (microUSD: Int64, tokens: Int, calls: Int)?

    init(budget: Budget, loop: EventLoop, alreadySpent: (microUSD: Int64, tokens: Int, calls: Int) = (0, 0, 0), shared: Shared? = nil) {
        self.budget = budget
        self.loop = loop
        self.shared = shared
        book = BudgetBook(budget: budget, spent: alreadySpent)
    }

    /// Reserves `amount` and one call: true at once when it fits; waits while calls in flight
    /// hold what it needs; false when nothing is in flight and it cannot fit (or the task
    /// is cancelled).
    func reserve(_ amount: Amount) async -> Amount? {
        if let shared { return await reserveShared(amount, shared) }
        return await reserveHere(amount) ? amount : nil
    }

    private func reserveHere(_ amount: Amount) async -> Bool {
        // Held or refused at once, in one synchronous step: only a wait needs a continuation.
        if let held = decideAtOnce(amount) { return held }
        return await wait(amount, cancelled: false)
    }

    func admission(_ amount: Amount, first: Bool) -> Admission<Bool> {
        book.admission(amount, first: first)
    }

    /// A hold in the database, taken under a lock there with every process's holds and
    /// spending counted: the same rule as here (wait while holds in flight leave no room,
    /// refuse when none does and it still cannot fit), polled while it waits. An
    /// unreachable database refuses the call: spending it could not count is not allowed.
    private func reserveShared(_ amount: Amount, _ shared: Shared) async -> Amount? {
        var backoff = Backoff(upTo: .milliseconds(100))
        while true {
            let decision: BudgetDecision
            do {
                // A hold the cancelled caller abandons is given back (else it keeps its room for 10 minutes).
                decision = try await OffLoop.run(
                    {
                        try shared.budgets.reserve(
                            key: shared.key, microUSD: amount.microUSD, tokens: amount.tokens, holder: shared.holder,
                            leaseSeconds: 600, now: Date().timeIntervalSince1970)
                    },
                    undo: { decision in
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
                sharedFailure = nil
                var held = amount
                held.hold = id
                return held
            case .wait:
                do { try await loop.sleep(for: backoff.pause) } catch { return nil }
                backoff.grow()
            case .refused:
                if let spent = try? await OffLoop.run({ try shared.budgets.spent(key: shared.key) }) { sharedSpent = spent }
                return nil
            case .unknown:
                sharedFailure = "the shared budget \(shared.key) has no row in the database"
                return nil
            }
        }
    }

    /// Replaces `reserved` with what the call really used (nothing for a call never made),
    /// never more than it reserved. Returns what was charged.
    @discardableResult
    func settle(_ reserved: Amount, actual: Amount?, madeCall: Bool) async -> Amount {
        if let shared, let hold = reserved.hold {
            let used = BudgetBook.capped(actual ?? Amount(microUSD: 0, tokens: 0), at: reserved)
            // Done even when the caller is cancelled meanwhile: what a call used must be counted.
            _ = try? await OffLoop.runToCompletion {
                try shared.budgets.settle(key: shared.key, hold: hold, microUSD: used.microUSD, tokens: used.tokens, madeCall: madeCall)
            }
            return used
        }
        let charged = book.settle(reserved, reported: actual, madeCall: madeCall)
        wakeWaiters()
        return charged
    }

    /// Which limit a request of `amount` runs into, in words, for the refusal.
    func exhausted(_ amount: Amount) -> String {
        if let sharedFailure { return sharedFailure }
        let (money, tokens, calls) = sharedSpent ?? (book.spentMicroUSD, book.spentTokens, book.spentCalls)
        if let limit = budget.microUSD, money + amount.microUSD > limit {
            return "budget exhausted: $\(Self.dollars(money)) of $\(Self.dollars(limit)) spent, the next call may cost $\(Self.dollars(amount.microUSD))"
        }
        if let limit = budget.tokens, tokens + amount.tokens > limit {
            return "budget exhausted: \(tokens) of \(limit) tokens used, the next call may use \(amount.tokens)"
        }
        if let limit = budget.calls { return "budget exhausted: \(calls) of \(limit) calls made" }
        return "budget exhausted"
    }

    nonisolated static func dollars(_ micro: Int64) -> String {
        let whole = micro / 1_000_000, fraction = micro % 1_000_000
        let digits = String(fraction)
        return "\(whole)." + String(repeating: "0", count: 6 - digits.count) + digits
    }
}
