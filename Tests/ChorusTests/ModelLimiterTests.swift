import Foundation
@testable import Chorus
import ChorusIO
import ChorusJSON
import Testing

@Suite struct ModelLimiterTests {
    private func spec(_ settings: JSONValue) -> ModelSpec {
        var json: [String: JSONValue] = ["provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"]
        json.merge(settings.objectValue ?? [:]) { $1 }
        return ModelSpec(name: "m", json: .object(json))
    }

    /// Whether `task` has finished once the limiter has queued a waiter: parked there, it has not.
    private func finished(_ task: Task<Int, Never>, _ flag: Flag, limiter: ModelLimiter) async -> Bool {
        await untilWaiting(limiter, 1)
        return flag.value
    }

    @Test func theConcurrencyCapMakesTheNextRequestWaitForARelease() async throws {
        let loop = try EventLoop()
        let limiter = ModelLimiter(spec: spec(["max_concurrency": 2]), loop: loop)
        let first = try await limiter.acquire(estimatedTokens: 1)
        _ = try await limiter.acquire(estimatedTokens: 1)
        let flag = Flag()
        let third = Task(executorPreference: loop) {
            let ticket = (try? await limiter.acquire(estimatedTokens: 1)) ?? -1; flag.value = true; return ticket
        }
        #expect(await !finished(third, flag, limiter: limiter), "a third request must wait")
        await limiter.release(first, actualTokens: 1)
        _ = await third.value
        #expect(flag.value)
        #expect(await limiter.peakInFlight == 2)
        loop.shutdown()
    }

    @Test func aWaitEndsAtOnceWhenItsTaskIsCancelled() async throws {
        let loop = try EventLoop()
        // One request a minute: the second would wait 60 s.
        let limiter = ModelLimiter(spec: spec(["requests_per_minute": 1, "max_concurrency": 5]), loop: loop)
        let first = try await limiter.acquire(estimatedTokens: 1)
        let waiting = Task(executorPreference: loop) { () async -> Bool in
            do { _ = try await limiter.acquire(estimatedTokens: 1); return false } catch { return true }
        }
        await untilWaiting(limiter, 1)
        waiting.cancel()
        #expect(await waiting.value, "the cancelled wait throws CancellationError instead of waiting out the window")
        await limiter.release(first, actualTokens: 1)
        let cancelledEarly = Task(executorPreference: loop) { () async -> Bool in
            withUnsafeCurrentTask { $0?.cancel() }
            do { _ = try await limiter.acquire(estimatedTokens: 1); return false } catch { return true }
        }
        #expect(await cancelledEarly.value)
        loop.shutdown()
    }

    @Test func theTokenWindowCountsActualTokensNotEstimates() async throws {
        let loop = try EventLoop()
        let limiter = ModelLimiter(spec: spec(["tokens_per_minute": 100]), loop: loop)
        let first = try await limiter.acquire(estimatedTokens: 60)
        let flag = Flag()
        let second = Task(executorPreference: loop) {
            let ticket = (try? await limiter.acquire(estimatedTokens: 60)) ?? -1; flag.value = true; return ticket
        }
        #expect(await !finished(second, flag, limiter: limiter), "60 + 60 estimated tokens exceed 100 per minute")
        await limiter.release(first, actualTokens: 10)
        _ = await second.value
        #expect(flag.value, "10 actual + 60 estimated fit")
        loop.shutdown()
    }

    /// The window slides on the injected clock: a held-back request goes once a minute has
    /// passed on it, and not a moment before, with no real waiting.
    @Test func theWindowOpensWhenAMinuteHasPassedOnTheLimitersClock() async throws {
        let loop = try EventLoop()
        let clock = ManualClock()
        let limiter = ModelLimiter(spec: spec(["requests_per_minute": 2]), loop: loop, now: { clock.now })
        for _ in 0..<2 { await limiter.release(try await limiter.acquire(estimatedTokens: 1), actualTokens: 1) }
        let flag = Flag()
        let third = Task(executorPreference: loop) {
            let ticket = (try? await limiter.acquire(estimatedTokens: 1)) ?? -1; flag.value = true; return ticket
        }
        clock.advance(by: .seconds(59))
        await limiter.recheck()
        #expect(await !finished(third, flag, limiter: limiter), "59 s on: both requests are still in the window")
        clock.advance(by: .seconds(1))
        await limiter.recheck()
        #expect(await third.value > 0, "60 s on: the window has room again")
        loop.shutdown()
    }

    @Test func theRequestWindowHoldsBackTheRequestOverTheLimit() async throws {
        let loop = try EventLoop()
        // The limiter's clock stands still: a stalled machine cannot let a minute pass and
        // open the window before the cancellation (seen once in CI after a two-minute stall).
        let clock = ManualClock()
        let limiter = ModelLimiter(spec: spec(["requests_per_minute": 3]), loop: loop, now: { clock.now })
        for _ in 0..<3 { await limiter.release(try await limiter.acquire(estimatedTokens: 1), actualTokens: 1) }
        let flag = Flag()
        let fourth = Task(executorPreference: loop) {
            let ticket = (try? await limiter.acquire(estimatedTokens: 1)) ?? -1; flag.value = true; return ticket
        }
        #expect(await !finished(fourth, flag, limiter: limiter), "a fourth request within the minute must wait, even with none in flight")
        fourth.cancel()
        #expect(await fourth.value == -1, "cancelled, the wait ends without a ticket")
        loop.shutdown()
    }
}

/// A clock a test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ContinuousClock.now
    var now: ContinuousClock.Instant { lock.withLock { current } }
    func advance(by duration: Duration) { lock.withLock { current += duration } }
}

final class Flag: @unchecked Sendable {
    var value = false
}
