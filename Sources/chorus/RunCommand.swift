import ArgumentParser
import Chorus
import ChorusCoordination
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// `chorus run`: runs a workflow, traced to SQLite.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a workflow; every step is recorded in the trace database.",
        discussion: """
            Progress goes to stderr (an updating block on a terminal, log lines otherwise); the final output \
            goes to stdout. Exit status: 0 success, 1 the run failed or was interrupted, 2 a usage or validation error \
            (nothing ran), 3 a budget stopped it (budget_exhausted), 4 it paused for approval (awaiting_approval). \
            Ctrl-C stops launching calls, cancels those in flight, marks the run interrupted and flushes the trace.
            """
    )

    @Argument(help: "The workflow file (workflows/NAME.json).")
    var workflow: String

    @OptionGroup var input: InputOptions

    @OptionGroup var otel: OTelOptions

    @OptionGroup var logging: LogOptions

    @OptionGroup var common: CommonOptions

    @Flag(help: "Print a JSON object (run id, status, output, usage, cost) instead of the output alone.")
    var json = false

    @OptionGroup var parallel: ParallelOptions

    @Option(
        help: "Stop the run when it has taken this long (90s, 2m, 1h30m): it fails saying so, finished steps stay in the trace, chorus resume continues it.")
    var deadline: String?

    @Flag(name: .customLong("no-trace"), help: "Record nothing (to measure what tracing costs): the run cannot be replayed, resumed or audited.")
    var noTrace = false

    @OptionGroup var budget: BudgetOptions

    @Option(name: .customLong("run-id"), help: .hidden)
    var runID: String?

    @OptionGroup var sharing: SharingOptions

    func validate() throws {
        try validateRunID(runID)
        if let deadline, Duration(shortText: deadline) == nil {
            throw ValidationError("--deadline \(deadline): expected a duration such as 90s, 2m or 1h30m")
        }
    }

    func run() throws {
        let project = try common.loadProject(workflow: workflow)
        let inputValues = try input.resolve(for: project)
        let store = noTrace ? nil : try common.openStore()
        _ = try? store?.markAbandonedRuns()
        let maxParallel = parallel.maxParallel
        let session = try LiveSession(store: store, workflow: project.workflow.name, maxParallel: maxParallel, otel: otel)
        let runID = self.runID ?? Orchestrator.newRunID()
        let options = RunOptions(
            maxParallel: maxParallel, deadline: deadline.flatMap(Duration.init(shortText:)), budget: budget.budget, runID: runID,
            progress: session.progress, sharing: sharing.resolve(store, command: "run"))
        let result = session.execute(runID: runID) { await Result { try await session.runtime.run(project, inputs: inputValues, options: options) } }
        switch result {
        case .success(let summary): try session.report(summary, json: json, command: "run")
        case .failure(let error): printError("chorus run: \(error)"); throw ExitCode(2)
        }
    }
}

/// `--share-steps KEY` (set by `chorus worker`): the run's agent steps go to the step table of
/// a PostgreSQL trace database, for the executors of every worker.
struct SharingOptions: ParsableArguments {
    @Option(name: .customLong("share-steps"), help: .hidden)
    var key: String?

    @OptionGroup(visibility: .hidden) var lease: LeaseOptions

    func validate() throws { try validateRunID(key) }

    func resolve(_ store: (any TraceBackend)?, command: String) -> StepSharing? {
        guard let key else { return nil }
        guard let queue = store?.location.openCoordination()?.stepQueue() else {
            printError("chorus \(command): --share-steps needs a PostgreSQL trace database; every step runs here")
            return nil
        }
        return StepSharing(runKey: key, queue: queue, owner: RunWorker.ownerName(), leaseSeconds: lease.seconds)
    }
}

/// `--lease-seconds`: how long a lease (a run's, a step's) lasts unless its holder renews it.
struct LeaseOptions: ParsableArguments {
    @Option(
        name: .customLong("lease-seconds"),
        help: "How long a lease lasts unless renewed: how soon another worker takes over what a dead one held.")
    var seconds: Double = 30

    func validate() throws {
        guard seconds >= 1 && seconds <= 3600 else { throw ValidationError("--lease-seconds must be between 1 and 3600") }
    }
}

/// `--run-id` (set by `chorus worker`, which must know a run's id before it starts): letters,
/// digits, `.`, `_` and `-`, at most 64.
func validateRunID(_ id: String?) throws {
    guard let id else { return }
    if id.isEmpty || id.count > 64 || !id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
        throw ValidationError("--run-id \(id.prefix(80)): expected 1 to 64 letters, digits, '.', '_' or '-'")
    }
}

