import ChorusJSON
import Foundation
import HTTPTypes

/// How `chorus sim` behaves: latency, streaming granularity and pace, determinism seed
/// and fault-injection rates.
public struct SimulatorConfiguration: Sendable, Equatable {
    /// Fixed delay before each answer, in milliseconds.
    public var latencyMs: Int = 0
    /// Extra delay drawn uniformly from 0…jitterMs per request.
    public var jitterMs: Int = 0
    /// Simulator tokens (four UTF-8 bytes, see `simulatorTokens`) per streamed delta event.
    /// 1, the default, is how OpenAI and llama.cpp stream: one token per event.
    public var tokensPerEvent: Int = 1
    /// Tokens per second each stream is paced at after its first token (which goes out after
    /// the latency); 0 sends the whole stream at once.
    public var tokensPerSecond: Double = 0
    /// Seeds answer content and the fault sequence; the same seed gives the same run.
    public var seed: UInt64 = 0
    /// Fraction of model requests answered with HTTP 500.
    public var errorRate: Double = 0
    /// Fraction answered with HTTP 429 and a Retry-After header.
    public var rateLimitRate: Double = 0
    /// Fraction answered with a truncated (invalid) JSON body.
    public var malformedRate: Double = 0
    /// Fraction never answered: the connection stays open until the client gives up.
    public var hangRate: Double = 0
    /// Fraction of model requests that take `slowMs` longer than the latency: the heavy
    /// tail real providers have (issue 27), which is what a lead that waits for every worker
    /// of a round loses to.
    public var slowRate: Double = 0
    /// How much longer a slow request takes, in milliseconds.
    public var slowMs: Int = 0
    /// The Retry-After value sent with 429 answers, in seconds (may be fractional).
    public var retryAfterSeconds: Double = 1
    /// Which header fields carry it.
    public var retryAfterStyle: RetryAfterStyle = .standard
    /// Ground truth: model → the fraction of eval tasks (`EvalTask`) it answers right,
    /// deterministic per case and seed. Other models answer tasks as any prompt.
    public var accuracy: [String: Double] = ["sim-small": 0.70, "sim-large": 0.97]

    /// The default: no latency, no faults, seed 0.
    public init() {}

    /// Why these settings cannot be used, or nil when they can.
    public var problem: String? {
        let rates = [
            ("--error-rate", errorRate), ("--rate-limit-rate", rateLimitRate),
            ("--malformed-rate", malformedRate), ("--hang-rate", hangRate),
        ]
        for (flag, rate) in rates where !(0...1).contains(rate) {
            return "\(flag) must be between 0 and 1, got \(rate)"
        }
        if rates.map(\.1).reduce(0, +) > 1 { return "the fault rates add up to more than 1" }
        // Upper bounds keep every conversion to milliseconds and Int finite.
        if !(0...3_600_000).contains(latencyMs) { return "--latency-ms must be between 0 and 3600000" }
        if !(0...3_600_000).contains(jitterMs) { return "--jitter-ms must be between 0 and 3600000" }
        if !(0...1).contains(slowRate) { return "--slow-rate must be between 0 and 1, got \(slowRate)" }
        if !(0...3_600_000).contains(slowMs) { return "--slow-ms must be between 0 and 3600000, got \(slowMs)" }
        if !(1...1_000_000).contains(tokensPerEvent) { return "--tokens-per-event must be between 1 and 1000000" }
        if !(0...1_000_000).contains(tokensPerSecond) { return "--tokens-per-second must be between 0 and 1000000" }
        for (model, value) in accuracy.sorted(by: { $0.key < $1.key }) where !(0...1).contains(value) {
            return "--accuracy \(model)=\(value): expected a fraction between 0 and 1"
        }
        if !(0...86_400).contains(retryAfterSeconds) { return "--retry-after must be between 0 and 86400 seconds" }
        return nil
    }

    /// The extra delay of a request whose content hashes to `contentHash` (see
    /// `ModelRequest.slowKey`): `slowMs` for a fraction `slowRate` of request contents, 0 for
    /// the rest. Keyed by content, not drawn in arrival order as faults are: a run's
    /// concurrent calls reach the simulator in an order that changes from run to run, so a
    /// drawn sequence would slow different calls each time; keyed by content, the same call
    /// is slow in every run with this seed, in whatever order it arrives, so a benchmark
    /// is reproducible and two schedules of one workflow meet the same stragglers. (A retry
    /// of a slow call is slow again, as a hard prompt is.)
    func slowDelayMs(contentHash: UInt64) -> Int {
        guard slowRate > 0, slowMs > 0 else { return 0 }
        var rng = SplitMix64(seed: contentHash)
        return rng.nextUnit() < slowRate ? slowMs : 0
    }
}

/// The header fields a 429 carries its wait in; real servers and gateways differ.
public enum RetryAfterStyle: String, Sendable, CaseIterable {
    /// `Retry-After` in seconds and OpenAI's `retry-after-ms`.
    case standard
    /// Only `retry-after-ms`.
    case ms
    /// Only `Retry-After` as an HTTP date (whole seconds, rounded up).
    case date
    /// Only `llm_provider-retry-after` and `llm_provider-retry-after-ms`, as LiteLLM's proxy
    /// forwards its upstream's hint.
    case litellm

    func fields(seconds: Double, now: Double = Date().timeIntervalSince1970) -> HTTPFields {
        var fields = HTTPFields()
        let ms = String(Int(seconds * 1000))
        switch self {
        case .standard:
            fields[.retryAfter] = seconds.shortText
            fields[HTTPField.Name("retry-after-ms")!] = ms
        case .ms:
            fields[HTTPField.Name("retry-after-ms")!] = ms
        case .date:
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            fields[.retryAfter] = formatter.string(from: Date(timeIntervalSince1970: (now + seconds).rounded(.up)))
        case .litellm:
            fields[HTTPField.Name("llm_provider-retry-after")!] = seconds.shortText
            fields[HTTPField.Name("llm_provider-retry-after-ms")!] = ms
        }
        return fields
    }
}

/// What the simulator does with one model request, drawn from the seeded fault sequence.
public enum SimulatedFault: String, Sendable, CaseIterable {
    /// A normal answer.
    case none
    /// A 500 server error.
    case error
    /// A 429 with a Retry-After header (`SimulatorConfiguration.retryAfterStyle`).
    case rateLimit = "rate_limit"
    /// A 200 whose body is cut in half (a stream: broken off mid-answer).
    case malformed
    /// No answer at all: the connection stays open until the client gives up.
    case hang
}

/// SplitMix64: a tiny, fast, well-distributed generator whose whole state is one
/// integer, so a seed reproduces a run exactly.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator starting from `seed`.
    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A double uniformly in [0, 1).
    package mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }
}

/// FNV-1a, 64-bit: a stable hash of request bytes (Swift's `Hasher` is seeded per process).
package func fnv1a64(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01B3
    }
    return hash
}
