import ArgumentParser
import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes

/// Load generator for scripts/bench: drives Chorus's own HTTP client (curl multi on the
/// libuv loop) against a running `chorus sim`, and prints one JSON object of results.
@main
struct ChorusBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus-bench",
        abstract: "Send N chat requests with at most C in flight through Chorus's HTTP client; print JSON results."
    )

    @Option(help: "Base URL of a running chorus sim.")
    var url: String = ""

    @Option(name: .customLong("trace-db"), help: "Benchmark the trace store alone instead: write to this new database.")
    var traceDB: String?

    @Option(name: .customLong("trace-calls"), help: "With --trace-db: model calls to record (each a step, its call with bodies, and its events).")
    var traceCalls: Int = 20_000

    @Option(name: .customLong("spans"), help: "Benchmark TracingSpanEmitter.observe instead, over a recorded batch of this many steps.")
    var spanSteps: Int?

    @Option(help: "Total requests.")
    var requests: Int = 10_000

    @Option(help: "Requests in flight at once.")
    var concurrency: Int = 10_000

    @Option(name: .customLong("timeout-s"), help: "Per-request total timeout, seconds.")
    var timeoutSeconds: Int = 120

    func run() async throws {
        if let spanSteps {
            print(SpanBench(steps: spanSteps).run().text)
            return
        }
        if let traceDB {
            print(try await TraceBench(path: traceDB, calls: traceCalls).run().text)
            return
        }
        guard !url.isEmpty else { throw ValidationError("give --url of a running chorus sim, or --trace-db") }
        let loop = try EventLoop(name: "bench")
        let client = try HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: concurrency, maxIdleConnections: concurrency))
        let body: JSONValue = ["model": "small", "messages": [["role": "user", "content": "benchmark question"]]]
        let request = HTTPClientRequest(
            method: .post, url: url + "/v1/chat/completions",
            headerFields: [.contentType: "application/json"], body: body.serialized(),
            timeout: .seconds(Int64(timeoutSeconds)))
        let usageBefore = resourceUsage()
        let start = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: String?.self) { group in
            var started = 0
            var failures: [String: Int] = [:]
            func launch() {
                group.addTask(executorPreference: loop) {
                    do { _ = try await client.execute(request); return nil } catch { return (error as? HTTPClientError)?.code.description ?? "other" }
                }
                started += 1
            }
            while started < min(concurrency, requests) { launch() }
            for try await failure in group {
                if let failure { failures[failure, default: 0] += 1 }
                if started < requests { launch() }
            }
            return failures
        }
        let wall = ContinuousClock.now - start
        let usageAfter = resourceUsage()
        await client.shutdown()
        loop.shutdown()
        let cpu = (usageAfter.cpu - usageBefore.cpu)
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        let result: JSONValue = [
            "requests": .number(Double(requests)),
            "concurrency": .number(Double(concurrency)),
            "errors": .number(Double(failures.values.reduce(0, +))),
            "errors_by_kind": .object(failures.mapValues { .number(Double($0)) }),
            "wall_s": .number((seconds * 1000).rounded() / 1000),
            "requests_per_s": .number((Double(requests) / seconds).rounded()),
            "cpu_ms_per_request": .number((cpu * 1000 / Double(requests) * 1000).rounded() / 1000),
            "peak_rss_mb": .number((Double(usageAfter.maxRSSKB) / 1024).rounded()),
            "fd_limit": .number(Double(FileDescriptorLimit.raised)),
        ]
        print(result.text)
        if !failures.isEmpty { throw ExitCode(1) }
    }
}

/// CPU seconds (user + system) and peak RSS of this process so far.
func resourceUsage() -> (cpu: Double, maxRSSKB: Int) {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu =
        Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    return (cpu, usage.ru_maxrss)
}
