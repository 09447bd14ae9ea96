import ArgumentParser
import Chorus
import ChorusIO
import ChorusSim
import Dispatch
import Glibc

/// `chorus sim`: the simulated model provider (a real HTTP server on loopback).
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run a simulated OpenAI/Anthropic-compatible model provider on 127.0.0.1.",
        discussion: """
            The offline stand-in for model APIs: a real HTTP server speaking OpenAI chat completions \
            (POST /v1/chat/completions) and Anthropic Messages (POST /v1/messages), JSON and SSE; \
            streamed answers go out one token per event by default, text and tool-call arguments alike. \
            Answers are deterministic (a hash of the request and --seed). A model named planner-N \
            answers {"subtasks": [N strings]}; prose-... always answers in prose, ignoring \
            format instructions (a small model that cannot follow a schema); runaway-... never stops (cut at max_tokens); \
            jsonobj-... answers response_format json_schema with HTTP 500 (as llama-cpp-python's server does); \
            unauthorized-... answers 401 echoing the key; unknown-... answers 404. \
            Ground truth for chorus eval: a model with an --accuracy (sim-small 0.70 and sim-large 0.97 by default) \
            recognises the tasks --write-eval-cases writes (arithmetic, extraction, sentiment; with --eval-set triage, \
            support tickets to classify as billing, technical, general or other) and answers them right that \
            often, deterministically per case, model and seed; its wrong answers are prose (validation catches them), \
            well-formed with low confidence, or well-formed and confident (only a grader catches those). \
            --slow-rate F --slow-ms MS: a fraction F of requests, chosen by their content and --seed (not arrival \
            order), take MS longer before their first byte. GET /stats reports requests by status and peak concurrency; \
            POST /stats/reset restarts the counters. The first line on stdout is "listening on PORT".
            """
    )

    @Option(help: "TCP port on 127.0.0.1; 0 picks a free one.")
    var port: Int = 0

    @Option(name: .customLong("latency-ms"), help: "Delay before each answer, in milliseconds.")
    var latencyMs: Int = 0

    @Option(name: .customLong("jitter-ms"), help: "Extra delay drawn uniformly from 0 to this many milliseconds.")
    var jitterMs: Int = 0

    @Option(
        name: .customLong("tokens-per-event"),
        help: "Tokens per streamed delta event (a token is four bytes of the answer, as usage counts them); 1, the default, streams as OpenAI and llama.cpp do."
    )
    var tokensPerEvent: Int = 1

    @Option(
        name: .customLong("tokens-per-second"),
        help: "Pace of each stream after its first token, in tokens per second (0: the whole stream at once).")
    var tokensPerSecond: Double = 0

    @Option(
        name: .customLong("slow-rate"),
        help: "Fraction of model requests (0 to 1) that take --slow-ms longer: the same requests for the same --seed, in any order.")
    var slowRate: Double = 0

    @Option(name: .customLong("slow-ms"), help: "How much longer a slow request takes, in milliseconds.")
    var slowMs: Int = 0

    @Option(help: "Seed for answer content, the fault sequence and which requests are slow.")
    var seed: UInt64 = 0

    @Option(name: .customLong("error-rate"), help: "Fraction of model requests answered with HTTP 500 (0 to 1).")
    var errorRate: Double = 0

    @Option(name: .customLong("rate-limit-rate"), help: "Fraction answered with HTTP 429 and Retry-After (0 to 1).")
    var rateLimitRate: Double = 0

    @Option(name: .customLong("malformed-rate"), help: "Fraction answered with truncated JSON (0 to 1).")
    var malformedRate: Double = 0

    @Option(name: .customLong("hang-rate"), help: "Fraction never answered (0 to 1).")
    var hangRate: Double = 0

    @Option(name: .customLong("retry-after"), help: "Seconds sent in Retry-After with 429 answers (may be fractional).")
    var retryAfter: Double = 1

    @Option(
        name: .customLong("retry-after-style"),
        help:
            "Which headers carry the wait on 429s: standard (Retry-After and retry-after-ms), ms, date (Retry-After as an HTTP date), litellm (llm_provider-retry-after[-ms])."
    )
    var retryAfterStyle: String = "standard"

    @Option(
        name: .customLong("accuracy"), help: "MODEL=FRACTION: how often MODEL answers an eval task right (repeatable; defaults sim-small=0.7, sim-large=0.97).")
    var accuracy: [String] = []

    @Option(name: .customLong("write-eval-cases"), help: "Print N eval cases with known answers (JSON Lines, the eval case format) for --seed, and exit.")
    var writeEvalCases: Int?

    @Option(
        name: .customLong("eval-set"),
        help:
            "With --write-eval-cases: tasks (arithmetic, extraction, sentiment; workflows/eval-tasks.json) or triage (support tickets with the route each should take; workflows/triage.json)."
    )
    var evalSet: String = "tasks"

    @Option(name: .customLong("max-seconds"), help: "Exit by itself after this many seconds (0: run until SIGINT/SIGTERM).")
    var maxSeconds: Double = 0

    var simulatorConfiguration: SimulatorConfiguration {
        var c = SimulatorConfiguration()
        c.latencyMs = latencyMs
        c.jitterMs = jitterMs
        c.slowRate = slowRate
        c.slowMs = slowMs
        c.tokensPerEvent = tokensPerEvent
        c.tokensPerSecond = tokensPerSecond
        c.seed = seed
        c.errorRate = errorRate
        c.rateLimitRate = rateLimitRate
        c.malformedRate = malformedRate
        c.hangRate = hangRate
        c.retryAfterSeconds = retryAfter
        c.retryAfterStyle = RetryAfterStyle(rawValue: retryAfterStyle) ?? .standard
        for entry in accuracy {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { c.accuracy[parts[0]] = Double(parts[1]) ?? -1 }
        }
        return c
    }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, got \(port)") }
        if let problem = simulatorConfiguration.problem { throw ValidationError(problem) }
        guard RetryAfterStyle(rawValue: retryAfterStyle) != nil else {
            throw ValidationError(
                "--retry-after-style must be one of \(RetryAfterStyle.allCases.map(\.rawValue).joined(separator: ", ")), got \(retryAfterStyle)")
        }
        guard maxSeconds >= 0 else { throw ValidationError("--max-seconds must be 0 or more") }
        for entry in accuracy where entry.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--accuracy \(entry): expected MODEL=FRACTION, such as sim-small=0.7")
        }
        guard ["tasks", "triage"].contains(evalSet) else { throw ValidationError("--eval-set must be tasks or triage, got \(evalSet)") }
        if let writeEvalCases, !(1...100_000).contains(writeEvalCases) {
            throw ValidationError("--write-eval-cases must be between 1 and 100000, got \(writeEvalCases)")
        }
    }

    func run() throws {
        if let writeEvalCases {
            let lines =
                evalSet == "triage"
                ? EvalTaskGenerator.triageCases(count: writeEvalCases, seed: seed) : EvalTaskGenerator.cases(count: writeEvalCases, seed: seed)
            for line in lines { print(line.text) }
            return
        }
        let loop = try EventLoop(name: "chorus-sim")
        // Watch signals before announcing the port: a parent that reads the port and
        // at once sends SIGTERM must get a clean stop.
        let done = DispatchSemaphore(value: 0)
        let watchers = try [SIGINT, SIGTERM].map { signal in
            try SignalWatcher.watch(signal, on: loop) { _ in done.signal() }
        }
        let simulator: Simulator
        do {
            simulator = try Simulator.start(on: loop, port: port, configuration: simulatorConfiguration)
        } catch {
            let reason = String(cString: strerror(-error.code)).lowercased()
            printError("chorus sim: cannot listen on 127.0.0.1:\(port): \(reason)")
            throw ExitCode(1)
        }
        writeLine("listening on \(simulator.port)", to: STDOUT_FILENO)

        if maxSeconds > 0 {
            let limit = Duration.milliseconds(Int64(maxSeconds * 1000))
            loop.execute { Timer.schedule(on: loop, after: limit) { done.signal() } }
        }
        done.wait()
        watchers.forEach { $0.close() }
        simulator.stop()
        loop.shutdown()
    }
}

/// Writes one line to stderr, control characters escaped: messages quote provider text,
/// notes and trace contents, none of which may drive the terminal.
func printError(_ line: String) {
    writeLine(TerminalText.escaped(line, keepingNewlines: true), to: STDERR_FILENO)
}

/// Standard output's `print`, shadowing Swift's in this module: on a terminal, control
/// characters in what is printed (a model's answer, names and notes read from the trace)
/// are escaped; piped or redirected, the bytes go out as they are (JSON output escapes its
/// own).
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    let text = items.map { "\($0)" }.joined(separator: separator)
    Swift.print(isatty(STDOUT_FILENO) == 1 ? TerminalText.escaped(text, keepingNewlines: true) : text, terminator: terminator)
}

/// Writes one line straight to a file descriptor, unbuffered, so a parent process reading
/// a pipe sees it at once (stdio would hold it in a buffer).
func writeLine(_ line: String, to descriptor: Int32) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        offset += n
    }
}
