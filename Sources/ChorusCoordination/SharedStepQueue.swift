import Foundation

/// A step of a shared run waiting for, or held by, an executor: enough to run it
/// anywhere (the agent's name and the variables its templates name).
public struct SharedStep: Sendable, Equatable {
    /// The step's path in the run (`StepRecord.path`).
    public var path: String
    /// The node it is part of.
    public var node: String
    /// `item`, `agent` or `reconcile`.
    public var kind: String
    /// The item's index, for a foreach item.
    public var itemIndex: Int?
    /// The agent that runs it.
    public var agent: String
    /// The variables the agent's prompts name, as a JSON object.
    public var variablesJSON: String
    /// Leases taken on it so far (1 when it ran once).
    public var leases = 0

    /// A step to enqueue, not yet leased.
    public init(path: String, node: String, kind: String, itemIndex: Int?, agent: String, variablesJSON: String) {
        self.path = path
        self.node = node
        self.kind = kind
        self.itemIndex = itemIndex
        self.agent = agent
        self.variablesJSON = variablesJSON
    }
}

/// A step an executor finished: its records (`StepBundle`, JSON), who ran it.
public struct FinishedSharedStep: Sendable {
    /// The step's path in the run.
    public var path: String
    /// Its records, a `StepBundle` as JSON, for the coordinator to write into the run's trace.
    public var resultJSON: String
    /// The executor that ran it.
    public var doneBy: String
    /// Leases it took (more than one when an executor died holding it).
    public var leases: Int

    /// A finished step as the queue hands it back.
    public init(path: String, resultJSON: String, doneBy: String, leases: Int) {
        self.path = path
        self.resultJSON = resultJSON
        self.doneBy = doneBy
        self.leases = leases
    }
}

/// A run whose steps are shared between workers.
public struct SharedRunInfo: Sendable, Equatable {
    /// The run's key: the id of its first run (a takeover's resume keeps it).
    public var runKey: String
    /// The run its coordinator is recording now.
    public var runID: String
    /// The workflow file, for executors to load.
    public var workflowPath: String
    /// The chorus.json, for executors to load.
    public var configPath: String
    /// running, succeeded, failed, interrupted.
    public var status: String
    /// The run's budget as its coordinator resolved it (the file's, over-ridden by the
    /// command line's), for executors elsewhere.
    public var budgetJSON: String?
}

/// The step table of shared runs (PostgreSQL: rows leased with `FOR UPDATE SKIP LOCKED`).
///
/// A run's coordinator (the worker holding the run's lease) plans it and enqueues each
/// agent step; executors on every worker lease steps, run them, and complete them with
/// their records; the coordinator collects the results and writes them into the run's
/// trace (one writer keeps the run's audit chain). A step is finished once its row is
/// `done`: a done row is never leased again, and a coordinator taking over (a resume)
/// gets it back from `enqueue` instead of running it.
public protocol SharedStepQueue: AnyObject, Sendable {
    /// Records that `runKey` is being coordinated as `runID` (a takeover updates it).
    func open(runKey: String, runID: String, workflowPath: String, configPath: String, budgetJSON: String?) throws
    /// The run ended (`status`): executors stop leasing its steps.
    func close(runKey: String, status: String) throws
    /// The run `runKey` names, nil when no run has that key.
    func run(_ runKey: String) throws -> SharedRunInfo?
    /// Adds steps not already there; returns those of them already done (a takeover's).
    func enqueue(runKey: String, _ steps: [SharedStep], now: Double) throws -> [FinishedSharedStep]
    /// Done steps not collected yet, marked collected.
    func collect(runKey: String) throws -> [FinishedSharedStep]
    /// Up to `limit` steps of `runKey` queued or whose lease lapsed, leased to `owner`.
    func lease(runKey: String, owner: String, limit: Int, seconds: Double, now: Double) throws -> [SharedStep]
    /// Renews `owner`'s leases on these steps; returns how many it still held.
    func renew(runKey: String, paths: [String], owner: String, seconds: Double, now: Double) throws -> Int
    /// Marks leased steps done with their results, in one statement; returns the paths
    /// completed (a step whose lease was lost is not).
    func complete(runKey: String, owner: String, results: [(path: String, resultJSON: String)], now: Double) throws -> Set<String>
    /// Hands leased steps back at once (an executor stopping).
    func giveBack(runKey: String, paths: [String], owner: String) throws
    /// Runs being coordinated that need help: a step queued for more than `waitedSeconds`
    /// (the executors they have do not keep up), or one whose lease lapsed.
    func runsWithWork(now: Double, waitedSeconds: Double) throws -> [SharedRunInfo]
    /// (steps, done, total leases) of a run: for tests and `chorus queue`.
    func stepCounts(runKey: String) throws -> (steps: Int, done: Int, leases: Int)
    /// The same for every run with steps in the table, in one query (`chorus queue`).
    func stepCounts() throws -> [String: (steps: Int, done: Int, leases: Int)]
    /// Steps done, by executor.
    func doneBy(runKey: String) throws -> [String: Int]
}

extension SharedStepQueue {
    /// Marks one leased step done; false when the lease was lost.
    public func complete(runKey: String, path: String, owner: String, resultJSON: String, now: Double) throws -> Bool {
        try complete(runKey: runKey, owner: owner, results: [(path, resultJSON)], now: now).contains(path)
    }

    /// Records that `runKey` is coordinated as `runID`, with no budget of its own.
    public func open(runKey: String, runID: String, workflowPath: String, configPath: String) throws {
        try open(runKey: runKey, runID: runID, workflowPath: workflowPath, configPath: configPath, budgetJSON: nil)
    }
}
