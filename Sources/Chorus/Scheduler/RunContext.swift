import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Mustache
import Synchronization

/// What every step of one run shares: the loop, the transports, the trace writer, the
/// run's limits, budgets, approvals and tool calls (each a part of its own, owned where it
/// is used), its stop switch, its failures and its progress.
final class RunContext: Sendable {
    let loop: EventLoop
    /// Carries live calls.
    let transport: any ModelTransport
    /// Carries calls served from the parent's trace (replays and forks).
    let recordedTransport: (any ModelTransport)?
    /// How this run relates to a recorded one.
    let origin: RunOrigin
    let trace: TraceWriter
    let runID: String
    let project: Project
    let progress: RunProgress
    /// One limiter per model, the parallelism cap, the retry policy.
    let limits: RunLimits
    /// The run's, the nodes' and the models' budgets.
    let ledgers: RunLedgers
    /// The decisions a run has and the ones it waits for.
    let approvals: RunApprovals
    /// The tool transports and what a resumed run's tool calls already did.
    let tools: RunTools
    /// Opens when a model answers in a way that no retry or escalation can fix (401, 403,
    /// 404, unknown model), a budget refuses a call or the trace cannot be written: the run
    /// stops making calls, with that one line.
    let circuit = RunCircuit()
    /// Steps that ended without an answer, for the run's summary.
    let failures = FailureList()
    /// The data labels each node's requests carry, with where each came from.
    let nodeLabels: [String: [String: String]]
    /// A shared run's way to the step table: its agent steps run on any worker.
    let dispatcher: StepDispatcher?

    /// The budget refusal that stopped the run, if one did.
    var budgetRefusal: String? {
        if case .budget(let reason)? = circuit.stop { return reason }
        return nil
    }

    init(
        loop: EventLoop, transport: any ModelTransport, recordedTransport: (any ModelTransport)?, tools: any ToolTransport,
        recordedTools: (any ToolTransport)?, origin: RunOrigin, trace: TraceWriter, runID: String, project: Project,
        maxParallel: Int, progress: RunProgress, ledger: BudgetLedger? = nil, dispatcher: StepDispatcher? = nil,
        coordination: (any Coordination)? = nil, sharedBudgets: SharedBudgetRows? = nil
    ) {
        self.dispatcher = dispatcher
        nodeLabels = DataBoundary.labels(project)
        self.loop = loop
        self.transport = transport
        self.recordedTransport = recordedTransport
        self.origin = origin
        self.trace = trace
        self.runID = runID
        self.project = project
        self.progress = progress
        limits = RunLimits(project: project, loop: loop, maxParallel: maxParallel, coordination: coordination, runID: runID)
        ledgers = RunLedgers(run: ledger, project: project, loop: loop, shared: sharedBudgets)
        approvals = RunApprovals(decisions: origin.approvals, project: project, runID: runID)
        self.tools = RunTools(live: tools, recorded: recordedTools, origin: origin)
    }

    /// Once the trace cannot be written (a full disk), no further model call is made: it
    /// could never be recorded, so it would be unauditable spend. Opens the circuit with
    /// one line saying so; true when the trace has failed.
    func stopIfTheTraceFailed() -> Bool {
        guard let failure = trace.failure else { return false }
        let what = trace.failedForSpace ? "the disk holding the trace database is full" : "the trace database could not be written"
        if circuit.open(
            .traceUnwritable(
                "\(what) (\(failure)): the run stopped making calls; the \(trace.committedSteps) steps it finished "
                    + "before are kept, and chorus resume \(runID) continues once it can be written"))
        {
            progress.log("trace write failed: stopping")
        }
        return true
    }

    /// A call was refused for the budget: the run stops making calls (the rest of its steps
    /// are reported as not run) and its summary says why.
    func refuseForBudget(_ reason: String) {
        if circuit.open(.budget(reason)) { progress.log(reason) }
    }

    /// The transport for `path`'s calls.
    func transport(for path: String) -> any ModelTransport {
        origin.isRecorded(path) ? recordedTransport ?? transport : transport
    }

    /// Whether `node`'s steps may call models (see `RunApprovals.gate`).
    func approvalGate(node: String, path: String) -> ModelCall.Verdict {
        approvals.gate(node: node, path: path, context: self)
    }

