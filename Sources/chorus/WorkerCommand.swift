import ArgumentParser
import Chorus
import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// `chorus submit`: puts a run on the PostgreSQL run queue for `chorus worker` to run.
struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Queue a run in a PostgreSQL trace database; any `chorus worker` on any machine runs it.",
        discussion: """
            The workflow and models are checked now, as chorus run checks them; their paths are stored absolute, so \
            every worker must see the project at the same path (a shared checkout or volume). Prints the run's id: \
            chorus runs show ID --db URL follows it once a worker has started it.
            """
    )

    @Argument(help: "The workflow file (workflows/NAME.json).")
    var workflow: String

    @OptionGroup var input: InputOptions

    @OptionGroup var common: CommonOptions

    func run() throws {
        let project = try common.loadProject(workflow: workflow)
        let values = try input.resolve(for: project)
        let queue = try WorkerCommand.openQueue(common.databasePath, command: "submit").runs
        let id = Orchestrator.newRunID()
        let absolute = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.path }
        do {
            try queue.submit(
                id: id, workflowPath: absolute(workflow), configPath: absolute(common.config ?? SpecLoader.configPath(forWorkflow: workflow)),
                inputsJSON: values.text)
        } catch {
            printError("chorus submit: \(error)")
            throw ExitCode(1)
        }
        print(id)
    }
}

