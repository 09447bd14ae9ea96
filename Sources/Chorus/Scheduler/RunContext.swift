import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Mustache
import Synchronization

/// What every step of one run shares: the loop, the HTTP client, the trace writer, one
/// limiter per model (shared by all nodes, so no configuration can exceed a provider's
/// limit), the global parallelism cap and the progress counters.
final class RunContext: Sendable {
    let loop: EventLoop
    /// Carries live calls.
    let transport: any ModelTransport
    /// Carries calls served from the parent's trace (replays and forks).
    let recordedTransport: (any ModelTransport)?
    /// Runs tool calls, live.
    let tools: any ToolTransport
    /// Serves tool calls from the parent's trace (replays and forks).
    let recordedTools: (any ToolTransport)?
    /// How this run relates to a recorded one.
    let origin: RunOrigin
    let trace: TraceWriter
    let runID: String
    let project: Project
    let limiters: [String: ModelLimiter]
    let global: LoopSemaphore
    let progress: RunProgress
    let retryPolicy = RetryPolicy()
    /// Opens when a model answers in a way that no retry or escalation can fix (401, 403,
    /// 404, unknown model): the run stops with that one line instead of escalating each step.
    let circuit = RunCircuit()
    /// Steps that ended without an answer, for the run's summary.
    let failures = FailureList()
    /// The run's budget and what it has spent; nil when the run has none.
    let ledger: BudgetLedger?
    /// Nodes that wait for a person's decision in this run.
    let awaitingApproval = Mutex<Set<String>>([])

    /// Whether `node`'s steps may call models: allowed when it needs no approval or was
    /// approved; otherwise held (recorded once per node) or denied.
    func approvalGate(node: String, path: String) -> ModelCall.Verdict {
        guard project.workflow.nodes[node]?.requiresApproval == true else { return .allow }
        return approval(node: node, path: path, because: "the node requires approval")
    }

    /// A person's decision on `node`: allowed when approved; denied (by whom, with their
    /// note); else the node is recorded as waiting (`because` says for what) and held.
    func approval(node: String, path: String, because reason: String) -> ModelCall.Verdict {
        if let decision = origin.approvals[node] {
            // The note is a person's words, shown in errors and on terminals: one line, no controls.
            return decision.approved ? .allow
                : .deny("denied by \(TerminalText.escaped(decision.by))" + (decision.note.map { ": \(TerminalText.escaped($0))" } ?? ""))
        }
        let first = awaitingApproval.withLock { $0.insert(node).inserted }
        if first { event(.approvalRequested(node: node, reason: reason), step: path) }
        return .hold("awaiting approval: \(reason) (chorus approve \(runID) \(node), then chorus resume \(runID))")
    }

    /// The data labels each node's requests carry, with where each came from.
    let nodeLabels: [String: [String: String]]
    /// Budgets of nodes and of models that set one, by node id and model name.
    let nodeLedgers: [String: BudgetLedger]
    let modelLedgers: [String: BudgetLedger]
    /// The budget refusal that stopped the run, if one did.
    var budgetRefusal: String? {
        if case .budget(let reason)? = circuit.stop { return reason }
        return nil
    }
    /// A shared run's way to the step table: its agent steps run on any worker.
    let dispatcher: StepDispatcher?

    init(loop: EventLoop, transport: any ModelTransport, recordedTransport: (any ModelTransport)?, tools: any ToolTransport,
         recordedTools: (any ToolTransport)?, origin: RunOrigin, trace: TraceWriter, runID: String, project: Project,
         maxParallel: Int, progress: RunProgress, ledger: BudgetLedger? = nil, dispatcher: StepDispatcher? = nil,
         sharedBudgets: SharedBudgetRows? = nil) {
        self.ledger = ledger
        self.dispatcher = dispatcher
        nodeLabels = DataBoundary.labels(project)
        // A shared run's node and model budgets are rows every worker spends from.
        var nodes: [String: BudgetLedger] = [:]
        for (id, node) in project.workflow.nodes where node.budget.isLimited {
            nodes[id] = BudgetLedger(budget: node.budget, loop: loop, shared: sharedBudgets?.ledger("node/\(id)"))
        }
        var models: [String: BudgetLedger] = [:]
        for (name, model) in project.config.models where model.budget.isLimited {
            models[name] = BudgetLedger(budget: model.budget, loop: loop, shared: sharedBudgets?.ledger("model/\(name)"))
        }
        nodeLedgers = nodes
        modelLedgers = models
        self.loop = loop
        self.transport = transport
        self.recordedTransport = recordedTransport
        self.tools = tools
        self.recordedTools = recordedTools
        finishedToolCalls = Mutex(origin.finishedToolCalls)
        self.origin = origin
        self.trace = trace
        self.runID = runID
        self.project = project
        self.progress = progress
        // On a shared database (PostgreSQL), max_concurrency holds across every worker.
        let shared = trace.backend?.sharedConcurrency
        let holder = "\(TraceStore.hostName):\(getpid()):\(runID)"
        let rates = trace.backend?.sharedRates
        limiters = project.config.models.mapValues { ModelLimiter(spec: $0, loop: loop, shared: shared, rates: rates, holder: holder) }
        global = LoopSemaphore(permits: maxParallel, loop: loop)
    }

