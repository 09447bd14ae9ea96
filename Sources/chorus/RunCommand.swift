import ArgumentParser
import Chorus
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
        goes to stdout. Exit status: 0 success, 1 the run failed or was interrupted, 2 a usage or validation error. \
        Ctrl-C stops launching calls, cancels those in flight, marks the run interrupted and flushes the trace.
        """
    )

    @Argument(help: "The workflow file (workflows/NAME.json).")
    var workflow: String

    @Option(name: .customLong("input"), help: "An input as NAME=VALUE; repeat for several. Non-string inputs take JSON values.")
    var inputs: [String] = []

    @Option(name: .customLong("input-file"), help: "A JSON object of inputs; --input values override it.")
    var inputFile: String?

    @OptionGroup var common: CommonOptions

    @Flag(help: "Print a JSON object (run id, status, output, usage, cost) instead of the output alone.")
    var json = false

    @Option(name: .customLong("max-parallel"), help: "Model calls in flight at most, across the whole run.")
    var maxParallel: Int = 256

    func validate() throws {
        guard maxParallel >= 1 else { throw ValidationError("--max-parallel must be 1 or more, got \(maxParallel)") }
    }

    func run() throws {
        let project: Project
        switch SpecLoader.loadProject(workflow: workflow, config: common.configPath) {
        case .success(let loaded): project = loaded
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
        let inputValues: JSONValue
        switch RunInputs.resolve(inputs, file: inputFile, workflow: project.workflow) {
        case .success(let values): inputValues = values
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
        let store = try common.openStore()
        try? store.markAbandonedRuns()
        let writer = TraceWriter(store: store)
        let loop = EventLoop(name: "chorus-run")
        let client = loop.runBlocking {
            HTTPClient(loop: loop, configuration: .init(maxConnectionsPerHost: max(64, maxParallel), maxIdleConnections: max(64, maxParallel)))
        }
        let display = ProgressDisplay(workflow: project.workflow.name)
        let progress = RunProgress(log: display.log)
        let runID = Orchestrator.newRunID()
        display.start(progress: progress, runID: runID)

        var watchers: [SignalWatcher] = []
        let summary = loop.blockingWait({ [maxParallel] in
            await Orchestrator.run(project, inputs: inputValues, trace: writer, client: client, loop: loop,
                                   maxParallel: maxParallel, progress: progress, runID: runID)
        }, started: { task in
            watchers = [SIGINT, SIGTERM].compactMap { signal in
                try? SignalWatcher.watch(signal, on: loop) { _ in
                    display.log("interrupt: stopping new calls, cancelling calls in flight")
                    task.cancel()
                }
            }
        })
        watchers.forEach { $0.close() }
        display.stop()
        loop.blockingWait { await client.shutdown() }
        writer.close()
        loop.shutdown()
        if json {
            print(summary.json.text)
        } else if let output = summary.output {
            print(output.stringValue ?? output.text)
        }
        display.finish(summary)
        if let failure = writer.failure { printError("chorus run: the trace could not be written: \(failure)") }
        if summary.status != "succeeded" { throw ExitCode(1) }
    }
}

/// Options every trace-reading or running command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "The models file.")
    var configPath: String = "chorus.json"

    @Option(name: .customLong("db"), help: "The trace database (default: $CHORUS_DB, else .chorus/chorus.db).")
    var db: String?

    var databasePath: String {
        db ?? ProcessInfo.processInfo.environment["CHORUS_DB"] ?? ".chorus/chorus.db"
    }

    func openStore() throws -> TraceStore {
        do { return try TraceStore(path: databasePath) } catch {
            printError("chorus: \(error)")
            throw ExitCode(1)
        }
    }
}