/// What a run may spend, from the command line (over the workflow's `budget`).
struct BudgetOptions: ParsableArguments {
    @Option(
        name: .customLong("budget-usd"),
        help: "Dollars the run may spend. Each call reserves its worst case first and is refused (exit 3) when that cannot fit.")
    var usd: Double?
    @Option(name: .customLong("budget-tokens"), help: "Tokens (in + out) the run may use.")
    var tokens: Int?
    @Option(name: .customLong("budget-calls"), help: "Model calls the run may make.")
    var calls: Int?

    func validate() throws {
        if let usd, Budget.microUSD(usd) == nil { throw ValidationError("--budget-usd \(usd): expected a non-negative number of dollars") }
        if let tokens, tokens < 0 { throw ValidationError("--budget-tokens must be 0 or more, got \(tokens)") }
        if let calls, calls < 0 { throw ValidationError("--budget-calls must be 0 or more, got \(calls)") }
    }

    var budget: Budget { Budget(microUSD: usd.flatMap(Budget.microUSD), tokens: tokens, calls: calls) }
}

/// A run's inputs from the command line (`run`, `submit`).
struct InputOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: "An input as NAME=VALUE; repeat for several. Non-string inputs take JSON values.")
    var inputs: [String] = []

    @Option(name: .customLong("input-file"), help: "A JSON object of inputs (- for standard input); --input values override it.")
    var inputFile: String?

    /// The inputs checked against the workflow's; prints every problem and exits 2 when wrong.
    func resolve(for project: Project) throws -> JSONValue {
        switch RunInputs.resolve(inputs, file: inputFile, workflow: project.workflow) {
        case .success(let values): return values
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
    }
}

/// How many model calls a live run keeps in flight.
struct ParallelOptions: ParsableArguments {
    @Option(name: .customLong("max-parallel"), help: "Model calls in flight at most, across the whole run.")
    var maxParallel: Int = 256

    func validate() throws {
        guard maxParallel >= 1 else { throw ValidationError("--max-parallel must be 1 or more, got \(maxParallel)") }
    }
}

/// What `resume` and `replay` start from: a recorded run, and the workflow to load in place
/// of the one it recorded.
struct RecordedRunOptions: ParsableArguments {
    @Argument(help: "The recorded run (id or unique prefix).")
    var runID: String

    @Option(help: "The workflow file (default: the one the run recorded).")
    var workflow: String?

    @OptionGroup var common: CommonOptions

    @Flag(
        name: .customLong("force-unverified"),
        help: "Act on the run even if its audit chain (or an ancestor's) does not verify; the new run records the break.")
    var forceUnverified = false

    /// The store, the recorded run and the project to run it with; exits 1 when the run is
    /// not there, 2 when the workflow or models are invalid.
    func load(command: String) throws -> (store: any TraceBackend, source: RunRecord, project: Project) {
        let store = try common.openStore()
        let source = try RunsCommand.find(runID, in: store, command: command)
        return (store, source, try common.loadProject(workflow: workflow ?? source.workflowPath, recordedConfig: source.configPath))
    }
}

/// Options every trace-reading or running command shares.
struct CommonOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help:
            "The models file (default: chorus.json here, else the nearest above the workflow file; a command on a recorded run uses the file it was recorded with)."
    )
    var config: String?

    @Option(
        name: .customLong("db"),
        help:
            "The trace database: a file, sqlite:///path or postgres://user@host/db (default: $CHORUS_DB, else .chorus/chorus.db; submit, worker and queue need PostgreSQL)."
    )
    var db: String?

    var databasePath: String {
        db ?? ProcessInfo.processInfo.environment["CHORUS_DB"] ?? ".chorus/chorus.db"
    }

    /// Loads the workflow and models (from `--config`, else `recordedConfig`, else chorus.json),
    /// printing every problem and exiting 2 when they are invalid.
    func loadProject(workflow: String, recordedConfig: String? = nil) throws -> Project {
        switch SpecLoader.loadProject(workflow: workflow, config: config ?? recordedConfig ?? SpecLoader.configPath(forWorkflow: workflow)) {
        case .success(let loaded): return loaded
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
    }

    /// Opens the trace database; `readOnly` for commands that only read it (they work on a
    /// read-only file system and never migrate). Prints the reason and exits 1 on failure.
    func openStore(readOnly: Bool = false) throws -> any TraceBackend {
        do { return try TraceLocation(databasePath).open(readOnly: readOnly) } catch {
            printError("chorus: \(error)")
            throw ExitCode(1)
        }
    }
}