    /// Once the trace cannot be written (a full disk), no further model call is made: it
    /// could never be recorded, so it would be unauditable spend. Opens the circuit with
    /// one line saying so; true when the trace has failed.
    func stopIfTheTraceFailed() -> Bool {
        guard let failure = trace.failure else { return false }
        let what = trace.failedForSpace ? "the disk holding the trace database is full" : "the trace database could not be written"
        if circuit.open(.traceUnwritable("\(what) (\(failure)): the run stopped making calls; the \(trace.committedSteps) steps it finished "
                                         + "before are kept, and chorus resume \(runID) continues once it can be written")) {
            progress.log("trace write failed: stopping")
        }
        return true
    }

    /// The output of a tool call the resumed run finished in this (unfinished) step with the
    /// same tool and input, taken once; nil when there is none and the tool must run.
    func takeFinishedToolCall(step: String, tool: String, input: JSONValue) -> ToolOutcome? {
        guard origin.finishedToolCalls[step] != nil else { return nil }
        let hash = TraceStore.hash(input.serialized())
        let taken = finishedToolCalls.withLock { pending -> FinishedToolCall? in
            guard let index = pending[step]?.firstIndex(where: { $0.call.tool == tool && $0.call.inputHash == hash }) else { return nil }
            return pending[step]?.remove(at: index)
        }
        guard let taken else { return nil }
        event(.toolCallReused(tool: tool, from: origin.parent ?? ""), step: step)
        return ToolOutcome(output: taken.output, isError: taken.call.isError, exitStatus: taken.call.exitStatus, error: taken.call.error)
    }
    private let finishedToolCalls: Mutex<[String: [FinishedToolCall]]>

    /// True the first time `agent`'s tools are offered in this run (for the one
    /// `tools_offered` event a replay needs).
    func firstOffer(of agent: String) -> Bool {
        offeredAgents.withLock { $0.insert(agent).inserted }
    }
    private let offeredAgents = Mutex<Set<String>>([])

    /// The budgets a call of `model` in `node` reserves against, run first, in a fixed order
    /// (so two calls never wait on each other's holds in opposite orders).
    func ledgers(node: String, model: String) -> [BudgetLedger] {
        [ledger, nodeLedgers[node], modelLedgers[model]].compactMap { $0 }
    }

    /// A call was refused for the budget: the run stops making calls (the rest of its steps
    /// are reported as not run) and its summary says why.
    func refuseForBudget(_ reason: String) {
        if circuit.open(.budget(reason)) { progress.log(reason) }
    }

    /// What runs `path`'s tool calls.
    func tools(for path: String) -> any ToolTransport {
        origin.isRecorded(path) ? recordedTools ?? tools : tools
    }

    /// The transport for `path`'s calls.
    func transport(for path: String) -> any ModelTransport {
        origin.isRecorded(path) ? recordedTransport ?? transport : transport
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Appends `event` to the run's log.
    func event(_ event: TraceEvent, step: String? = nil) {
        trace.append(.event(runID: runID, event, stepPath: step, at: Self.now()))
    }
}

/// Steps that failed or were not run, gathered from every task of a run.
final class FailureList: Sendable {
    private let items = Mutex<[FailedItem]>([])

    /// `reason` says why, without the step's path (the list names the step).
    func record(_ step: String, _ reason: String) {
        items.withLock { $0.append(FailedItem(step: step, reason: reason)) }
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
    static func ending(completed: Bool, raised: RunStop?, expired: Duration?, interrupted: Bool, waiting: [String],
                       failedSteps: Int, error: String) -> RunStop? {
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
