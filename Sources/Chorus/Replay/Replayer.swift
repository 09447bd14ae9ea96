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
    /// True when the replay's output has exactly the recorded output's bytes.
    public var reproduced: Bool
}

/// Why a run cannot be replayed at all.
public struct ReplayError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Re-executes a recorded run with the same inputs, serving every model call from the
/// trace: zero network calls. A request that no longer matches its recording (an agent or
/// the workflow changed) stops the replay at that step with a readable difference.
public enum Replayer {
    /// Replays `runID` from `store` with `project` (normally the run's own workflow).
    /// Loads the recording before starting; the replay is traced as a new run.
    public static func replay(_ runID: String, store: TraceStore, project: Project, trace: TraceWriter, loop: EventLoop,
                              progress: RunProgress) async throws -> ReplayReport {
        guard let source = try store.run(matching: runID) else { throw ReplayError(description: "no run '\(runID)' in \(store.path)") }
        let inputs: JSONValue
        do { inputs = try JSONValue(parsing: source.inputsJSON) } catch {
            throw ReplayError(description: "run \(source.id) has unreadable inputs: \(error)")
        }
        let transport = try ReplayTransport(store: store, runID: source.id)
        let summary = await Orchestrator.run(project, inputs: inputs, trace: trace, transport: transport, replaySource: source.id,
                                             loop: loop, maxParallel: 1024, progress: progress, runID: Orchestrator.newRunID())
        let reproduced = transport.divergence == nil && summary.output != nil && summary.output?.text == source.outputJSON
        return ReplayReport(summary: summary, sourceRunID: source.id, divergence: transport.divergence, reproduced: reproduced)
    }
}
