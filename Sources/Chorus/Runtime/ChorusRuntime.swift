import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import ServiceLifecycle
import Synchronization
import Tracing

/// How a `ChorusRuntime` is set up: where runs are recorded and how wide it may go.
public struct RuntimeConfiguration: Sendable {
    /// Where every step is recorded (`TraceLocation("runs.db").open()`, or a PostgreSQL
    /// URL); nil records nothing (a run then cannot be replayed, resumed or audited).
    public var store: (any TraceBackend)?
    /// Model calls in flight at most, per run (a run's `RunOptions.maxParallel` may lower
    /// it); the HTTP client keeps at least this many connections per host.
    public var maxParallel: Int
    /// Called with every batch of records the trace commits, on the trace's writer thread:
    /// span exporters (`LiveSpanExporter.observe`, `TracingSpanEmitter.observe`) go here.
    /// Keep it quick; it holds up the next commit.
    public var observers: [@Sendable ([TraceChange]) -> Void]
    /// The event loop thread's name (what `top -H` shows).
    public var loopName: String
    /// Where a run's spans go as it runs (`TracingSpanEmitter`): nil is swift-distributed-
    /// tracing's `InstrumentationSystem.tracer`, the host's once it bootstraps one (swift-otel,
    /// say) and a no-op that costs nothing until then. Each run's root span is a child of the
    /// span current where `run` or `resume` was called (a server's request span).
    public var tracer: (any Tracer)?
    /// Prompts and answers in those spans too (left out by default: they are sensitive).
    public var spanContent: Bool

    /// A runtime recording to `store`.
    public init(
        store: (any TraceBackend)?, maxParallel: Int = 256, observers: [@Sendable ([TraceChange]) -> Void] = [], loopName: String = "chorus-loop",
        tracer: (any Tracer)? = nil, spanContent: Bool = false
    ) {
        self.store = store
        self.maxParallel = maxParallel
        self.observers = observers
        self.loopName = loopName
        self.tracer = tracer
        self.spanContent = spanContent
    }
}

/// One run's settings, beside the project and its inputs; every field has a default.
public struct RunOptions: Sendable {
    /// Model calls in flight at most (default: the runtime's).
    public var maxParallel: Int?
    /// The run stops when it has taken this long: it fails saying so, its finished steps
    /// stay in the trace, and a resume continues it.
    public var deadline: Duration?
    /// What the run may spend, over the workflow's own `budget`.
    public var budget: Budget
    /// The new run's id (default: a fresh sortable one, `20261123-172503-a1b2c3`).
    public var runID: String?
    /// Live counters and events (`RunProgress.events()`); default: a fresh one nobody reads.
    public var progress: RunProgress?
    /// Carries model requests (default: HTTP to each model's `base_url`, `LiveTransport`).
    public var transport: (any ModelTransport)?
    /// Carries tool calls (default: subprocess, HTTP and MCP as the tool files say).
    public var tools: (any ToolTransport)?
    /// Model name → model name: every step that would call the first calls the second.
    public var modelSwaps: [String: String]
    /// Decisions made in advance for what waits for a person (a node, `model:NAME`,
    /// `tool:NAME`), so the run does not pause there.
    public var approvals: [String: ApprovalDecision]
    /// Resume or replay a run whose audit chain (or an ancestor's) does not verify; the new
    /// run records the break.
    public var allowUnverified: Bool
    /// On PostgreSQL: the run's agent steps go to the shared step table (`chorus worker`).
    public var sharing: StepSharing?

    /// Options; each left out takes its default.
    public init(
        maxParallel: Int? = nil, deadline: Duration? = nil, budget: Budget = Budget(), runID: String? = nil, progress: RunProgress? = nil,
        transport: (any ModelTransport)? = nil, tools: (any ToolTransport)? = nil, modelSwaps: [String: String] = [:],
        approvals: [String: ApprovalDecision] = [:], allowUnverified: Bool = false, sharing: StepSharing? = nil
    ) {
        self.maxParallel = maxParallel
        self.deadline = deadline
        self.budget = budget
        self.runID = runID
        self.progress = progress
        self.transport = transport
        self.tools = tools
        self.modelSwaps = modelSwaps
        self.approvals = approvals
        self.allowUnverified = allowUnverified
        self.sharing = sharing
    }
}

