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
    public static func resume(_ runID: String, store: any TraceBackend, project: Project, client: HTTPClient, trace: TraceWriter,
                              loop: EventLoop, maxParallel: Int, progress: RunProgress,
                              newRunID: String = Orchestrator.newRunID()) async throws -> RunSummary {
        // Every read and the lock run off the loop: the lock may wait out a 10 s busy
        // timeout, during which Ctrl-C must still be honoured.
        let (source, inputs, origin) = try await OffLoop.run { () throws -> (RunRecord, JSONValue, RunOrigin) in
            try prepare(runID, store: store)
        }
        let summary = await Orchestrator.run(project, inputs: inputs, trace: trace, transport: LiveTransport(client: client),
                                             recordedTransport: nil, tools: LiveTools(client: client, loop: loop), recordedTools: nil,
                                             origin: origin, loop: loop, maxParallel: maxParallel,
                                             progress: progress, runID: newRunID)
        // One short write, done before the process can exit (a cancellable hop could be skipped).
        try? store.unlockRun(source.id)
        return summary
    }

    /// Finds the run, checks it can be resumed, takes its lock and loads its finished steps.
    private static func prepare(_ runID: String, store: any TraceBackend) throws -> (RunRecord, JSONValue, RunOrigin) {
        guard let found = try store.run(matching: runID) else { throw ResumeError(description: "no run '\(runID)' in \(store.path)") }
        try store.markAbandonedRuns()
        guard let source = try store.run(matching: found.id) else { throw ResumeError(description: "run \(found.id) was removed") }
        switch source.status {
        case .running:
            throw ResumeError(description: "run \(source.id) is still running (process \(source.ownerPID.map(String.init) ?? "?") on \(source.ownerHost ?? "?"))")
        case .succeeded:
            throw ResumeError(description: "run \(source.id) succeeded: nothing to resume (chorus replay \(source.id) re-checks it)")
        default: break
        }
        do { try store.lockRun(source.id) } catch let held as RunLockHeld { throw ResumeError(description: held.description) }
        do {
            if let done = try store.runs(parent: source.id).first(where: { $0.relation == "resume" && $0.status == .succeeded }) {
                throw ResumeError(description: "run \(source.id) was already resumed as \(done.id), which succeeded")
            }
            let inputs = try Replayer.inputs(of: source)
            let finished = try store.steps(ofRun: source.id).filter { $0.status == .succeeded && !$0.isNodeResult }
            let paths = Set(finished.map(\.path))
            let calls = Dictionary(grouping: try store.modelCalls(ofRun: source.id).filter { paths.contains($0.stepPath) }, by: \.stepPath)
            let allTools = try store.toolCalls(ofRun: source.id)
            let tools = Dictionary(grouping: allTools.filter { paths.contains($0.stepPath) }, by: \.stepPath)
            var reuse: [String: ReusedStep] = [:]
            for step in finished { reuse[step.path] = ReusedStep(step: step, calls: calls[step.path] ?? [], toolCalls: tools[step.path] ?? []) }
            // The tool calls that finished in steps that did not: a killed step runs again,
            // but the tools it had already run are not run twice.
            let pending = allTools.filter { !paths.contains($0.stepPath) && $0.error == nil }
            let outputs = try store.blobs(Set(pending.map(\.outputHash)))
            var origin = RunOrigin(parent: source.id, relation: "resume", reuse: reuse)
            origin.approvals = try ApprovalDecision.lineage(of: source.id, store: store)
            origin.spent = (Budget.microUSD(source.cost) ?? 0, source.tokensIn + source.tokensOut,
                            try store.modelCalls(ofRun: source.id).filter { !$0.url.hasPrefix("replay:") }.count)
            for call in pending {
                origin.finishedToolCalls[call.stepPath, default: []].append(
                    FinishedToolCall(call: call, output: String(decoding: outputs[call.outputHash] ?? [], as: UTF8.self)))
            }
            return (source, inputs, origin)
        } catch {
            try? store.unlockRun(source.id)
            throw error
        }
    }
}
