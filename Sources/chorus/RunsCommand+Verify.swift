import ArgumentParser
import ChorusJSON
import ChorusTrace

extension RunsCommand {
    /// `chorus runs verify`: recomputes a run's audit chain.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a run's audit chain: report the first event or row that was changed, deleted or moved (exit 1).",
            discussion: """
                Every event carries a hash of the event before it and of the rows it seals (finished steps, model calls, \
                the finished run); every request and response body is stored under its SHA-256. Verify recomputes them all.
                """
        )
        @Argument(help: "The run id (or a unique prefix).") var runID: String
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let store = try common.openStore(readOnly: true)
            let record = try RunsCommand.find(runID, in: store, command: "runs verify")
            let report = try store.verify(record.id)
            if json {
                print(
                    JSONValue.object([
                        "run_id": .string(report.runID), "intact": .bool(report.intact), "events": .number(Double(report.events)),
                        "sealed_rows": .number(Double(report.sealedRows)), "unsealed_rows": .number(Double(report.unsealedRows)),
                        "bodies": .number(Double(report.blobs)), "problem": report.problem.map { .string($0) } ?? .null,
                    ]).text)
            } else if let problem = report.problem {
                print("run \(report.runID): NOT INTACT: \(problem)")
            } else {
                print(
                    "run \(report.runID): intact: \(report.events) events chained, \(report.sealedRows) rows sealed, " + "\(report.blobs) bodies re-hashed"
                        + (report.unsealedRows > 0 ? "; \(report.unsealedRows) rows written after the last event by a process that stopped" : ""))
            }
            if !report.intact { throw ExitCode(1) }
        }
    }
}
