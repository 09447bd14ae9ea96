import ArgumentParser
import Chorus
import ChorusIO
import ChorusTrace
import Foundation
import Glibc

/// What `chorus run`, `chorus resume`, `chorus replay` and `chorus eval` share: a
/// `ChorusRuntime` (the loop, an HTTP client sized for the parallelism, the trace writer —
/// the same front door a Swift program uses), the progress display, and Ctrl-C/TERM
/// cancelling the work (calls in flight cancelled, the run marked interrupted, the trace flushed).
struct LiveSession {
    let runtime: ChorusRuntime
    var loop: EventLoop { runtime.eventLoop }
    var client: HTTPClient { runtime.httpClient }
    var writer: TraceWriter { runtime.traceWriter }
    let display: ProgressDisplay
    let progress: RunProgress
    /// False for `--no-trace`.
    let traced: Bool
    /// Sends spans to an OpenTelemetry collector while the run goes, when one is configured.
    let spans: LiveSpanExporter?

    /// With no store, nothing is recorded (`chorus run --no-trace`), and no span is sent.
    init(store: (any TraceBackend)?, workflow: String, maxParallel: Int, otel: OTelOptions? = nil) throws {
        var exporter: LiveSpanExporter?
        if store != nil, let configuration = try otel?.configuration() {
            exporter = LiveSpanExporter(configuration: configuration, content: otel?.content ?? false)
        }
        var configuration = RuntimeConfiguration(store: store, maxParallel: maxParallel, loopName: "chorus-run")
        if let exporter { configuration.observers = [{ exporter.observe($0) }] }
        do { runtime = try ChorusRuntime(configuration) } catch {
            printError("chorus: \(error)")
            throw ExitCode(1)
        }
        spans = exporter
        traced = store != nil
        display = ProgressDisplay(workflow: workflow)
        progress = RunProgress(log: display.log)
    }

    /// Runs `body` on the loop with the display drawing and signals watched, then shuts
    /// everything down. Returns what `body` returned.
    func execute<T: Sendable>(runID: String, showProgress: Bool = true, _ body: @escaping @Sendable () async -> T) -> T {
        if showProgress { display.start(progress: progress, runID: runID) }
        var watchers: [SignalWatcher] = []
        let result = loop.blockingWait(
            body,
            started: { [loop, display] task in
                watchers = [SIGINT, SIGTERM].compactMap { signal in
                    try? SignalWatcher.watch(signal, on: loop) { _ in
                        display.log("interrupt: stopping new calls, cancelling calls in flight")
                        task.cancel()
                    }
                }
            })
        watchers.forEach { $0.close() }
        if showProgress { display.stop() }
        runtime.shutdownBlocking()
        if let spans {
            let outcome = spans.finish()
            let dropped = outcome.dropped > 0 ? ", \(outcome.dropped) dropped" + (outcome.lastError.map { " (\($0))" } ?? "") : ""
            // Said on a terminal too (the progress block shows no log lines); a loss is a warning.
            if outcome.dropped > 0 {
                Diagnostics.logger.warning("otlp: \(outcome.exported) spans exported\(dropped)")
            } else {
                Diagnostics.logger.info("otlp: \(outcome.exported) spans exported")
            }
        }
        return result
    }

    /// Prints a finished run as `chorus run` does; exits 1 unless it succeeded.
    func report(_ summary: RunSummary, json: Bool, command: String) throws {
        if json {
            print(summary.json.text)
        } else if let output = summary.output {
            print(output.stringValue ?? output.text)
        }
        display.finish(summary, command: command, traced: traced)
        if let failure = writer.failure, summary.error?.contains(failure) != true {
            printError("chorus \(command): the trace could not be written: \(failure)")
        }
        if summary.status != .succeeded { throw ExitCode(summary.errorCode?.exitStatus ?? 1) }
    }
}

/// Where a run's spans go while it runs: `--otlp-endpoint`, else the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` variables; `OTEL_SDK_DISABLED=true` turns it off.
struct OTelOptions: ParsableArguments {
    @Option(
        name: .customLong("otlp-endpoint"),
        help: "Send the run's spans to this OTLP/HTTP receiver as it runs (a base URL; /v1/traces is added). Default: $OTEL_EXPORTER_OTLP_ENDPOINT.")
    var endpoint: String?

    @Flag(name: .customLong("otel-content"), help: "Include prompts and answers in the spans (they are left out by default).")
    var content = false

    /// The exporter's configuration, nil when none is asked for; exits 2 when it is wrong.
    func configuration() throws -> OTLPConfiguration? {
        if ProcessInfo.processInfo.environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" && endpoint == nil { return nil }
        do { return try OTLPConfiguration.resolve(endpoint: endpoint) } catch {
            printError("chorus: \(error)")
            throw ExitCode(2)
        }
    }
}
