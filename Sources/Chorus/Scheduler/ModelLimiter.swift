import ChorusCoordination
import ChorusIO
import ChorusTrace
import Dispatch
import Foundation

/// Keeps one model within its provider's limits, for every node that uses it: requests
/// in flight (`max_concurrency`), requests per minute and tokens per minute.
///
/// The per-minute limits are sliding windows over the last 60 s, not token buckets: a
/// bucket's burst allowance lets a full minute exceed the limit, a window never does.
package actor ModelLimiter: LoopWaiting {
    nonisolated let loop: EventLoop
    package nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    private let maxConcurrency: Int?
    private let requestsPerMinute: Int?
    private let tokensPerMinute: Int?
    private var inFlight = 0
    private var requests: [ContinuousClock.Instant] = []
    private var tokens: [(ticket: Int, at: ContinuousClock.Instant, count: Int)] = []
    private var nextTicket = 0
    private var tokenSum = 0
    /// Requests waiting for room, by estimated tokens: a ticket when admitted, nil when cancelled.
    var waiters = WaiterQueue<Int, Int?>()
    private var wakeScheduled = false
    /// Most requests in flight at once so far (for tests and progress).
    package private(set) var peakInFlight = 0
    /// The clock the windows are measured on; injectable so tests move time instead of sleeping.
    private let now: @Sendable () -> ContinuousClock.Instant
    /// `max_concurrency` shared with every process on the trace database (PostgreSQL), and
    /// the slot each admitted ticket holds there.
    private let shared: (any SharedConcurrency)?
    private let sharedKey: String
    private let holder: String
    private var slots: [Int: Int] = [:]
    /// The per-minute windows shared the same way, and the window entry each ticket holds.
    private let rates: (any SharedRates)?
    private var rateEntries: [Int: Int64] = [:]

    /// A limiter for `spec`'s limits, measuring its windows with `now`.
    package init(
        spec: ModelSpec, loop: EventLoop, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        shared: (any SharedConcurrency)? = nil, rates: (any SharedRates)? = nil, holder: String = ""
    ) {
        // One key per provider resource, so workers whose chorus.json name it differently share it.
        self.shared = spec.maxConcurrency == nil ? nil : shared
        self.rates = spec.requestsPerMinute == nil && spec.tokensPerMinute == nil ? nil : rates
        sharedKey = spec.endpoint + " " + spec.model
        self.holder = holder
        maxConcurrency = spec.maxConcurrency
        requestsPerMinute = spec.requestsPerMinute
        tokensPerMinute = spec.tokensPerMinute
        self.loop = loop
        self.now = now
    }

    /// Admits the waiters that fit now. The window timer does this when the oldest entry
    /// expires; a test that moves an injected clock calls it instead of waiting.
    func recheck() {
        wakeWaiters()
    }

    /// Waits until a request estimated at `estimatedTokens` fits every limit, then counts
    /// it. Returns the ticket to hand to `release`. Cancelling the calling task ends the wait
    /// at once (a window can hold a waiter for up to a minute) with `CancellationError`.
    package func acquire(estimatedTokens: Int) async throws(CancellationError) -> Int {
        let ticket = try await acquireHere(estimatedTokens: estimatedTokens)
        try await takeSharedRate(ticket, estimatedTokens: estimatedTokens)
        guard let shared, let limit = maxConcurrency else { return ticket }
        // Then a slot of the database's, polled (5 ms, doubling to 50 ms) while all are taken.
        var backoff = Backoff(upTo: .milliseconds(50))
        let (key, holder) = (sharedKey, self.holder)
        while true {
            let slot: Int?
            do {
                // A slot the cancelled caller abandons is freed when the query comes back.
                slot = try await OffLoop.run(
                    { try shared.tryAcquire(key: key, limit: limit, holder: holder, leaseSeconds: 600) },
                    undo: { slot in if let slot { try? shared.release(key: key, slot: slot, holder: holder) } })
            } catch is CancellationError {
                release(ticket, actualTokens: 0)
                throw CancellationError()
            } catch {
                // The database is unreachable: the limit holds in this process only rather
                // than stopping the run (its trace writes will say why if it stays down).
                return ticket
            }
            if let slot {
                slots[ticket] = slot
                return ticket
            }
            do { try await loop.sleep(for: backoff.pause) } catch {
                release(ticket, actualTokens: 0)
                throw CancellationError()
            }
            backoff.grow()
        }
    }

    /// The database's windows (every process's requests and tokens of this model in the
    /// last 60 s): waits, as told, until the request fits them. Unreachable, the process's
    /// own windows hold alone, as for slots.
    private func takeSharedRate(_ ticket: Int, estimatedTokens: Int) async throws(CancellationError) {
        guard let rates else { return }
        let (key, rpm, tpm) = (sharedKey, requestsPerMinute, tokensPerMinute)
        while true {
            let decision: RateDecision
            do {
                decision = try await OffLoop.run {
                    try rates.take(
                        key: key, requestsPerMinute: rpm, tokensPerMinute: tpm, tokens: estimatedTokens,
                        now: Date().timeIntervalSince1970)
                }
            } catch is CancellationError {
                release(ticket, actualTokens: 0)
                throw CancellationError()
            } catch {
                return
            }
            switch decision {
            case .admitted(let entry):
                rateEntries[ticket] = entry
                return
            case .wait(let seconds):
                // Woken at least once a second: another process's settled estimate may free room sooner.
                do { try await loop.sleep(for: .milliseconds(Int64(min(max(seconds, 0.005), 1) * 1000))) } catch {
                    release(ticket, actualTokens: 0)
                    throw CancellationError()
                }
            }
        }
    }

    private func acquireHere(estimatedTokens: Int) async throws(CancellationError) -> Int {
        // Admitted at once in one synchronous step (once per call: no continuation for it).
        if case let ticket?? = decideAtOnce(estimatedTokens) { return ticket }
        guard let ticket = await wait(estimatedTokens, cancelled: nil) else { throw CancellationError() }
        return ticket
    }

    /// A request estimated at `estimate` tokens is admitted when it fits every limit and no
    /// request is ahead of it.
    func admission(_ estimate: Int, first: Bool) -> Admission<Int?> {
        guard first, fits(estimate) else { return .blocks }
        return .decided(admit(estimate))
    }

    /// Ends the request holding `ticket`; `actualTokens` replaces its estimate in the
    /// token window.
    package func release(_ ticket: Int, actualTokens: Int) {
        if let slot = slots.removeValue(forKey: ticket), let shared {
            let (key, holder) = (sharedKey, self.holder)
            // Fire and forget, off the loop: nothing waits for it.
            DispatchQueue.global().async { try? shared.release(key: key, slot: slot, holder: holder) }
        }
        if let entry = rateEntries.removeValue(forKey: ticket), let rates, tokensPerMinute != nil {
            DispatchQueue.global().async { try? rates.settle(entry: entry, tokens: actualTokens) }
        }
        inFlight -= 1
        if let entry = tokens.lastIndex(where: { $0.ticket == ticket }) {
            tokenSum += actualTokens - tokens[entry].count
            tokens[entry].count = actualTokens
        }
        wakeWaiters()
    }

    private func fits(_ estimate: Int) -> Bool {
        prune()
        if let max = maxConcurrency, inFlight >= max { return false }
        if let rpm = requestsPerMinute, requests.count >= rpm { return false }
        // A request larger than the whole budget may go alone once the window is empty.
        if let tpm = tokensPerMinute, tokenSum + estimate > tpm, tokenSum > 0 { return false }
        return true
    }

    private func admit(_ estimate: Int) -> Int {
        nextTicket += 1
        inFlight += 1
        peakInFlight = max(peakInFlight, inFlight)
        let now = self.now()
        if requestsPerMinute != nil { requests.append(now) }
        if tokensPerMinute != nil {
            tokens.append((nextTicket, now, estimate))
            tokenSum += estimate
        }
        return nextTicket
    }

    private func prune() {
        let horizon = now() - .seconds(60)
        while let first = requests.first, first <= horizon { requests.removeFirst() }
        while let first = tokens.first, first.at <= horizon {
            tokenSum -= first.count
            tokens.removeFirst()
        }
    }

    /// When waiters are blocked only by a per-minute window, wake when its oldest entry expires.
    func waitersChanged() {
        guard !waiters.isEmpty, !wakeScheduled else { return }
        let oldest = [requests.first, tokens.first?.at].compactMap { $0 }.min()
        guard let oldest else { return }
        wakeScheduled = true
        let delay = max(.milliseconds(1), oldest + .seconds(60) - now())
        Timer.schedule(on: loop, after: delay) { [self] in
            assumeIsolated { limiter in
                limiter.wakeScheduled = false
                limiter.wakeWaiters()
            }
        }
    }
}