/// Why the runtime could not do what was asked, one line.
public struct ChorusRuntimeError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// Chorus's front door for a Swift program: it owns the event loop, the HTTP client and
/// the trace writer, starts them together and stops them in the one order that loses
/// nothing (`shutdown()`), and runs, resumes, replays and forks workflows from any Swift
/// concurrency context. The loop is an implementation detail: every call hops onto it
/// and back. Cancelling the calling task interrupts the run as Ctrl-C does — no new
/// calls, calls in flight cancelled, the run marked interrupted, the trace flushed.
///
/// ```swift
/// let runtime = try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation("runs.db").open()))
/// let project = try Project(loading: "workflows/research.json")
/// let summary = try await runtime.run(project, inputs: ["question": "Which model?"])
/// print(summary.output ?? "no output", summary.cost)
/// await runtime.shutdown()
/// ```
public final class ChorusRuntime: Sendable {
    /// What the runtime was made with.
    public let configuration: RuntimeConfiguration
    let loop: EventLoop
    let client: HTTPClient
    let writer: TraceWriter
    private let stopped = Mutex(false)
    /// Runs whose spans go to the host's tracer, by run id.
    private let emitters: Emitters

    /// Starts the loop thread, the HTTP client and the trace writer.
    public init(_ configuration: RuntimeConfiguration) throws(ChorusRuntimeError) {
        guard configuration.maxParallel >= 1 else { throw ChorusRuntimeError("maxParallel must be 1 or more, got \(configuration.maxParallel)") }
        self.configuration = configuration
        do { loop = try EventLoop(name: configuration.loopName) } catch { throw ChorusRuntimeError("cannot start the event loop: \(error)") }
        do {
            client = try HTTPClient.make(
                on: loop,
                configuration: .init(maxConnectionsPerHost: max(64, configuration.maxParallel), maxIdleConnections: max(64, configuration.maxParallel)))
        } catch {
            loop.shutdown()
            throw ChorusRuntimeError("cannot start the HTTP client: \(error)")
        }
        let emitters = Emitters()
        self.emitters = emitters
        writer = Self.writer(configuration, emitters: emitters)
    }

    private static func writer(_ configuration: RuntimeConfiguration, emitters: Emitters) -> TraceWriter {
        guard let store = configuration.store else { return TraceWriter(discarding: ()) }
        let observers = configuration.observers
        return TraceWriter(
            store: store,
            observer: { changes in
                for observer in observers { observer(changes) }
                emitters.observe(changes)
            })
    }

    /// Model calls over HTTP through the runtime's client: what a run uses unless its options
    /// name another transport, and what an application's own transport may delegate to.
    public var liveTransport: LiveTransport { LiveTransport(client: client) }

    /// Tool calls as the tool files say (subprocess, HTTP, MCP), for one run: it starts and
    /// stops that run's MCP servers.
    public func liveTools() -> LiveTools { LiveTools(client: client, loop: loop) }

    /// The trace store runs are recorded to, nil when nothing is.
    public var store: (any TraceBackend)? { configuration.store }

    /// Whether a trace write failed (a full disk, a lost database): the first failure, one line.
    public var traceFailure: String? { writer.failure }

