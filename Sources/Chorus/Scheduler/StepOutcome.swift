import ChorusJSON
import ChorusTrace

/// Why a step did not succeed: the step's path, said once, and the reason. Lines that
/// name the step already (the run's list of failed steps) use `reason` alone.
struct StepError: Error, Sendable, Equatable, CustomStringConvertible {
    var path: String
    var reason: String

    var description: String { "\(path): \(reason)" }
}

/// How a step ended, with what it cost.
struct StepOutcome: Sendable {
    enum End: Sendable {
        case succeeded(JSONValue)
        case failed(StepError)
        /// Waiting for a person's decision (`chorus approve`, then `chorus resume`).
        case held(StepError)
        /// Its task was cancelled (a signal, a deadline, a sibling's configuration error).
        case cancelled
        /// The run stopped making calls (a budget refused one, a provider refused the key)
        /// before this step could call: why.
        case notRun(String)
    }

    var end: End
    var model: String?
    var attempts = 0
    var tokensIn = 0
    var tokensOut = 0
    var cost = USD.zero
    /// An answer of this step was cut at `max_tokens`.
    var truncated = false
    /// The run stops at this step (a configuration error, an unwritable trace; see `RunCircuit`).
    var halted = false

    init(_ end: End, model: String? = nil, attempts: Int = 0, tokensIn: Int = 0, tokensOut: Int = 0, cost: USD = .zero) {
        self.end = end
        self.model = model
        self.attempts = attempts
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.cost = cost
    }

    static func failed(_ path: String, _ reason: String) -> StepOutcome { StepOutcome(.failed(StepError(path: path, reason: reason))) }

    var output: JSONValue? {
        if case .succeeded(let value) = end { value } else { nil }
    }

    var succeeded: Bool { output != nil }

    /// Ended without running to a verdict of its own (held, cancelled, not run): its record
    /// says cancelled, not failed.
    var cancelled: Bool {
        switch end {
        case .succeeded, .failed: false
        case .held, .cancelled, .notRun: true
        }
    }

    /// The line a step's record stores and a run's error shows; nil when it succeeded.
    var error: String? {
        switch end {
        case .failed(let error), .held(let error): error.description
        default: reason
        }
    }

    /// Why it did not succeed, without the step's path; nil when it succeeded.
    var reason: String? {
        switch end {
        case .succeeded: nil
        case .failed(let error), .held(let error): error.reason
        case .cancelled: "cancelled"
        case .notRun(let reason): "not run: \(reason)"
        }
    }

    /// `record` as this outcome ends it: status, output, error, model, tokens and cost.
    func finishing(_ record: StepRecord) -> StepRecord {
        var record = record
        record.status = succeeded ? .succeeded : (cancelled ? .cancelled : .failed)
        record.endedAt = RunContext.now()
        record.outputJSON = output?.text
        record.error = error
        record.model = model
        record.attempts = attempts
        record.tokensIn = tokensIn
        record.tokensOut = tokensOut
        record.cost = cost.dollars
        return record
    }
}
