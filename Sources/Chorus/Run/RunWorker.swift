import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// Runs queued runs, on as many machines as workers are started on: leases a run from the
/// `RunQueue`, coordinates it in a `chorus run` child recording to the same database, and
/// renews the lease every third of its length. A worker whose lease lapsed (it died, or
/// lost the database) loses the run to another, which resumes the latest run of it
/// (`chorus resume`), reusing every finished step. With a step table, room left over goes
/// to helping runs other workers coordinate whose steps wait (`chorus steps` children).
///
/// What `chorus worker` runs; the command only parses its options and prints.
package final class RunWorker: @unchecked Sendable {
    /// How a worker runs.
    package struct Options: Sendable {
        /// Who leases, in the queue and the step table (`RunWorker.ownerName()`).
        package var owner: String
        /// Runs (and helpers) held at once.
        package var maxRuns: Int
        package var leaseSeconds: Double
        /// `--max-parallel` for each child.
        package var maxParallel: Int
        /// Share each run's steps through the step table (`--share-steps`).
        package var shareSteps: Bool
        /// Return once every submitted run has finished.
        package var exitWhenIdle: Bool
        /// The chorus executable the children run.
        package var executable: String
        /// The database, as the children are given it (`--db`).
        package var location: String

        package init(
            owner: String, maxRuns: Int, leaseSeconds: Double, maxParallel: Int, shareSteps: Bool, exitWhenIdle: Bool,
            executable: String, location: String
        ) {
            self.owner = owner
            self.maxRuns = maxRuns
            self.leaseSeconds = leaseSeconds
            self.maxParallel = maxParallel
            self.shareSteps = shareSteps
            self.exitWhenIdle = exitWhenIdle
            self.executable = executable
            self.location = location
        }
    }

    /// How `run` ended.
    package enum Ending: Sendable, Equatable {
        /// Every submitted run has finished (`exitWhenIdle`); `finished` of them here.
        case idle(finished: Int)
        /// Stopped (`stop()`): its runs handed back, its helpers stopped.
        case stopped(runsHandedBack: Int, helpersStopped: Int)
    }

    private let queue: any RunQueue
    private let steps: (any SharedStepQueue)?
    private let options: Options
    private let log: @Sendable (String) -> Void
    private let stopping = LockedFlag()

    /// A worker taking runs from `queue`, helping with steps from `steps` (nil: it runs its
    /// own runs only); `log` is told what it does, a line at a time.
    package init(queue: any RunQueue, steps: (any SharedStepQueue)?, options: Options, log: @escaping @Sendable (String) -> Void) {
        self.queue = queue
        self.steps = options.shareSteps ? steps : nil
        self.options = options
        self.log = log
    }

    /// Who leases: host, process and a random part; a worker's children are named after it
    /// (`WORKER/PID`, from CHORUS_WORKER), so the step table says which worker ran each step.
    package static func ownerName() -> String {
        if let worker = ProcessInfo.processInfo.environment["CHORUS_WORKER"], !worker.isEmpty { return "\(worker)/\(getpid())" }
        return "\(TraceStore.hostName):\(getpid()):\(UUID().uuidString.prefix(8))"
    }

    /// Asks `run` to stop: no new leases; its children get SIGTERM (SIGKILL 10 s later), so
    /// runs are interrupted and steps handed back at once. Safe from any thread (a signal watcher).
    package func stop() { stopping.set() }

    /// One run this worker holds (its lease and the child coordinating it), or one whose
    /// steps it helps run (`queued` is nil).
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

    /// Leases, heartbeats and takes over until stopped or, with `exitWhenIdle`, until no
    /// submitted run is left. Blocks the calling thread (polling the database); the
    /// children's tasks run on `loop`, which must not be this thread.
    package func run(on loop: EventLoop) -> Ending {
        var lastLook = ContinuousClock.now - .seconds(10)
        log("chorus worker \(options.owner): leasing runs from \(queue.location), up to \(options.maxRuns) at once")
        var held: [Held] = []
        var finished = 0
        while true {
            // Runs whose child has ended: record how, unless the lease was lost meanwhile.
            var still: [Held] = []
            for run in held {
                guard let ended = run.outcome.value else { still.append(run); continue }
                guard let queued = run.queued else {
                    // A helper: the coordinator records the run; say what it did.
                    if let line = ended.flatMap({ String(decoding: $0.stderr, as: UTF8.self).split(separator: "\n").last }) { log(String(line)) }
                    continue
                }
                finished += 1
                if run.lost || stopping.isSet { continue }
                let stdout = ended?.stdout ?? []
                let summary = (try? JSONValue(parsing: stdout)) ?? .null
                let status = ended?.exitStatus == 0 ? "succeeded" : "failed"
                let error =
                    status == "succeeded"
                    ? nil
                    : summary["error"]?.stringValue
                        ?? ended.map { String(decoding: $0.stderr.suffix(400), as: UTF8.self) } ?? "the run could not be started"
                try? queue.finish(queued.id, owner: options.owner, status: status, error: error, now: Date().timeIntervalSince1970)
                log("chorus worker: \(queued.id) \(status)" + (summary["run_id"]?.stringValue.map { " (run \($0))" } ?? ""))
            }
            held = still
            if stopping.isSet { return stop(held) }
            // Heartbeats: every third of the lease.
            let now = ContinuousClock.now
            for run in held where now - run.lastHeartbeat >= .milliseconds(Int64(options.leaseSeconds * 1000 / 3)) {
                guard let queued = run.queued else { continue }
                run.lastHeartbeat = now
                if (try? queue.heartbeat(queued.id, owner: options.owner, seconds: options.leaseSeconds, now: Date().timeIntervalSince1970)) == false {
                    run.lost = true
                    run.task.cancel()
                    log("chorus worker: lost the lease of \(queued.id); stopping its run")
                }
            }
            // New leases while there is room.
            var leased = false
            if held.count < options.maxRuns,
                let queued = try? queue.lease(owner: options.owner, seconds: options.leaseSeconds, now: Date().timeIntervalSince1970)
            {
                leased = true
                if let run = start(queued, loop: loop) { held.append(run) }
            }
            // Room left: help run the steps of runs other workers coordinate whose steps wait
            // (queued for over a second: the executors they have do not keep up), looked up
            // twice a second. A run its coordinator keeps up with costs no other process.
            if let steps, held.count < options.maxRuns, ContinuousClock.now - lastLook >= .milliseconds(500) {
                lastLook = .now
                let here = Set(held.map(\.key))
                let needing = (try? steps.runsWithWork(now: Date().timeIntervalSince1970, waitedSeconds: 1)) ?? []
                for info in needing where held.count < options.maxRuns && !here.contains(info.runKey) {
                    held.append(help(info.runKey, loop: loop))
                }
            }
            if options.exitWhenIdle && held.isEmpty && !leased && (try? queue.unfinishedCount()) == 0 {
                log("chorus worker: every submitted run has finished; \(finished) runs done here")
                return .idle(finished: finished)
            }
            if !leased { usleep(200_000) }
        }
    }

    /// Children get SIGTERM (SIGKILL 10 s later): a run stops as Ctrl-C stops it, an
    /// executor hands its steps back; then the runs' leases go back too.
    private func stop(_ held: [Held]) -> Ending {
        for run in held { run.task.cancel() }
        while held.contains(where: { $0.outcome.value == nil }) { usleep(50_000) }
        for run in held {
            guard case .some(let ended?) = run.outcome.value else { continue }
            if ended.terminationSignal == SIGKILL {
                log("chorus worker: \(run.key): its \(run.queued == nil ? "executor" : "run") did not stop within 10 s and was killed")
            } else if run.queued == nil, let line = String(decoding: ended.stderr, as: UTF8.self).split(separator: "\n").last {
                log(String(line))
            }
        }
        for run in held { if let queued = run.queued { try? queue.release(queued.id, owner: options.owner) } }
        let runs = held.filter { $0.queued != nil }.count
        log("chorus worker: stopped; \(runs) runs handed back" + (held.count > runs ? ", \(held.count - runs) helpers stopped" : ""))
        return .stopped(runsHandedBack: runs, helpersStopped: held.count - runs)
    }

    /// Starts the child for a leased run: `chorus run` the first time, `chorus resume` of
    /// the latest run of it that exists when taking over from a worker whose lease lapsed.
    private func start(_ queued: QueuedRun, loop: EventLoop) -> Held? {
        // The first run of a submission has the submission's id, so `chorus runs show ID` finds it.
        let runID = queued.runIDs.isEmpty ? queued.id : Orchestrator.newRunID()
        var arguments: [String]
        var stdin: [UInt8] = []
        var previous: String?
        for id in queued.runIDs.reversed() {
            guard let status = try? queue.runStatus(id) else { continue }
            if status == RunStatus.succeeded.rawValue {
                try? queue.finish(queued.id, owner: options.owner, status: "succeeded", error: nil, now: Date().timeIntervalSince1970)
                log("chorus worker: \(queued.id) had already succeeded (run \(id))")
                return nil
            }
            previous = id
            break
        }
        if let previous {
            try? queue.markInterrupted(runID: previous)
            arguments = ["resume", previous]
            log("chorus worker: taking over \(queued.id): resuming run \(previous) as \(runID)")
        } else {
            // The inputs go to the child through its standard input: a file would leave them
            // (secret-labelled ones too) in the temp directory for anyone to read.
            stdin = Array(queued.inputsJSON.utf8)
            arguments = ["run", queued.workflowPath, "--input-file", "-"]
            log("chorus worker: starting \(queued.id) as run \(runID)")
        }
        arguments += [
            "--config", queued.configPath, "--db", options.location, "--run-id", runID, "--max-parallel", String(options.maxParallel),
            "--json",
        ]
        if options.shareSteps { arguments += ["--share-steps", queued.id, "--lease-seconds", String(options.leaseSeconds)] }
        guard (try? queue.started(queued.id, runID: runID, owner: options.owner)) == true else { return nil }
        let (task, outcome) = spawn([options.executable] + arguments, stdin: stdin, loop: loop)
        return Held(queued: queued, key: queued.id, task: task, outcome: outcome)
    }

    /// Runs a child of this worker: it dies with the worker (CHORUS_PARENT_PID), its leases
    /// carry the worker's name (CHORUS_WORKER), and cancelling its task sends it SIGTERM
    /// (SIGKILL 10 s later) so it stops cleanly.
    private func spawn(_ argv: [String], stdin: [UInt8] = [], loop: EventLoop) -> (Task<Void, Never>, ChildOutcome) {
        var environment = ProcessInfo.processInfo.environment
        environment["CHORUS_PARENT_PID"] = String(getpid())
        environment["CHORUS_WORKER"] = options.owner
        let outcome = ChildOutcome()
        let task = Task(executorPreference: loop) {
            outcome.set(
                try? await ChildProcess.run(
                    argv, stdin: stdin, environment: environment, maxOutputBytes: 1 << 20,
                    cancelSignal: SIGTERM, on: loop))
        }
        return (task, outcome)
    }

    /// Starts a `chorus steps` child for a run another worker coordinates.
    private func help(_ key: String, loop: EventLoop) -> Held {
        let argv = [
            options.executable, "steps", key, "--db", options.location, "--max-parallel", String(options.maxParallel),
            "--lease-seconds", String(options.leaseSeconds),
        ]
        let (task, outcome) = spawn(argv, loop: loop)
        return Held(queued: nil, key: key, task: task, outcome: outcome)
    }
}

/// A child's result, set by its task when it ends and polled by the worker's loop.
private final class ChildOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var result: ProcessResult??
    func set(_ value: ProcessResult?) { lock.withLock { result = .some(value) } }
    /// Nil while the child runs; `.some(nil)` when it could not be started.
    var value: ProcessResult?? { lock.withLock { result } }
}

/// A flag set from a signal watcher and read by the worker's loop.
private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
