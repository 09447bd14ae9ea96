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

            With --live-from, the replay forks: calls upstream of the node or stage are served from the trace, the node \
            and everything downstream run live, on the models --model swaps in (say --model small=large to re-run the \
            same recorded plan with the large model, then compare with chorus runs diff).
            """
    )

    @OptionGroup var otel: OTelOptions

    @OptionGroup var logging: LogOptions

    @OptionGroup var recorded: RecordedRunOptions

    @Flag(help: "Print a JSON object instead of text.")
    var json = false

    @Option(
        name: .customLong("live-from"),
        help: "Fork: run this node (or NODE/round-R/plan, NODE/round-R, NODE/items, NODE/synthesis) and everything after it live.")
    var liveFrom: String?

    @Option(name: .customLong("model"), help: "With --live-from: use model OTHER where the workflow says NAME (NAME=OTHER; repeatable).")
    var modelSwaps: [String] = []

    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if !modelSwaps.isEmpty && liveFrom == nil { throw ValidationError("--model needs --live-from: a plain replay makes no live calls") }
        for swap in modelSwaps where swap.split(separator: "=").count != 2 {
            throw ValidationError("--model \(swap): expected NAME=OTHER")
        }
    }

    func run() throws {
        let (store, source, project) = try recorded.load(command: "replay")
        let swaps = Dictionary(
            modelSwaps.map { swap in
                let parts = swap.split(separator: "=").map(String.init)
                return (parts[0], parts[1])
            }, uniquingKeysWith: { $1 })
        let maxParallel = parallel.maxParallel
        let session = try LiveSession(store: store, workflow: project.workflow.name, maxParallel: maxParallel, otel: otel)
        let result = session.execute(runID: "replay of \(source.id)") { [liveFrom] in
            await Result {
                try await session.runtime.replay(
                    source.id, project: project, liveFrom: liveFrom,
                    options: RunOptions(
                        maxParallel: maxParallel, progress: session.progress, modelSwaps: swaps, allowUnverified: recorded.forceUnverified))
            }
        }
        let report: ReplayReport
        switch result {
        case .success(let value): report = value
        case .failure(let error): printError("chorus replay: \(error)"); throw ExitCode(1)
        }
        if json {
            var object = report.summary.json.objectValue ?? [:]
            object["source_run_id"] = .string(report.sourceRunID)
            object["reproduced"] = .bool(report.reproduced)
            object["served_calls"] = .number(Double(report.servedCalls))
            if let divergence = report.divergence {
                object["divergence"] = [
                    "step": .string(divergence.step), "attempt": .number(Double(divergence.attempt)),
                    "reason": .string(divergence.reason), "differences": .array(divergence.differences.map { .string($0) }),
                ]
            }
            print(JSONValue.object(object).text)
        } else if let divergence = report.divergence {
            print(divergence.description)
        } else if liveFrom != nil {
            if let output = report.summary.output { print(output.stringValue ?? output.text) }
            printError(
                "chorus replay: fork \(report.summary.runID) of \(report.sourceRunID) \(report.summary.status): "
                    + "\(report.servedCalls) calls served from the trace, \(report.summary.calls - report.servedCalls) made live; "
                    + (report.reproduced ? "output identical to the recording" : "output differs from the recording")
                    + " (chorus runs diff \(report.sourceRunID) \(report.summary.runID))")
        } else {
            let verdict =
                switch (report.reproduced, report.summary.status) {
                case (true, .succeeded): "output reproduced byte for byte"
                case (true, _): "the recorded failure reproduced: \(report.summary.error ?? report.summary.status.rawValue)"
                case (false, _): "the outcome differs from the recording (\(report.summary.status.rawValue): \(report.summary.error ?? "output differs"))"
                }
            print("replay \(report.summary.runID) of \(report.sourceRunID): \(report.summary.calls) calls served from the trace, 0 made; " + verdict)
        }
        // A plain replay succeeds when it reproduces the recording, a failed run's failure included.
        if report.divergence != nil { throw ExitCode(1) }
        if liveFrom == nil ? !report.reproduced : report.summary.status != .succeeded { throw ExitCode(1) }
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
