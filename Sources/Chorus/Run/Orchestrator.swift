import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// The outcome of a run, as `chorus run` reports it.
public struct RunSummary: Sendable {
    public var runID: String
    /// succeeded, failed or interrupted.
    public var status: String
    public var output: JSONValue?
    /// Which step produced which part of the output.
    public var provenance: JSONValue?
    /// Why it failed, one line.
    public var error: String?
    /// Fan-out items that failed but were tolerated by `min_success`.
    public var failedItems: [String]
    public var tokensIn: Int
    public var tokensOut: Int
    public var cost: Double
    public var calls: Int
    /// Steps taken from the run this one resumes.
    public var reusedSteps = 0
    public var elapsed: Duration

    /// The `--json` form.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "run_id": .string(runID), "status": .string(status),
            "usage": ["tokens_in": .number(Double(tokensIn)), "tokens_out": .number(Double(tokensOut)), "calls": .number(Double(calls))],
            "cost": .number((cost * 1_000_000).rounded() / 1_000_000),
            "elapsed_s": .number(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18),
        ]
        if let output { object["output"] = output }
        if let provenance { object["provenance"] = provenance }
        if let error { object["error"] = .string(error) }
        if !failedItems.isEmpty { object["failed_items"] = .array(failedItems.map { .string($0) }) }
        if reusedSteps > 0 { object["reused_steps"] = .number(Double(reusedSteps)) }
        return .object(object)
    }
}

/// Runs a loaded project end to end: opens a run in the trace, executes the graph on the
/// loop, records the result. Cancelling the calling task interrupts the run: no new calls
/// start, calls in flight are cancelled, the run is marked interrupted and the trace flushed.
public enum Orchestrator {
    /// A new sortable run id: UTC start time plus 24 random bits.
    public static func newRunID() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date()) + "-" + String(format: "%06x", UInt32.random(in: 0..<(1 << 24)))
    }

    /// Runs `project` with `inputs`, calling models through `client`; every step goes to `trace`.
    public static func run(_ project: Project, inputs: JSONValue, trace: TraceWriter, client: HTTPClient, loop: EventLoop,
                           maxParallel: Int, progress: RunProgress, runID: String = newRunID()) async -> RunSummary {
        await run(project, inputs: inputs, trace: trace, transport: LiveTransport(client: client), recordedTransport: nil,
                  origin: .fresh, loop: loop, maxParallel: maxParallel, progress: progress, runID: runID)
    }

    static func run(_ project: Project, inputs: JSONValue, trace: TraceWriter, transport: any ModelTransport,
                    recordedTransport: (any ModelTransport)?, origin: RunOrigin, loop: EventLoop, maxParallel: Int,
                    progress: RunProgress, runID: String) async -> RunSummary {
        let started = ContinuousClock.now
        var run = RunRecord(id: runID, workflow: project.workflow.name, workflowPath: project.workflow.path,
                            inputsJSON: inputs.text, startedAt: RunContext.now())
        run.parentRunID = origin.parent
        run.relation = origin.relation
        run.configPath = project.config.path
        trace.append(.run(run))
        let context = RunContext(loop: loop, transport: transport, recordedTransport: recordedTransport, origin: origin, trace: trace,
                                 runID: runID, project: project, maxParallel: maxParallel, progress: progress)
        var startDetail: [String: JSONValue] = ["workflow": .string(project.workflow.name), "inputs": inputs]
        if let parent = origin.parent, let relation = origin.relation {
            startDetail["parent"] = .string(parent)
            startDetail["relation"] = .string(relation)
        }
        context.event("run_started", .object(startDetail))
        var summary = RunSummary(runID: runID, status: "failed", failedItems: [], tokensIn: 0, tokensOut: 0, cost: 0, calls: 0, elapsed: .zero)
        do {
            let result = try await Task(executorPreference: loop) {
                try await WorkflowRunner(context: context, inputs: inputs).run()
            }.valueCancellingWithCaller()
            summary.status = "succeeded"
            summary.output = result.value
            summary.provenance = result.provenance
            summary.failedItems = result.failedItems
            run.outputJSON = result.value.text
        } catch {
            summary.status = Task.isCancelled || error is CancellationError ? "interrupted" : "failed"
            summary.error = summary.status == "interrupted" ? "interrupted: no new calls were started, calls in flight were cancelled"
                : context.circuit.reason ?? "\(error)"
            run.error = summary.error
        }
        let totals = progress.snapshot()
        summary.tokensIn = totals.tokensIn
        summary.tokensOut = totals.tokensOut
        summary.cost = totals.cost
        summary.calls = totals.calls
        summary.reusedSteps = totals.reusedSteps
        summary.elapsed = ContinuousClock.now - started
        run.status = summary.status
        run.endedAt = RunContext.now()
        run.tokensIn = totals.tokensIn
        run.tokensOut = totals.tokensOut
        run.cost = totals.cost
        trace.append(.run(run))
        context.event("run_\(summary.status)", summary.error.map { ["error": .string($0)] })
        await trace.flush()
        return summary
    }
}

extension Task where Failure == Error {
    /// The task's value; cancelling the awaiting task cancels this one.
    func valueCancellingWithCaller() async throws -> Success {
        try await withTaskCancellationHandler { try await value } onCancel: { cancel() }
    }
}
