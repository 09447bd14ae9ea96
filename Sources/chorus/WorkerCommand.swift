import ArgumentParser
import Chorus
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
        let queue = try WorkerCommand.openQueue(common.databasePath, command: "submit")
        let id = Orchestrator.newRunID()
        let absolute = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.path }
        do {
            try queue.submit(id: id, workflowPath: absolute(workflow), configPath: absolute(common.config ?? SpecLoader.configPath(forWorkflow: workflow)),
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

    @Flag(name: .customLong("exit-when-idle"), help: "Exit once every submitted run has finished (a run another worker holds is waited for, and taken over if that worker's lease lapses).")
    var exitWhenIdle = false

    func validate() throws {
        guard maxRuns >= 1 else { throw ValidationError("--max-runs must be 1 or more, got \(maxRuns)") }
    }


    static func openQueue(_ location: String, command: String) throws -> PostgresRunQueue {
        guard case .postgres(let url) = TraceLocation(location) else {
            printError("chorus \(command): the run queue needs a PostgreSQL trace database: --db postgres://user@host/db (or CHORUS_DB)")
            throw ExitCode(2)
        }
        do { return try PostgresRunQueue(url: url) } catch {
            printError("chorus \(command): \(error)")
            throw ExitCode(1)
        }
    }

    @Flag(name: .customLong("share-steps"), inversion: .prefixedNo,
          help: "Share each run's steps with every worker: the worker holding a run plans it, and every worker runs its steps.")
    var shareSteps = true

    /// Who leases, in the queue and the step table: host, process, and a random part.
    /// A worker's children are named after it (`WORKER/PID`), so the step table says which worker ran each step.
    static func ownerName() -> String {
        if let worker = ProcessInfo.processInfo.environment["CHORUS_WORKER"], !worker.isEmpty { return "\(worker)/\(getpid())" }
        return "\(TraceStore.hostName):\(getpid()):\(UUID().uuidString.prefix(8))"
    }

    /// One run this worker holds (its lease and the child coordinating it), or one whose
    /// steps it helps run (`chorus steps`; `queued` is nil).
    private final class Held: @unchecked Sendable {
        let queued: QueuedRun?
        let key: String
        let task: Task<Void, Never>
        let outcome: ChildOutcome
        var lastHeartbeat = ContinuousClock.now
        var lost = false
        init(queued: QueuedRun?, key: String, task: Task<Void, Never>, outcome: ChildOutcome) {
            self.queued = queued
            self.key = key
            self.task = task
            self.outcome = outcome
        }
    }

    func run() throws {
        let location = common.databasePath
        let queue = try Self.openQueue(location, command: "worker")
        let owner = Self.ownerName()
        let steps = shareSteps ? (try? common.openStore())?.sharedSteps : nil
        var lastLook = ContinuousClock.now - .seconds(10)
        let loop = try EventLoop(name: "chorus-worker")
        defer { loop.shutdown() }
        let stopping = LockedFlag()
        let watchers = [SIGINT, SIGTERM].compactMap { signal in
            try? SignalWatcher.watch(signal, on: loop) { _ in stopping.set() }
        }
        defer { watchers.forEach { $0.close() } }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        printError("chorus worker \(owner): leasing runs from \(queue.location), up to \(maxRuns) at once")
        var held: [Held] = []
        var finished = 0
        while true {
            // Runs whose child has ended: record how, unless the lease was lost meanwhile.
            var still: [Held] = []
            for run in held {
                guard let ended = run.outcome.value else { still.append(run); continue }
                guard let queued = run.queued else {
                    // A helper: the coordinator records the run; say what it did.
                    if let line = ended.flatMap({ String(decoding: $0.stderr, as: UTF8.self).split(separator: "\n").last }) { printError(String(line)) }
                    continue
                }
                finished += 1
                if run.lost || stopping.isSet { continue }
                let stdout = ended?.stdout ?? []
                let summary = (try? JSONValue(parsing: stdout)) ?? .null
                let status = ended?.exitStatus == 0 ? "succeeded" : "failed"
                let error = status == "succeeded" ? nil : summary["error"]?.stringValue
                    ?? ended.map { String(decoding: $0.stderr.suffix(400), as: UTF8.self) } ?? "the run could not be started"
                try? queue.finish(queued.id, owner: owner, status: status, error: error)
                printError("chorus worker: \(queued.id) \(status)" + (summary["run_id"]?.stringValue.map { " (run \($0))" } ?? ""))
            }
            held = still
            if stopping.isSet {
                // Children get SIGTERM (SIGKILL 10 s later): a run stops as Ctrl-C stops it, an
                // executor hands its steps back; then the runs' leases go back too.
                for run in held { run.task.cancel() }
                while held.contains(where: { $0.outcome.value == nil }) { usleep(50_000) }
                for run in held {
                    guard case .some(let ended?) = run.outcome.value else { continue }
                    if ended.terminationSignal == SIGKILL {
                        printError("chorus worker: \(run.key): its \(run.queued == nil ? "executor" : "run") did not stop within 10 s and was killed")
                    } else if run.queued == nil, let line = String(decoding: ended.stderr, as: UTF8.self).split(separator: "\n").last {
                        printError(String(line))
                    }
                }
                for run in held { if let queued = run.queued { try? queue.release(queued.id, owner: owner) } }
                let runs = held.filter { $0.queued != nil }.count
                printError("chorus worker: stopped; \(runs) runs handed back" + (held.count > runs ? ", \(held.count - runs) helpers stopped" : ""))
                throw ExitCode(held.isEmpty ? 0 : 1)
            }
            // Heartbeats: every third of the lease.
            let now = ContinuousClock.now
            for run in held where now - run.lastHeartbeat >= .milliseconds(Int64(lease.seconds * 1000 / 3)) {
                guard let queued = run.queued else { continue }
                run.lastHeartbeat = now
                if (try? queue.heartbeat(queued.id, owner: owner, seconds: lease.seconds)) == false {
                    run.lost = true
                    run.task.cancel()
                    printError("chorus worker: lost the lease of \(queued.id); stopping its run")
                }
            }
            // New leases while there is room.
            var leased = false
            if held.count < maxRuns, let queued = try? queue.lease(owner: owner, seconds: lease.seconds) {
                leased = true
                if let run = start(queued, queue: queue, owner: owner, executable: executable, location: location, loop: loop) {
                    held.append(run)
                }
            }
            // Room left: help run the steps of runs other workers coordinate whose steps wait
            // (queued for over a second: the executors they have do not keep up), looked up
            // twice a second. A run its coordinator keeps up with costs no other process.
            if let steps, held.count < maxRuns, ContinuousClock.now - lastLook >= .milliseconds(500) {
                lastLook = .now
                let here = Set(held.map(\.key))
                let needing = (try? steps.runsWithWork(now: Date().timeIntervalSince1970, waitedSeconds: 1)) ?? []
                for info in needing where held.count < maxRuns && !here.contains(info.runKey) {
                    held.append(help(info.runKey, owner: owner, executable: executable, location: location, loop: loop))
                }
            }
            if exitWhenIdle && held.isEmpty && !leased && (try? queue.unfinishedCount()) == 0 {
                printError("chorus worker: every submitted run has finished; \(finished) runs done here")
                return
            }
            if !leased { usleep(200_000) }
        }
    }

    /// Starts the child for a leased run: `chorus run` the first time, `chorus resume` of
    /// the latest run of it that exists when taking over from a worker whose lease lapsed.
    private func start(_ queued: QueuedRun, queue: PostgresRunQueue, owner: String, executable: String, location: String,
                       loop: EventLoop) -> Held? {
        // The first run of a submission has the submission's id, so `chorus runs show ID` finds it.
        let runID = queued.runIDs.isEmpty ? queued.id : Orchestrator.newRunID()
        var arguments: [String]
        var stdin: [UInt8] = []
        var previous: String?
        for id in queued.runIDs.reversed() {
            guard let status = try? queue.runStatus(id) else { continue }
            if status == RunStatus.succeeded.rawValue {
                try? queue.finish(queued.id, owner: owner, status: "succeeded", error: nil)
                printError("chorus worker: \(queued.id) had already succeeded (run \(id))")
                return nil
            }
            previous = id
            break
        }
        if let previous {
            try? queue.markInterrupted(runID: previous)
            arguments = ["resume", previous]
            printError("chorus worker: taking over \(queued.id): resuming run \(previous) as \(runID)")
        } else {
            // The inputs go to the child through its standard input: a file would leave them
            // (secret-labelled ones too) in the temp directory for anyone to read.
            stdin = Array(queued.inputsJSON.utf8)
            arguments = ["run", queued.workflowPath, "--input-file", "-"]
            printError("chorus worker: starting \(queued.id) as run \(runID)")
        }
        arguments += ["--config", queued.configPath, "--db", location, "--run-id", runID, "--max-parallel", String(parallel.maxParallel), "--json"]
        if shareSteps { arguments += ["--share-steps", queued.id, "--lease-seconds", String(lease.seconds)] }
        guard (try? queue.started(queued.id, runID: runID, owner: owner)) == true else { return nil }
        let (task, outcome) = spawn([executable] + arguments, stdin: stdin, owner: owner, loop: loop)
        return Held(queued: queued, key: queued.id, task: task, outcome: outcome)
    }

    /// Runs a child of this worker: it dies with the worker (CHORUS_PARENT_PID), its leases
    /// carry the worker's name (CHORUS_WORKER), and cancelling its task sends it SIGTERM
    /// (SIGKILL 10 s later) so it stops cleanly.
    private func spawn(_ argv: [String], stdin: [UInt8] = [], owner: String, loop: EventLoop) -> (Task<Void, Never>, ChildOutcome) {
        var environment = ProcessInfo.processInfo.environment
        environment["CHORUS_PARENT_PID"] = String(getpid())
        environment["CHORUS_WORKER"] = owner
        let outcome = ChildOutcome()
        let task = Task(executorPreference: loop) {
            outcome.set(try? await ChildProcess.run(argv, stdin: stdin, environment: environment, maxOutputBytes: 1 << 20,
                                                    cancelSignal: SIGTERM, on: loop))
        }
        return (task, outcome)
    }

    /// Starts a `chorus steps` child for a run another worker coordinates.
    private func help(_ key: String, owner: String, executable: String, location: String, loop: EventLoop) -> Held {
        let argv = [executable, "steps", key, "--db", location, "--max-parallel", String(parallel.maxParallel), "--lease-seconds", String(lease.seconds)]
        let (task, outcome) = spawn(argv, owner: owner, loop: loop)
        return Held(queued: nil, key: key, task: task, outcome: outcome)
    }

}

/// A child's result, set by its task when it ends and polled by the worker's loop.
final class ChildOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var result: ProcessResult??
    func set(_ value: ProcessResult?) { lock.withLock { result = .some(value) } }
    /// Nil while the child runs; `.some(nil)` when it could not be started.
    var value: ProcessResult?? { lock.withLock { result } }
}