/// `chorus worker`: runs queued runs, on as many machines as you start it on.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run queued runs from a PostgreSQL trace database, alongside workers on other machines.",
        discussion: """
            A worker leases a queued run (FOR UPDATE SKIP LOCKED) and coordinates it in a chorus run child process \
            recording to the same database, renewing its lease every third of --lease-seconds. The run's agent steps go \
            to a step table: the coordinator's executor and, when steps wait, executors on the other workers lease and \
            run them; the coordinator writes their results into the run's trace. A worker that dies (SIGKILL, a lost \
            machine) stops renewing: its steps are leased again, and once its run's lease lapses another worker takes \
            the run over and resumes it, reusing every finished step, so no finished step runs twice. Its children die \
            with it. Ctrl-C or SIGTERM: no new leases; its children get SIGTERM, so runs are interrupted and steps handed back at once. A model's \
            max_concurrency, requests and tokens per minute, and a shared run's budgets hold across every worker (rows \
            in the database).
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("max-runs"), help: "Runs this worker runs at once.")
    var maxRuns: Int = 4

    @OptionGroup var lease: LeaseOptions

    @OptionGroup var parallel: ParallelOptions

    @Flag(
        name: .customLong("exit-when-idle"),
        help: "Exit once every submitted run has finished (a run another worker holds is waited for, and taken over if that worker's lease lapses).")
    var exitWhenIdle = false

    func validate() throws {
        guard maxRuns >= 1 else { throw ValidationError("--max-runs must be 1 or more, got \(maxRuns)") }
    }

    /// The run queue of the database at `location`, with the rest of its coordination.
    static func openQueue(_ location: String, command: String) throws -> (runs: any RunQueue, coordination: any Coordination) {
        guard let coordination = TraceLocation(location).openCoordination() else {
            printError("chorus \(command): the run queue needs a PostgreSQL trace database: --db postgres://user@host/db (or CHORUS_DB)")
            throw ExitCode(2)
        }
        do { return (try coordination.runQueue(), coordination) } catch {
            printError("chorus \(command): \(error)")
            throw ExitCode(1)
        }
    }

    @Flag(
        name: .customLong("share-steps"), inversion: .prefixedNo,
        help: "Share each run's steps with every worker: the worker holding a run plans it, and every worker runs its steps.")
    var shareSteps = true

    func run() throws {
        let location = common.databasePath
        let (queue, coordination) = try Self.openQueue(location, command: "worker")
        let steps = shareSteps ? coordination.stepQueue() : nil
        let loop = try EventLoop(name: "chorus-worker")
        defer { loop.shutdown() }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let worker = RunWorker(
            queue: queue, steps: steps,
            options: .init(
                owner: RunWorker.ownerName(), maxRuns: maxRuns, leaseSeconds: lease.seconds,
                maxParallel: parallel.maxParallel, shareSteps: shareSteps, exitWhenIdle: exitWhenIdle,
                executable: executable, location: location),
            log: { printError($0) })
        let watchers = [SIGINT, SIGTERM].compactMap { signal in
            try? SignalWatcher.watch(signal, on: loop) { _ in worker.stop() }
        }
        defer { watchers.forEach { $0.close() } }
        switch worker.run(on: loop) {
        case .idle: return
        case .stopped(let runs, let helpers): if runs + helpers > 0 { throw ExitCode(1) }
        }
    }
}

/// `chorus queue`: what `chorus submit` queued and where each run is.
struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "List submitted runs in a PostgreSQL trace database: queued, running (and by which worker), finished."
    )

    @OptionGroup var common: CommonOptions

    @Flag(help: "Print a JSON array instead of a table.")
    var json = false

    func run() throws {
        let (queue, coordination) = try WorkerCommand.openQueue(common.databasePath, command: "queue")
        let rows: [QueuedRun]
        let steps: [String: (steps: Int, done: Int, leases: Int)]
        do {
            rows = try queue.all()
            // A shared run's steps: how many are done (a submission's id is its run key).
            steps = try coordination.stepQueue().stepCounts()
        } catch {
            printError("chorus queue: \(error)")
            throw ExitCode(1)
        }
        if json {
            print(
                JSONValue.array(
                    rows.map { row in
                        var object: [String: JSONValue] = [
                            "id": .string(row.id), "status": .string(row.status), "attempts": .number(Double(row.attempts)),
                            "runs": .array(row.runIDs.map(JSONValue.string)), "worker": row.leaseOwner.map(JSONValue.string) ?? .null,
                            "workflow": .string(row.workflowPath), "error": row.error.map(JSONValue.string) ?? .null,
                        ]
                        if let counts = steps[row.id], counts.steps > 0 {
                            object["steps"] = ["total": .number(Double(counts.steps)), "done": .number(Double(counts.done))]
                        }
                        return .object(object)
                    }
                ).text)
            return
        }
        print("SUBMISSION              STATUS     ATTEMPTS  STEPS DONE   LATEST RUN              WORKER")
        for row in rows {
            let status = row.status.padding(toLength: 10, withPad: " ", startingAt: 0)
            let attempts = String(row.attempts).padding(toLength: 9, withPad: " ", startingAt: 0)
            let counts = steps[row.id].flatMap { $0.steps > 0 ? "\($0.done)/\($0.steps)" : nil } ?? "-"
            let latest = (row.runIDs.last ?? "-").padding(toLength: 23, withPad: " ", startingAt: 0)
            print(
                "\(row.id.padding(toLength: 23, withPad: " ", startingAt: 0)) \(status) \(attempts) \(counts.padding(toLength: 12, withPad: " ", startingAt: 0)) \(latest) \(row.leaseOwner ?? "-")"
                    + (row.error.map { "  " + $0.prefix(80) } ?? ""))
        }
    }
}

/// `chorus steps KEY` (started by `chorus worker`): runs steps of a shared run that another
/// worker coordinates, until the run ends or no step has been waiting for a while.
struct StepsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "steps",
        abstract: "Run steps of a shared run another worker coordinates (chorus worker starts it).",
        shouldDisplay: false
    )

    @Argument(help: "The shared run's key (its submission id).")
    var key: String

    @OptionGroup var common: CommonOptions

    @OptionGroup var parallel: ParallelOptions

    @OptionGroup var lease: LeaseOptions

    @Option(name: .customLong("idle-seconds"), help: "Exit after this long with no step to run.")
    var idleSeconds: Double = 2

    func validate() throws {
        guard idleSeconds >= 0 && idleSeconds <= 3600 else { throw ValidationError("--idle-seconds must be between 0 and 3600") }
    }

    func run() throws {
        let store = try common.openStore()
        guard let queue = store.location.openCoordination()?.stepQueue() else {
            printError("chorus steps: shared runs need a PostgreSQL trace database: --db postgres://user@host/db")
            throw ExitCode(2)
        }
        let info: SharedRunInfo
        do {
            guard let found = try queue.run(key) else {
                printError("chorus steps: no shared run '\(key)' in \(store.path)")
                throw ExitCode(1)
            }
            info = found
        } catch let exit as ExitCode { throw exit } catch {
            printError("chorus steps: \(error)")
            throw ExitCode(1)
        }
        let project = try common.loadProject(workflow: info.workflowPath, recordedConfig: info.configPath)
        let loop = try EventLoop(name: "chorus-steps")
        let client = try HTTPClient.make(
            on: loop,
            configuration: .init(
                maxConnectionsPerHost: max(64, parallel.maxParallel),
                maxIdleConnections: max(64, parallel.maxParallel)))
        let sharing = StepSharing(runKey: key, queue: queue, owner: RunWorker.ownerName(), leaseSeconds: lease.seconds)
        let executor = StepExecutor(
            sharing: sharing, project: project, runID: info.runID, backend: store, client: client, loop: loop,
            maxParallel: parallel.maxParallel, approvals: StepExecutor.approvals(of: info.runID, store: store),
            budget: Budget(jsonText: info.budgetJSON))
        let status = RunStatusProbe(queue: queue, key: key)
        let idle = Duration.milliseconds(Int64(idleSeconds * 1000))
        var watchers: [SignalWatcher] = []
        loop.blockingWait(
            {
                await executor.run { await status.running() && executor.idleFor < idle }
            },
            started: { task in
                watchers = [SIGINT, SIGTERM].compactMap { signal in try? SignalWatcher.watch(signal, on: loop) { _ in task.cancel() } }
            })
        watchers.forEach { $0.close() }
        loop.blockingWait { await client.shutdown() }
        loop.shutdown()
        printError("chorus steps \(key): \(executor.executed) steps run here, \(executor.handedBack) handed back")
    }
}

/// Whether a shared run is still being coordinated, read from the database at most once a second.
private final class RunStatusProbe: @unchecked Sendable {
    private let queue: any SharedStepQueue
    private let key: String
    private let lock = NSLock()
    private var checked = ContinuousClock.now - .seconds(10)
    private var isRunning = true

    init(queue: any SharedStepQueue, key: String) {
        self.queue = queue
        self.key = key
    }

    func running() async -> Bool {
        let due = lock.withLock { () -> Bool in
            guard ContinuousClock.now - checked >= .seconds(1) else { return false }
            checked = .now
            return true
        }
        guard due else { return lock.withLock { isRunning } }
        let (queue, key) = (self.queue, self.key)
        // On a dispatch thread: a blocking query must not hold one of the Swift runtime's few.
        let status = await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            DispatchQueue.global().async { continuation.resume(returning: try? queue.run(key)?.status) }
        }
        let running = status.map { $0 == "running" } ?? true
        lock.withLock { isRunning = running }
        return running
    }
}
