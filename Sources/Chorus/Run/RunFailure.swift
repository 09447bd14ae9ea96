/// Why a run did not succeed, as a stable code a script can branch on (`error_code` in
/// `chorus run --json`): a struct around a private enum, so new codes do not break callers
/// (the AsyncHTTPClient pattern). Every failed run exits with status 1; validation errors
/// exit 2 before any run starts.
public struct RunFailureCode: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String {
        case stepsFailed = "steps_failed", interrupted, deadline, budgetExhausted = "budget_exhausted", awaitingApproval = "awaiting_approval",
            providerRefused = "provider_refused",
            traceUnwritable = "trace_unwritable", workflowFailed = "workflow_failed"
    }
    private let base: Base

    /// Steps failed beyond what `min_success` tolerates (`failed_items` lists them).
    public static let stepsFailed = RunFailureCode(base: .stepsFailed)
    /// Ctrl-C or SIGTERM: no new calls were started, calls in flight were cancelled.
    public static let interrupted = RunFailureCode(base: .interrupted)
    /// `--deadline` passed.
    public static let deadline = RunFailureCode(base: .deadline)
    /// A call would have passed the run's budget (`--budget-usd`, `budget` in the workflow):
    /// it was refused before it was sent, and the run stopped. Exit status 3.
    public static let budgetExhausted = RunFailureCode(base: .budgetExhausted)
    /// A node waits for a person's decision: the run is paused (exit 4); `chorus approve` or
    /// `chorus deny`, then `chorus resume`.
    public static let awaitingApproval = RunFailureCode(base: .awaitingApproval)
    /// A provider refused a model for every request (401, 403, 404, unknown model): the run stopped.
    public static let providerRefused = RunFailureCode(base: .providerRefused)
    /// The trace database could not be written (a full disk): the run stopped making calls.
    public static let traceUnwritable = RunFailureCode(base: .traceUnwritable)
    /// Anything else the workflow could not do (a reconcile conflict, an unreadable output).
    public static let workflowFailed = RunFailureCode(base: .workflowFailed)

    public var description: String { base.rawValue }

    /// The exit status `chorus` ends with for a run that failed with this code.
    public var exitStatus: Int32 { base == .budgetExhausted ? 3 : base == .awaitingApproval ? 4 : 1 }
}