/// A flag set from a signal watcher and read by the worker's loop.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
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
        let queue = try WorkerCommand.openQueue(common.databasePath, command: "queue")
        let rows: [QueuedRun]
        var steps: [String: (steps: Int, done: Int, leases: Int)] = [:]
        do {
            rows = try queue.all()
            // A shared run's steps: how many are done (a submission's id is its run key).
            if let table = (try? common.openStore(readOnly: true))?.sharedSteps { steps = try table.stepCounts() }
        } catch {
            printError("chorus queue: \(error)")
            throw ExitCode(1)
        }
        if json {
            print(JSONValue.array(rows.map { row in
                var object: [String: JSONValue] = [
                    "id": .string(row.id), "status": .string(row.status), "attempts": .number(Double(row.attempts)),
                    "runs": .array(row.runIDs.map(JSONValue.string)), "worker": row.leaseOwner.map(JSONValue.string) ?? .null,
                    "workflow": .string(row.workflowPath), "error": row.error.map(JSONValue.string) ?? .null]
                if let counts = steps[row.id], counts.steps > 0 {
                    object["steps"] = ["total": .number(Double(counts.steps)), "done": .number(Double(counts.done))]
                }
                return .object(object)
            }).text)
            return
        }
        print("SUBMISSION              STATUS     ATTEMPTS  STEPS DONE   LATEST RUN              WORKER")
        for row in rows {
            let status = row.status.padding(toLength: 10, withPad: " ", startingAt: 0)
            let attempts = String(row.attempts).padding(toLength: 9, withPad: " ", startingAt: 0)
            let counts = steps[row.id].flatMap { $0.steps > 0 ? "\($0.done)/\($0.steps)" : nil } ?? "-"
            let latest = (row.runIDs.last ?? "-").padding(toLength: 23, withPad: " ", startingAt: 0)
            print("\(row.id.padding(toLength: 23, withPad: " ", startingAt: 0)) \(status) \(attempts) \(counts.padding(toLength: 12, withPad: " ", startingAt: 0)) \(latest) \(row.leaseOwner ?? "-")"
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
        guard let queue = store.sharedSteps else {
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
        let client = try HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: max(64, parallel.maxParallel),
                                                                       maxIdleConnections: max(64, parallel.maxParallel)))
        let sharing = StepSharing(runKey: key, queue: queue, owner: WorkerCommand.ownerName(), leaseSeconds: lease.seconds)
        let executor = StepExecutor(sharing: sharing, project: project, runID: info.runID, backend: store, client: client, loop: loop,
                                    maxParallel: parallel.maxParallel, approvals: StepExecutor.approvals(of: info.runID, store: store),
                                    budget: Budget(jsonText: info.budgetJSON))
        let status = RunStatusProbe(queue: queue, key: key)
        let idle = Duration.milliseconds(Int64(idleSeconds * 1000))
        var watchers: [SignalWatcher] = []
        loop.blockingWait({
            await executor.run { await status.running() && executor.idleFor < idle }
        }, started: { task in
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
