import ChorusIO
import ChorusJSON
import ChorusTrace

/// Why a run cannot be resumed.
public struct ResumeError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Continues an interrupted or crashed run as a new run linked to it: every step that
/// finished is taken from the trace (record and calls copied, output reused, no model
/// called); steps that were in flight or never started run now. Holds the source run's
/// lock in the database for the whole resume, so two resumes never both run it.
public enum Resumer {
    public static func resume(_ runID: String, store: TraceStore, project: Project, client: HTTPClient, trace: TraceWriter,
                              loop: EventLoop, maxParallel: Int, progress: RunProgress,
                              newRunID: String = Orchestrator.newRunID()) async throws -> RunSummary {
        guard let found = try store.run(matching: runID) else { throw ResumeError(description: "no run '\(runID)' in \(store.path)") }
        try store.markAbandonedRuns()
        guard let source = try store.run(matching: found.id) else { throw ResumeError(description: "run \(found.id) was removed") }
        switch source.status {
        case "running":
            throw ResumeError(description: "run \(source.id) is still running (process \(source.ownerPID.map(String.init) ?? "?") on \(source.ownerHost ?? "?"))")
        case "succeeded":
            throw ResumeError(description: "run \(source.id) succeeded: nothing to resume (chorus replay \(source.id) re-checks it)")
        default: break
        }
        do { try store.lockRun(source.id) } catch let held as RunLockHeld { throw ResumeError(description: held.description) }
        defer { try? store.unlockRun(source.id) }
        if let done = try store.runs(parent: source.id).first(where: { $0.relation == "resume" && $0.status == "succeeded" }) {
            throw ResumeError(description: "run \(source.id) was already resumed as \(done.id), which succeeded")
        }
        let inputs = try Replayer.inputs(of: source)
        let finished = try store.steps(ofRun: source.id).filter { $0.status == "succeeded" && !$0.path.hasSuffix("#result") }
        let paths = Set(finished.map(\.path))
        let calls = Dictionary(grouping: try store.modelCalls(ofRun: source.id).filter { paths.contains($0.stepPath) }, by: \.stepPath)
        var reuse: [String: ReusedStep] = [:]
        for step in finished { reuse[step.path] = ReusedStep(step: step, calls: calls[step.path] ?? []) }
        let origin = RunOrigin(parent: source.id, relation: "resume", reuse: reuse)
        return await Orchestrator.run(project, inputs: inputs, trace: trace, transport: LiveTransport(client: client),
                                      recordedTransport: nil, origin: origin, loop: loop, maxParallel: maxParallel,
                                      progress: progress, runID: newRunID)
    }
}