    /// Runs `project` with `inputs` (checked against the workflow's declared inputs, with
    /// their defaults filled in). A run that fails is a summary with `status` failed and its
    /// error, not a throw; what throws is a call the runtime cannot make at all.
    public func run(_ project: Project, inputs: JSONValue = [:], options: RunOptions = RunOptions()) async throws(ChorusRuntimeError) -> RunSummary {
        try checkRunning()
        guard let given = inputs.objectValue else { throw ChorusRuntimeError("inputs: expected an object of the workflow's inputs, found \(inputs.typeName)") }
        let (complete, problems) = RunInputs.complete(given, source: "inputs", workflow: project.workflow)
        if !problems.isEmpty { throw ChorusRuntimeError(problems.map(\.description).joined(separator: "; ")) }
        var fresh = RunOrigin()
        fresh.modelSwaps = options.modelSwaps
        fresh.approvals = options.approvals
        let origin = fresh
        let runID = options.runID ?? Orchestrator.newRunID()
        let progress = options.progress ?? RunProgress()
        let maxParallel = parallelism(options)
        let (client, loop, writer) = (self.client, self.loop, self.writer)
        let traced = traceSpans(of: runID)
        let summary = await onLoop {
            await Orchestrator.run(
                project, inputs: .object(complete), trace: writer, transport: options.transport ?? LiveTransport(client: client),
                recordedTransport: nil, tools: options.tools ?? LiveTools(client: client, loop: loop), recordedTools: nil,
                origin: origin, budget: options.budget, loop: loop, maxParallel: maxParallel, progress: progress, runID: runID,
                deadline: options.deadline, sharing: options.sharing)
        }
        progress.finish()
        if traced { await endSpans(of: runID) }
        return summary
    }

    /// Continues an interrupted or crashed run without repeating finished work: finished
    /// steps are reused from the trace, the rest run now, recorded as a new run linked to it.
    public func resume(_ runID: String, project: Project, options: RunOptions = RunOptions()) async throws -> RunSummary {
        try checkRunning()
        let store = try recordingStore("resume")
        let progress = options.progress ?? RunProgress()
        let maxParallel = parallelism(options)
        let (client, loop, writer) = (self.client, self.loop, self.writer)
        let newRunID = options.runID ?? Orchestrator.newRunID()
        let traced = traceSpans(of: newRunID)
        defer { progress.finish() }
        do {
            let summary = try await onLoop {
                try await Resumer.resume(
                    runID, store: store, project: project, client: client, trace: writer, loop: loop, maxParallel: maxParallel,
                    progress: progress, newRunID: newRunID, sharing: options.sharing, allowUnverified: options.allowUnverified)
            }
            if traced { await endSpans(of: newRunID) }
            return summary
        } catch {
            if traced { await endSpans(of: newRunID) }
            throw error
        }
    }

    /// Replays a recorded run from its trace, making no model or tool call; with
    /// `liveFrom` (a step path or node), forks it instead: what came before that point is
    /// served from the trace, the rest runs live with `options.modelSwaps`.
    public func replay(_ runID: String, project: Project, liveFrom: String? = nil, options: RunOptions = RunOptions()) async throws -> ReplayReport {
        try checkRunning()
        let store = try recordingStore("replay")
        let progress = options.progress ?? RunProgress()
        let (client, loop, writer) = (self.client, self.loop, self.writer)
        let fork = liveFrom.map { Replayer.Fork(liveFrom: $0, modelSwaps: options.modelSwaps, client: client) }
        let maxParallel = fork == nil ? 1024 : parallelism(options)
        defer { progress.finish() }
        return try await onLoop {
            try await Replayer.replay(
                runID, store: store, project: project, trace: writer, loop: loop, progress: progress, fork: fork,
                maxParallel: maxParallel, allowUnverified: options.allowUnverified)
        }
    }

    /// Recorded runs, newest first.
    public func runs(limit: Int = 50) async throws -> [RunRecord] {
        let store = try recordingStore("runs")
        await writer.flush()
        return try await OffLoop.run { Array(try store.runs().prefix(limit)) }
    }

    /// A recorded run by id or unique prefix, with its steps in step order; nil when none matches.
    public func recorded(_ runID: String) async throws -> (run: RunRecord, steps: [StepRecord])? {
        let store = try recordingStore("recorded")
        await writer.flush()
        return try await OffLoop.run { () throws -> (RunRecord, [StepRecord])? in
            guard let run = try store.run(matching: runID) else { return nil }
            return (run, try store.steps(ofRun: run.id))
        }
    }

