import ArgumentParser
import Chorus
import ChorusIO
import ChorusTrace
import Glibc

/// What `chorus run`, `chorus resume` and a forking `chorus replay` share: a loop, an HTTP
/// client sized for the parallelism, a trace writer, the progress display, and Ctrl-C/TERM
/// cancelling the work (calls in flight cancelled, the run marked interrupted, the trace flushed).
struct LiveSession {
    let loop: EventLoop
    let client: HTTPClient
    let writer: TraceWriter
    let display: ProgressDisplay
    let progress: RunProgress
    /// False for `--no-trace`.
    let traced: Bool

    /// With no store, nothing is recorded (`chorus run --no-trace`).
    init(store: TraceStore?, workflow: String, maxParallel: Int) throws {
        loop = try EventLoop(name: "chorus-run")
        client = try HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: max(64, maxParallel),
                                                                   maxIdleConnections: max(64, maxParallel)))
        writer = store.map { TraceWriter(store: $0) } ?? TraceWriter(discarding: ())
        traced = store != nil
        display = ProgressDisplay(workflow: workflow)
        progress = RunProgress(log: display.log)
    }

    /// Runs `body` on the loop with the display drawing and signals watched, then shuts
    /// everything down. Returns what `body` returned.
    func execute<T: Sendable>(runID: String, showProgress: Bool = true, _ body: @escaping @Sendable () async -> T) -> T {
        if showProgress { display.start(progress: progress, runID: runID) }
        var watchers: [SignalWatcher] = []
        let result = loop.blockingWait(body, started: { [loop, display] task in
            watchers = [SIGINT, SIGTERM].compactMap { signal in
                try? SignalWatcher.watch(signal, on: loop) { _ in
                    display.log("interrupt: stopping new calls, cancelling calls in flight")
                    task.cancel()
                }
            }
        })
        watchers.forEach { $0.close() }
        if showProgress { display.stop() }
        loop.blockingWait { [client] in await client.shutdown() }
        writer.close()
        loop.shutdown()
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
