import ChorusIO
import ChorusJSON
import ChorusTrace

/// What a replay found.
public struct ReplayReport: Sendable {
    /// The replay's own run (recorded, linked to its source).
    public var summary: RunSummary
    /// The run that was replayed.
    public var sourceRunID: String
    /// Where the replay stopped matching, if it did.
    public var divergence: ReplayDivergence?
    /// True when the replay ended as the recording did: the same status, the output with
    /// exactly the recorded bytes, and for a failed run the same failure.
    public var reproduced: Bool
    /// Calls served from the trace (the rest of `summary.calls`, in a fork, were live).
    public var servedCalls: Int
}

/// Why a run cannot be replayed at all.
public struct ReplayError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Re-executes a recorded run with the same inputs, serving every model call from the
/// trace: zero network calls. A request that no longer matches its recording (an agent or
/// the workflow changed) stops the replay at that step with a readable difference.
///
/// A fork (`liveFrom`) serves only the calls upstream of a node or stage from the trace and
/// makes the rest live, optionally on other models.
package enum Replayer {
    /// What a fork changes: where it turns live, which models it swaps, and the client for
    /// its live calls.
    package struct Fork: Sendable {
        package var liveFrom: String
        package var modelSwaps: [String: String]
        package var client: HTTPClient

        package init(liveFrom: String, modelSwaps: [String: String], client: HTTPClient) {
            self.liveFrom = liveFrom
            self.modelSwaps = modelSwaps
            self.client = client
        }
    }

    /// Replays `runID` from `store` with `project` (normally the run's own workflow), or
    /// forks it when `fork` is given. Loads the recording before starting; the replay is
    /// traced as a new run linked to its source.
    package static func replay(
        _ runID: String, store: any TraceBackend, project: Project, trace: TraceWriter, loop: EventLoop,
        progress: RunProgress, fork: Fork? = nil, maxParallel: Int = 1024,
        allowUnverified: Bool = false
    ) async throws -> ReplayReport {
        try await replay(
            runID, store: store, project: project, trace: trace, loop: loop, progress: progress, fork: fork,
            maxParallel: maxParallel, evalContext: nil, allowUnverified: allowUnverified)
    }

    /// As above; `evalContext` links the new run to the eval it belongs to.
    static func replay(
        _ runID: String, store: any TraceBackend, project: Project, trace: TraceWriter, loop: EventLoop,
        progress: RunProgress, fork: Fork?, maxParallel: Int, evalContext: JSONValue?,
        approvals: [String: ApprovalDecision] = [:], allowUnverified: Bool = false
    ) async throws -> ReplayReport {
        // The recording is read off the loop: a 10,000-call run's bodies take a while.
        let (source, recorded, recordedTools, unverified) = try await OffLoop.run {
            () throws -> (RunRecord, ReplayTransport, ReplayTools, String?) in
            guard let source = try store.run(matching: runID) else { throw ReplayError(description: "no run '\(runID)' in \(store.path)") }
            // The calls a replay serves, and the decisions it reproduces, must be what was recorded.
            let unverified = try AuditGate.check(source.id, store: store, force: allowUnverified)
            return (source, try ReplayTransport(store: store, runID: source.id), try ReplayTools(store: store, runID: source.id), unverified)
        }
        let inputs = try Self.inputs(of: source)
        var origin = RunOrigin(parent: source.id, relation: .replay, recorded: .all)
        origin.evalContext = evalContext
        origin.unverified = unverified
        // The recorded run's decisions are reproduced, never asked again.
        origin.approvals = try await OffLoop.run { try source.parentRunID.map { try ApprovalDecision.lineage(of: $0, store: store) } ?? [:] }
            .merging(approvals) { recorded, _ in recorded }
        // What each as_completed lead call saw, so the replay's calls see the same, and how
        // each step ended (read only for such a workflow: a whole run's steps are a large read).
        if project.workflow.nodes.values.contains(where: { $0.leadSpec?.schedule == .asCompleted }) {
            let steps = try await OffLoop.run { try store.steps(ofRun: source.id) }
            origin.leadViews = RunOrigin.leadViews(of: steps)
            origin.recordedStatus = Dictionary(steps.map { ($0.path, $0.status) }) { first, _ in first }
        }
        var live: any ModelTransport = recorded
        var liveTools: any ToolTransport = recordedTools
        if let fork {
            for (from, to) in fork.modelSwaps where project.config.models[from] == nil || project.config.models[to] == nil {
                let known = project.config.models.keys.sorted().joined(separator: ", ")
                throw ReplayError(description: "--model \(from)=\(to): both must be models in \(project.config.path); models: \(known)")
            }
            origin.relation = .fork
            origin.recorded = .upstreamOf(try LivePoint(fork.liveFrom, project: project))
            origin.modelSwaps = fork.modelSwaps
            live = LiveTransport(client: fork.client)
            liveTools = LiveTools(client: fork.client, loop: loop)
        }
        let summary = await Orchestrator.run(
            project, inputs: inputs, trace: trace, transport: live, recordedTransport: recorded,
            tools: liveTools, recordedTools: recordedTools, origin: origin, loop: loop, maxParallel: maxParallel, progress: progress,
            runID: Orchestrator.newRunID())
        let reproduced =
            recorded.divergence == nil && summary.status == source.status && summary.output?.text == source.outputJSON
            && (summary.status == .succeeded || summary.error == source.error)
        return ReplayReport(
            summary: summary, sourceRunID: source.id, divergence: recorded.divergence, reproduced: reproduced,
            servedCalls: recorded.served)
    }

    static func inputs(of source: RunRecord) throws(ReplayError) -> JSONValue {
        do { return try JSONValue(parsing: source.inputsJSON) } catch {
            throw ReplayError(description: "run \(source.id) has unreadable inputs: \(error)")
        }
    }
}
