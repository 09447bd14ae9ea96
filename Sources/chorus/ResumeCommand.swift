import ArgumentParser
import Chorus
import ChorusTrace

/// `chorus resume`: continues an interrupted or crashed run without repeating finished work.
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue an interrupted or crashed run: finished steps are reused from the trace, the rest run now.",
        discussion: """
            The resumed run is recorded as a new run linked to the one it resumes. Steps that finished are copied from \
            the trace with their model calls (no model is called for them); steps that were in flight or never started \
            run now, so the output is what an uninterrupted run would have given. A lock in the trace database lets only \
            one resume of a run proceed at a time. Exit status as for chorus run.
            """
    )

    @OptionGroup var otel: OTelOptions

    @OptionGroup var logging: LogOptions

    @OptionGroup var recorded: RecordedRunOptions

    @Flag(help: "Print a JSON object instead of the output alone.")
    var json = false

    @OptionGroup var parallel: ParallelOptions

    @Option(name: .customLong("run-id"), help: .hidden)
    var runID: String?

    @OptionGroup var sharing: SharingOptions

    func validate() throws { try validateRunID(runID) }

    func run() throws {
        let (store, source, project) = try recorded.load(command: "resume")
        // Said before a session starts: no "run … started" line for a run that never will.
        if source.status == .succeeded {
            printError("chorus resume: run \(source.id) succeeded: nothing to resume (chorus replay \(source.id) re-checks it)")
            throw ExitCode(1)
        }
        let maxParallel = parallel.maxParallel
        let session = try LiveSession(store: store, workflow: project.workflow.name, maxParallel: maxParallel, otel: otel)
        let newRunID = runID ?? Orchestrator.newRunID()
        let result = session.execute(runID: newRunID) {
            await Result {
                try await session.runtime.resume(
                    source.id, project: project,
                    options: RunOptions(
                        maxParallel: maxParallel, runID: newRunID, progress: session.progress, allowUnverified: recorded.forceUnverified,
                        sharing: sharing.resolve(store, command: "resume")))
            }
        }
        switch result {
        case .success(let summary):
            printError("chorus resume: resumed \(source.id) as \(summary.runID): \(summary.reusedSteps) steps reused, \(summary.calls) calls made")
            try session.report(summary, json: json, command: "resume")
        case .failure(let error):
            printError("chorus resume: " + (error is CancellationError ? "interrupted before the run started; nothing was run" : "\(error)"))
            throw ExitCode(1)
        }
    }
}