    /// A person's decision on `node` (see `RunApprovals.decision`).
    func approval(node: String, path: String, because reason: String) -> ModelCall.Verdict {
        approvals.decision(node: node, path: path, because: reason, context: self)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Appends `event` to the run's log.
    func event(_ event: TraceEvent, step: String? = nil) {
        trace.append(.event(runID: runID, event, stepPath: step, at: Self.now()))
    }
}

/// What limits a run's calls: one limiter per model (shared by all nodes, so no
/// configuration can exceed a provider's limit; on PostgreSQL shared by every worker), the
/// global parallelism cap and the retry policy.
struct RunLimits: Sendable {
    let limiters: [String: ModelLimiter]
    let global: LoopSemaphore
    let retryPolicy = RetryPolicy()

    init(project: Project, loop: EventLoop, maxParallel: Int, coordination: (any Coordination)?, runID: String) {
        let holder = "\(TraceStore.hostName):\(getpid()):\(runID)"
        limiters = project.config.models.mapValues {
            ModelLimiter(spec: $0, loop: loop, shared: coordination?.concurrency, rates: coordination?.rates, holder: holder)
        }
        global = LoopSemaphore(permits: maxParallel, loop: loop)
    }
}

/// Steps that failed or were not run, gathered from every task of a run.
final class FailureList: Sendable {
    private let items = Mutex<[FailedItem]>([])

    /// `reason` says why, without the step's path (the list names the step).
    func record(_ step: String, _ reason: String) {
        items.withLock { $0.append(FailedItem(step: step, reason: reason)) }
    }

    /// Takes `steps` off the list: subtasks a lead's done cancelled, recorded as cancelled.
    func forget(_ steps: Set<String>) {
        guard !steps.isEmpty else { return }
        items.withLock { $0.removeAll { steps.contains($0.step) } }
    }

    /// In step order (fan-out indexes numerically), not completion order.
    var sorted: [FailedItem] {
        items.withLock { $0 }.sorted { $0.step.compare($1.step, options: .numeric) == .orderedAscending }
    }
}

/// Why a run did not simply succeed. The stops that end its calls (a budget, a refusing
/// provider, an unwritable trace) are raised where they happen (`RunCircuit`); the rest are
/// decided as the run ends (`ending`). The run's status, failure code and the one line a
/// user reads all follow from it, here and nowhere else.
enum RunStop: Sendable, Equatable {
    /// A budget (the run's, a node's, a model's) refused a call.
    case budget(String)
    /// A provider answered in a way no retry or escalation fixes (401, 403, 404, an
    /// unknown model), or a shared run's step table could not be reached.
    case refused(String)
    /// The trace database cannot be written.
    case traceUnwritable(String)
    /// `--deadline` passed.
    case deadline(Duration)
    /// A signal: no new calls were started, calls in flight were cancelled.
    case interrupted
    /// Nodes wait for a person's decision: the run is paused.
    case approval([String])
    /// Steps failed beyond what `min_success` tolerates: the workflow's error.
    case stepsFailed(String)
    /// Anything else the workflow could not do.
    case workflowFailed(String)

    /// The one line a user reads, for a stop that ends a run's calls.
    var reason: String {
        switch self {
        case .budget(let reason), .refused(let reason), .traceUnwritable(let reason), .stepsFailed(let reason), .workflowFailed(let reason): reason
        case .deadline(let limit): "deadline of \(limit.shortText) reached"
        case .interrupted: "interrupted"
        case .approval(let nodes): "awaiting approval of \(nodes.joined(separator: ", "))"
        }
    }

    /// The run's failure code when this stopped it.
    var code: RunFailureCode {
        switch self {
        case .budget: .budgetExhausted
        case .refused: .providerRefused
        case .traceUnwritable: .traceUnwritable
        case .deadline: .deadline
        case .interrupted: .interrupted
        case .approval: .awaitingApproval
        case .stepsFailed: .stepsFailed
        case .workflowFailed: .workflowFailed
        }
    }

    /// The run's status when this stopped it.
    var status: RunStatus {
        switch self {
        case .interrupted: .interrupted
        case .approval: .awaitingApproval
        default: .failed
        }
    }

