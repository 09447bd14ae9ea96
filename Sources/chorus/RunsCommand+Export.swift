import ArgumentParser
import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

extension RunsCommand {
    /// `chorus runs export`: a whole run as JSON, as one self-contained HTML timeline, or as
    /// OpenTelemetry spans; or the accepted answers of many runs as fine-tuning data.
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Export a run: --format json (run, steps, calls with bodies, events), html (a self-contained timeline) or otlp (OpenTelemetry spans); or runs' accepted answers as fine-tuning data (--format finetune).",
            discussion: """
                The HTML file needs nothing else: one bar per step and per model call over time, coloured by status and \
                model; hover for tokens, cost and latency, click for the prompt and the response. Rows go in the order \
                steps started; an as_completed lead call is labelled with how many findings it saw.

                otlp: the run as GenAI spans (invoke_workflow, invoke_agent, chat, execute_tool) with their recorded \
                timestamps, sent over OTLP/HTTP to --endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT / \
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with OTEL_EXPORTER_OTLP_HEADERS and OTEL_SERVICE_NAME), or written \
                to -o FILE (protobuf; --otlp-json for OTLP/JSON), or printed as OTLP/JSON. Message contents are left out \
                unless --otel-content.

                finetune: OpenAI's chat fine-tuning JSONL, one {"messages": [...], "tools": [...]} per line, of the runs \
                named (none: every run in the trace; --eval: that eval's runs, with --passed those that passed). An \
                example is a model step's accepted answer (its last call whose answer passed every check) after the \
                prompt it answered, tool calls and results included; calls to Anthropic models are converted. --only \
                escalated keeps the steps that escalated: the larger model's answers to prompts a smaller one failed. \
                Left out: the same request twice (the first is kept), calls replayed from another run, judges' runs, \
                and any step whose requests carried a data label --include-label does not name (runs recorded before \
                labels were kept count as labelled 'unknown'). Secrets the environment holds are masked. The file holds \
                nothing but examples; what was exported and what was left out, and why, is one line on stderr and, \
                with -o FILE, FILE.manifest.json.
                """
        )
        enum Format: String, ExpressibleByArgument, CaseIterable { case json, html, otlp, finetune }
        enum Only: String, ExpressibleByArgument, CaseIterable { case accepted, escalated }

        @Argument(help: ArgumentHelp("The run id (or a unique prefix); finetune takes any number (none: every run).", valueName: "run-id"))
        var runIDs: [String] = []
        @Option(help: "json, html, otlp or finetune.") var format: Format = .json
        @Option(name: [.customShort("o"), .customLong("output")], help: "Write to this file instead of stdout.") var output: String?
        @Option(help: "otlp: the OTLP/HTTP receiver (a base URL such as http://127.0.0.1:6006; /v1/traces is added).") var endpoint: String?
        @Flag(name: .customLong("otlp-json"), help: "otlp: OTLP/JSON instead of protobuf.") var otlpJSON = false
        @Flag(name: .customLong("otel-content"), help: "otlp: include prompts and answers (gen_ai.input.messages, gen_ai.output.messages).")
        var otelContent = false
        @Option(help: "finetune: only steps of this agent.") var agent: String?
        @Option(help: "finetune: accepted (every step's accepted answer) or escalated (only steps that escalated).")
        var only: Only = .accepted
        @Option(name: .customLong("eval"), help: "finetune: the runs of this eval (every variant), instead of run ids.") var evalID: String?
        @Flag(help: "finetune: with --eval, only the runs whose case passed.") var passed = false
        @Option(
            name: .customLong("include-label"),
            help: "finetune: export steps carrying this data label too (repeatable; 'unknown' for runs recorded before labels were kept).")
        var includeLabels: [String] = []
        @OptionGroup var common: CommonOptions

        func validate() throws {
            if format != .otlp && (endpoint != nil || otlpJSON || otelContent) {
                throw ValidationError("--endpoint, --otlp-json and --otel-content go with --format otlp")
            }
            if endpoint != nil && output != nil { throw ValidationError("--endpoint and -o: give one") }
            guard format == .finetune else {
                if agent != nil || only != .accepted || evalID != nil || passed || !includeLabels.isEmpty {
                    throw ValidationError("--agent, --only, --eval, --passed and --include-label go with --format finetune")
                }
                if runIDs.count != 1 { throw ValidationError("--format \(format.rawValue) exports one run: give its id") }
                return
            }
            if passed && evalID == nil { throw ValidationError("--passed goes with --eval") }
            if evalID != nil && !runIDs.isEmpty { throw ValidationError("give run ids or --eval, not both") }
        }

        func run() throws {
            let store = try common.openStore(readOnly: true)
            if format == .finetune { return try exportFineTune(store: store) }
            let record = try RunsCommand.find(runIDs.first ?? "", in: store, command: "runs export")
            if format == .otlp { return try exportSpans(record, store: store) }
            let document = try RunExport.document(record, store: store)
            let text = format == .json ? document.text : RunExport.html(document, title: "\(record.workflow) \(record.id)")
            try write(Array(text.utf8), newline: output == nil)
        }

        func write(_ bytes: [UInt8], newline: Bool) throws {
            guard let output else {
                FileHandle.standardOutput.write(Data(bytes + (newline ? [10] : [])))
                return
            }
            guard FileManager.default.createFile(atPath: output, contents: Data(bytes)) else {
                printError("chorus runs export: cannot write \(output)")
                throw ExitCode(1)
            }
        }

        private func exportSpans(_ record: RunRecord, store: any TraceBackend) throws {
            let spans = GenAISpans.spans(try GenAISpans.Recording(run: record, store: store), content: otelContent)
            let encoding: OTLPConfiguration.Encoding? = otlpJSON ? .json : nil
            let configuration: OTLPConfiguration?
            do {
                configuration = output == nil ? try OTLPConfiguration.resolve(endpoint: endpoint, encoding: encoding) : nil
            } catch {
                printError("chorus runs export: \(error)")
                throw ExitCode(2)
            }
            guard let configuration else {
                let service = ProcessInfo.processInfo.environment["OTEL_SERVICE_NAME"] ?? "chorus"
                let resource = OTLPTraces.resource(serviceName: service.isEmpty ? "chorus" : service)
                let protobuf = output != nil && !otlpJSON
                try write(
                    protobuf ? OTLPTraces.protobuf(spans, resource: resource) : OTLPTraces.json(spans, resource: resource).serialized(),
                    newline: output == nil)
                return
            }
            let loop = try EventLoop(name: "chorus-export")
            defer { loop.shutdown() }
            let client = try HTTPClient.make(on: loop, configuration: .init())
            let exporter = OTLPExporter(configuration: configuration, client: client)
            let result: Result<Void, OTLPError> = loop.blockingWait {
                do throws(OTLPError) { try await exporter.export(spans); return .success(()) } catch { return .failure(error) }
            }
            loop.blockingWait { await client.shutdown() }
            switch result {
            case .success:
                printError(
                    "chorus runs export: \(spans.count) spans of run \(record.id) sent to \(HTTPClientRequest.redact(configuration.endpoint)) (trace \(GenAISpans.traceID(run: record.id).map { String(format: "%02x", $0) }.joined()))"
                )
            case .failure(let error):
                printError("chorus runs export: \(error)")
                throw ExitCode(1)
            }
        }
    }
}
