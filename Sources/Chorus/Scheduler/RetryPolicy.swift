/// Exponential backoff with full jitter (a uniform delay between zero and the capped
/// exponential), honouring a provider's Retry-After when it asks for longer.
package struct RetryPolicy: Sendable {
    /// The first backoff's ceiling.
    package var base: Duration = .milliseconds(200)
    /// No backoff exceeds this, Retry-After aside.
    package var cap: Duration = .seconds(20)

    /// The policy Chorus uses by default.
    package init() {}

    /// The delay before retry number `retry` (1 for the first retry).
    package func delay<R: RandomNumberGenerator>(retry: Int, retryAfter: Duration?, using rng: inout R) -> Duration {
        let exponent = min(retry - 1, 20)
        let ceiling = min(cap, base * (1 << exponent))
        let ceilingMs = Int64(ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000)
        let jittered = Duration.milliseconds(Int64.random(in: 0...max(0, ceilingMs), using: &rng))
        if let retryAfter, retryAfter > jittered { return min(retryAfter, .seconds(120)) }
        return jittered
    }
}