    /// Stops the runtime: the HTTP client closes its connections (on the loop), the trace
    /// writer commits what it holds and closes, then the loop thread ends. Call it once no
    /// run is going; a second call does nothing. Runs after it throw.
    public func shutdown() async {
        let first = stopped.withLock { stopped -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        let client = self.client
        await onLoop { await client.shutdown() }
        let writer = self.writer
        // close() joins the writer's thread after its last commit: off the caller's executor.
        _ = try? await OffLoop.runToCompletion { writer.close() }
        loop.shutdown()
    }

    /// The loop, client and writer, for the command-line tool's own plumbing (its signal
    /// watchers and progress display live on the loop; an eval drives runs itself).
    package var eventLoop: EventLoop { loop }
    package var httpClient: HTTPClient { client }
    package var traceWriter: TraceWriter { writer }

    /// `shutdown()` from synchronous code (a command's end), never on the loop thread.
    package func shutdownBlocking() {
        let done = DispatchSemaphore(value: 0)
        Task.detached { [self] in
            await shutdown()
            done.signal()
        }
        done.wait()
    }

    /// Sends `runID`'s spans to the host's tracer, children of the caller's current span;
    /// false (and nothing done) when no tracer is bootstrapped.
    private func traceSpans(of runID: String) -> Bool {
        let tracer = configuration.tracer ?? InstrumentationSystem.tracer
        guard !(tracer is NoOpTracer), configuration.store != nil else { return false }
        emitters.add(runID, TracingSpanEmitter(tracer: tracer, parent: ServiceContext.current ?? .topLevel, content: configuration.spanContent))
        return true
    }

    /// Once the run's last records are committed (and so observed), ends what is still open.
    private func endSpans(of runID: String) async {
        await writer.flush()
        emitters.remove(runID)?.finish()
    }

    private func checkRunning() throws(ChorusRuntimeError) {
        if stopped.withLock({ $0 }) { throw ChorusRuntimeError("the runtime was shut down") }
    }

    private func recordingStore(_ what: String) throws(ChorusRuntimeError) -> any TraceBackend {
        guard let store = configuration.store else { throw ChorusRuntimeError("\(what): this runtime records nothing (its configuration has no store)") }
        return store
    }

    private func parallelism(_ options: RunOptions) -> Int { max(1, min(options.maxParallel ?? configuration.maxParallel, configuration.maxParallel)) }

    /// Runs `body` on the loop from whatever executor the caller is on; cancelling the caller cancels it.
    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async rethrows -> T {
        try await withTaskExecutorPreference(loop) { try await body() }
    }
}

/// The span emitters of the runs in flight: each committed batch goes, run by run, to the
/// emitter of the run it belongs to. With none registered (no tracer bootstrapped) a batch
/// costs one lock.
final class Emitters: Sendable {
    private let byRun = Mutex<[String: TracingSpanEmitter]>([:])

    func add(_ runID: String, _ emitter: TracingSpanEmitter) { byRun.withLock { $0[runID] = emitter } }
    func remove(_ runID: String) -> TracingSpanEmitter? { byRun.withLock { $0.removeValue(forKey: runID) } }

    func observe(_ changes: [TraceChange]) {
        let emitters = byRun.withLock { $0 }
        guard !emitters.isEmpty else { return }
        var perRun: [String: [TraceChange]] = [:]
        for change in changes {
            guard let runID = change.runID, emitters[runID] != nil else { continue }
            perRun[runID, default: []].append(change)
        }
        for (runID, batch) in perRun { emitters[runID]?.observe(batch) }
    }
}

extension TraceChange {
    /// The run a change belongs to; nil for an eval's records.
    var runID: String? {
        switch self {
        case .run(let run): run.id
        case .step(let step): step.runID
        case .modelCall(let call, _, _), .copiedModelCall(let call): call.runID
        case .toolCall(let call, _, _), .copiedToolCall(let call): call.runID
        case .event(let runID, _, _, _, _): runID
        case .eval, .evalResult: nil
        }
    }
}

/// A runtime is a service of a swift-service-lifecycle `ServiceGroup`: it runs until the
/// group shuts down gracefully (SIGTERM to a server, say), then shuts down in order.
extension ChorusRuntime: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
