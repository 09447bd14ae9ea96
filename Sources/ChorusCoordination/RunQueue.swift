import Foundation

/// A submitted run waiting for, or held by, a worker (`chorus submit`, `chorus worker`).
public struct QueuedRun: Sendable, Equatable {
    /// The submission's id, also the id of its first run.
    public var id: String
    /// The workflow file, as the worker will open it.
    public var workflowPath: String
    /// The chorus.json the worker will use.
    public var configPath: String
    /// The run's inputs, a JSON object's text.
    public var inputsJSON: String
    /// queued, running, or how the run ended (succeeded, failed, interrupted).
    public var status: String
    /// Leases taken so far (1 on the first).
    public var attempts: Int
    /// The runs started for it, oldest first: the first run, then each takeover's resume.
    public var runIDs: [String]
    /// The worker holding the lease, while one does.
    public var leaseOwner: String?
    /// Why the run failed, one line.
    public var error: String?
}

/// Submitted runs, each leased by one worker at a time: what `RunWorker` takes runs from.
/// A lease lapses unless its holder renews it, so a worker that died loses its runs to
/// the others.
public protocol RunQueue: AnyObject, Sendable {
    /// Where it is, for messages (a URL without its password).
    var location: String { get }
    /// Enqueues a run; `id` is also the id its first run will have.
    func submit(id: String, workflowPath: String, configPath: String, inputsJSON: String, now: Double) throws
    /// A queued run, or one whose lease lapsed, leased to `owner` for `seconds`; nil when none waits.
    func lease(owner: String, seconds: Double, now: Double) throws -> QueuedRun?
    /// Records that `owner` started the submission as `runID`; false when its lease was lost.
    func started(_ id: String, runID: String, owner: String) throws -> Bool
    /// Renews `owner`'s lease; false when it was lost (another worker took the run over).
    func heartbeat(_ id: String, owner: String, seconds: Double, now: Double) throws -> Bool
    /// Records how `owner`'s run ended (`status`, and `error` when it failed); the run leaves the queue.
    func finish(_ id: String, owner: String, status: String, error: String?, now: Double) throws
    /// Hands a leased run back at once (a worker stopping).
    func release(_ id: String, owner: String) throws
    /// Marks a run a dead worker left `running` as interrupted, before it is resumed.
    func markInterrupted(runID: String) throws
    /// The status of a run in the trace, nil when it has none.
    func runStatus(_ runID: String) throws -> String?
    /// Submissions not finished yet.
    func unfinishedCount() throws -> Int
    /// Every submission, oldest first (`chorus queue`).
    func all() throws -> [QueuedRun]
}

extension RunQueue {
    /// Enqueues a run now.
    public func submit(id: String, workflowPath: String, configPath: String, inputsJSON: String) throws {
        try submit(id: id, workflowPath: workflowPath, configPath: configPath, inputsJSON: inputsJSON, now: Date().timeIntervalSince1970)
    }
}