    /// How a run ended, from what was raised: nil when it succeeded. `completed` says the
    /// workflow returned an output; `raised` is the circuit's stop; `failedSteps` counts the
    /// steps that failed or were not run; `error` is what the workflow threw.
    static func ending(
        completed: Bool, raised: RunStop?, expired: Duration?, interrupted: Bool, waiting: [String],
        failedSteps: Int, error: String
    ) -> RunStop? {
        var stop: RunStop?
        if completed {
            // A budget stopped it: the output is partial, whatever min_success tolerated.
            if case .budget? = raised { stop = raised }
        } else if let expired {
            stop = .deadline(expired)
        } else if interrupted {
            stop = .interrupted
        } else {
            stop = raised ?? (failedSteps == 0 ? .workflowFailed(error) : .stepsFailed(error))
        }
        // Paused, not failed: what finished is kept, and resume continues after the decision.
        if !waiting.isEmpty && stop != .interrupted { stop = .approval(waiting) }
        return stop
    }

    /// The line the run's summary and record carry.
    func message(runID: String, completed: Bool, failedSteps: Int) -> String {
        switch self {
        case .budget(let reason) where completed:
            "\(reason); " + (failedSteps == 0 ? "a call was refused" : "\(failedSteps) step\(failedSteps == 1 ? "" : "s") failed or not run")
                + ", so the output is partial (chorus resume \(runID) with a larger budget continues the run)"
        case .deadline(let limit):
            "deadline of \(limit.shortText) reached: no new calls were started, calls in flight were cancelled; "
                + "finished steps are in the trace (chorus resume \(runID) continues the run)"
        case .interrupted:
            "interrupted: no new calls were started, calls in flight were cancelled"
        case .approval(let nodes):
            "awaiting approval of \(nodes.joined(separator: ", ")): "
                + nodes.map { "chorus approve \(runID) \($0)" }.joined(separator: "; ") + " (or chorus deny), then chorus resume \(runID)"
        default:
            reason
        }
    }
}

/// The run's stop switch: the first `RunStop` wins, and every step checks it before a call.
final class RunCircuit: Sendable {
    private let state = Mutex<RunStop?>(nil)

    /// Why the run stops, once it does.
    var stop: RunStop? { state.withLock { $0 } }

    /// Why the run stops, in words, once it does.
    var reason: String? { stop?.reason }

    /// Opens the circuit with `stop`; true when this call opened it.
    func open(_ stop: RunStop) -> Bool {
        state.withLock { current in
            guard current == nil else { return false }
            current = stop
            return true
        }
    }
}

/// Turns JSON values into what swift-mustache renders: strings, numbers, arrays and
/// dictionaries of them (whole numbers without a fraction).
enum TemplateContext {
    static func value(_ json: JSONValue) -> Any {
        switch json {
        case .null: return ""
        case .bool(let b): return b
        case .number(let n): return n == n.rounded() && abs(n) < 9e15 ? Int(n) as Any : n
        case .string(let s): return s
        case .array(let a): return a.map(value)
        case .object(let o): return o.mapValues(value)
        }
    }

    /// Renders `template`, converting only the variables it names: a fan-out item's
    /// variables include every upstream output (say, a 10,000-entry plan), and converting
    /// all of them for each item made a run quadratic (perf: 40% of CPU).
    static func render(_ template: String, _ variables: [String: JSONValue]) throws -> String {
        let (compiled, roots, plain) = try TemplateCache.shared.lookup(template)
        if let text = plain?.render(variables) { return text }
        return render(compiled, roots: roots, variables)
    }

    /// Mustache alone, without the plain fast path (the tests compare the two).
    static func renderWithMustache(_ template: String, _ variables: [String: JSONValue]) throws -> String {
        let (compiled, roots, _) = try TemplateCache.shared.lookup(template)
        return render(compiled, roots: roots, variables)
    }

    private static func render(_ compiled: MustacheTemplate, roots: Set<String>, _ variables: [String: JSONValue]) -> String {
        var context: [String: Any] = [:]
        for root in roots {
            if let variable = variables[root] { context[root] = value(variable) }
        }
        return compiled.render(context)
    }
}

/// Compiled templates, the variable roots each names and its plain fast path, parsed once
/// per process.
final class TemplateCache: Sendable {
    static let shared = TemplateCache()
    private let entries = Mutex<[String: (MustacheTemplate, Set<String>, PlainTemplate?)]>([:])

    func lookup(_ text: String) throws -> (MustacheTemplate, Set<String>, PlainTemplate?) {
        if let hit = entries.withLock({ $0[text] }) { return hit }
        let entry = (try TemplateReferences.compile(text), Set(TemplateReferences.allRoots(in: text)), PlainTemplate(text))
        entries.withLock { $0[text] = entry }
        return entry
    }
}
