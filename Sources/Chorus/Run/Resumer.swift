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
package enum Resumer {
    package static func resume(
        _ runID: String, store: any TraceBackend, project: Project, client: HTTPClient, trace: TraceWriter,
        loop: EventLoop, maxParallel: Int, progress: RunProgress,
        newRunID: String = Orchestrator.newRunID(), sharing: StepSharing? = nil,
        allowUnverified: Bool = false
    ) async throws -> RunSummary {
        // Every read and the lock run off the loop: the lock may wait out a 10 s busy
        // timeout, during which Ctrl-C must still be honoured.
        let (source, inputs, origin) = try await OffLoop.run { () throws -> (RunRecord, JSONValue, RunOrigin) in
            try prepare(runID, store: store, allowUnverified: allowUnverified)
        }
        let summary = await Orchestrator.run(
            project, inputs: inputs, trace: trace, transport: LiveTransport(client: client),
            recordedTransport: nil, tools: LiveTools(client: client, loop: loop), recordedTools: nil,
            origin: origin, loop: loop, maxParallel: maxParallel,
            progress: progress, runID: newRunID, sharing: sharing)
        // One short write, done before the process can exit (a cancellable hop could be skipped).
        try? store.unlockRun(source.id)
        return summary
    }

    /// Finds the run, checks it can be resumed, takes its lock and loads its finished steps.
    private static func prepare(_ runID: String, store: any TraceBackend, allowUnverified: Bool) throws -> (RunRecord, JSONValue, RunOrigin) {
        guard let found = try store.run(matching: runID) else { throw ResumeError(description: "no run '\(runID)' in \(store.path)") }
        _ = try store.markAbandonedRuns()
        guard let source = try store.run(matching: found.id) else { throw ResumeError(description: "run \(found.id) was removed") }
        switch source.status {
        case .running:
            throw ResumeError(
                description: "run \(source.id) is still running (process \(source.ownerPID.map(String.init) ?? "?") on \(source.ownerHost ?? "?"))")
        case .succeeded:
            throw ResumeError(description: "run \(source.id) succeeded: nothing to resume (chorus replay \(source.id) re-checks it)")
        default: break
        }
        // What a resume reuses (steps, decisions) must be what was recorded.
        let unverified = try AuditGate.check(source.id, store: store, force: allowUnverified)
        do { try store.lockRun(source.id) } catch let held as RunLockHeld { throw ResumeError(description: held.description) }
        do {
            if let done = try store.runs(parent: source.id).first(where: { $0.relation == .resume && $0.status == .succeeded }) {
                throw ResumeError(description: "run \(source.id) was already resumed as \(done.id), which succeeded")
            }
            let inputs = try Replayer.inputs(of: source)
            // The finished steps of the whole chain of resumes, nearest run first: a resume
            // killed early holds only the steps it had recorded itself, and resuming it used
            // to run again every step its parent had finished (issue 17: 1,126 steps re-run).
            var reuse: [String: ReusedStep] = [:]
            var pending: [ToolCallRecord] = []
            var pendingPaths = Set<String>()
            for run in try resumeChain(of: source, store: store) {
                let finished = try store.steps(ofRun: run.id).filter { $0.status == .succeeded && !$0.isNodeResult && reuse[$0.path] == nil }
                let paths = Set(finished.map(\.path))
                let calls = Dictionary(grouping: try store.modelCalls(ofRun: run.id).filter { paths.contains($0.stepPath) }, by: \.stepPath)
                let allTools = try store.toolCalls(ofRun: run.id)
                let tools = Dictionary(grouping: allTools.filter { paths.contains($0.stepPath) }, by: \.stepPath)
                for step in finished { reuse[step.path] = ReusedStep(step: step, calls: calls[step.path] ?? [], toolCalls: tools[step.path] ?? []) }
                // The tool calls that finished in steps that did not: a killed step runs again,
                // but the tools it had already run are not run twice (the nearest run's, per step).
                let unfinished = allTools.filter { $0.error == nil && !paths.contains($0.stepPath) && !pendingPaths.contains($0.stepPath) }
                pending += unfinished
                pendingPaths.formUnion(Set(unfinished.map(\.stepPath)))
            }
            pending.removeAll { reuse[$0.stepPath] != nil }
            let outputs = try store.blobs(Set(pending.map(\.outputHash)))
            var origin = RunOrigin(parent: source.id, relation: .resume, reuse: reuse)
            origin.leadViews = RunOrigin.leadViews(of: reuse.values.map(\.step))
            origin.approvals = try ApprovalDecision.lineage(of: source.id, store: store)
            origin.unverified = unverified
            origin.spent = (
                USD(dollars: source.cost).microRoundedUp, source.tokensIn + source.tokensOut,
                try store.modelCalls(ofRun: source.id).filter { !$0.url.hasPrefix("replay:") }.count
            )
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

    /// `source`, then its parent while each run is a resume of the one before: the runs
    /// whose finished steps a resume of `source` reuses (at most 64 deep).
    static func resumeChain(of source: RunRecord, store: any TraceBackend) throws -> [RunRecord] {
        var chain = [source]
        while let last = chain.last, last.relation == .resume, let parentID = last.parentRunID, chain.count < 64,
            let parent = try store.run(matching: parentID)
        {
            chain.append(parent)
        }
        return chain
    }
}
