import ArgumentParser
import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// `chorus replay`: re-executes a recorded run with every model call served from the trace.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a recorded run with zero model calls: every call is served from the trace.",
        discussion: """
        Each call is matched by its step (node path, fan-out index, attempt) and checked against the hash of the \
        request recorded then. If an agent or the workflow changed so that a request differs, the replay stops at \
        the first divergence and shows what differs (exit 1). A replay that matches says whether it reproduced the \
        recorded output byte for byte. Replays are recorded as runs linked to their source.
        """
    )

    @Argument(help: "The run to replay (id or unique prefix).")
    var runID: String

    @Option(help: "The workflow file (default: the one the run recorded).")
    var workflow: String?

    @OptionGroup var common: CommonOptions

    @Flag(help: "Print a JSON object instead of text.")
    var json = false

    func run() throws {
        let store = try common.openStore()
        guard let source = try store.run(matching: runID) else {
            printError("chorus replay: no run '\(runID)' in \(store.path)")
            throw ExitCode(1)
        }
        let project: Project
        switch SpecLoader.loadProject(workflow: workflow ?? source.workflowPath, config: common.configPath) {
        case .success(let loaded): project = loaded
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
        let writer = TraceWriter(store: store)
        let loop = EventLoop(name: "chorus-replay")
        let result = loop.blockingWait {
            await Result(catching: {
                try await Replayer.replay(source.id, store: store, project: project, trace: writer, loop: loop, progress: RunProgress())
            })
        }
        writer.close()
        loop.shutdown()
        let report: ReplayReport
        switch result {
        case .success(let value): report = value
        case .failure(let error): printError("chorus replay: \(error)"); throw ExitCode(1)
        }
        if json {
            var object = report.summary.json.objectValue ?? [:]
            object["source_run_id"] = .string(report.sourceRunID)
            object["reproduced"] = .bool(report.reproduced)
            if let divergence = report.divergence {
                object["divergence"] = ["step": .string(divergence.step), "attempt": .number(Double(divergence.attempt)),
                                        "reason": .string(divergence.reason), "differences": .array(divergence.differences.map { .string($0) })]
            }
            print(JSONValue.object(object).text)
        } else if let divergence = report.divergence {
            print(divergence.description)
        } else {
            print("replay \(report.summary.runID) of \(report.sourceRunID): \(report.summary.calls) calls served from the trace, 0 made; " +
                  (report.reproduced ? "output reproduced byte for byte" : "output differs from the recording"))
        }
        if report.divergence != nil || !report.reproduced { throw ExitCode(1) }
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
