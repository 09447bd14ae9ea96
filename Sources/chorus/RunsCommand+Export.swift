import ArgumentParser
import ChorusJSON
import ChorusTrace
import Foundation

extension RunsCommand {
    /// `chorus runs export`: a whole run as JSON, or as one self-contained HTML timeline.
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export a run: --format json (run, steps, calls with bodies, events) or html (a self-contained timeline).",
            discussion: """
            The HTML file needs nothing else: one bar per step and per model call over time, coloured by status and \
            model; hover for tokens, cost and latency, click for the prompt and the response.
            """
        )
        enum Format: String, ExpressibleByArgument, CaseIterable { case json, html }

        @Argument(help: "The run id (or a unique prefix).") var runID: String
        @Option(help: "json or html.") var format: Format = .json
        @Option(name: [.customShort("o"), .customLong("output")], help: "Write to this file instead of stdout.") var output: String?
        @OptionGroup var common: CommonOptions

        func run() throws {
            let store = try common.openStore(readOnly: true)
            let record = try RunsCommand.find(runID, in: store, command: "runs export")
            let document = try RunExport.document(record, store: store)
            let text = format == .json ? document.text : RunExport.html(document, title: "\(record.workflow) \(record.id)")
            if let output {
                do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                    printError("chorus runs export: cannot write \(output): \(error.localizedDescription)")
                    throw ExitCode(1)
                }
            } else {
                print(text)
            }
        }
    }
}
