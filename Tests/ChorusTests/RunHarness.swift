import Chorus
import ChorusIO
import ChorusJSON
import ChorusSim
import ChorusTrace
import Foundation

/// A scratch project directory, a simulator on loopback, and a way to run workflows in it
/// through the real scheduler, HTTP client and SQLite trace.
final class RunHarness: @unchecked Sendable {
    let directory: URL
    let simLoop: EventLoop
    let loop: EventLoop
    let simulator: Simulator
    let client: HTTPClient
    var dbPath: String { directory.appendingPathComponent("trace.db").path }

    init(_ configure: (inout SimulatorConfiguration) -> Void = { _ in }) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("agents"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("workflows"), withIntermediateDirectories: true)
        simLoop = try EventLoop(name: "sim")
        loop = try EventLoop(name: "run")
        var configuration = SimulatorConfiguration()
        configure(&configuration)
        simulator = try Simulator.start(on: simLoop, configuration: configuration)
        client = try HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: 1024))
    }

    var baseURL: String { "http://127.0.0.1:\(simulator.port)/v1" }

    /// Writes chorus.json with `models` (name → provider model id and extra settings).
    func writeConfig(_ models: [String: JSONValue]) throws {
        var all: [String: JSONValue] = [:]
        for (name, settings) in models {
            var model = settings.objectValue ?? [:]
            model["provider"] = model["provider"] ?? "openai"
            model["base_url"] = .string(baseURL)
            model["price"] = model["price"] ?? ["input_per_mtok": 1, "output_per_mtok": 2]
            // A simulated planner-N writes N subtasks, about 25 tokens each: room for all of them.
            if model["model"]?.stringValue?.hasPrefix("planner-") == true { model["max_tokens"] = model["max_tokens"] ?? 1_000_000 }
            all[name] = .object(model)
        }
        try write("chorus.json", .object(["models": .object(all)]))
    }

    func write(_ path: String, _ value: JSONValue) throws {
        try Data(value.serialized()).write(to: directory.appendingPathComponent(path))
    }

    func agent(_ name: String, model: JSONValue, prompt: String, extra: [String: JSONValue] = [:]) throws {
        var body: [String: JSONValue] = ["name": .string(name), "model": model, "prompt": .string(prompt), "retries": 3, "timeout_s": 10]
        body.merge(extra) { $1 }
        try write("agents/\(name).json", .object(body))
    }

    func workflow(
        _ name: String, nodes: [String: JSONValue], output: String,
        inputs: [String: JSONValue] = ["question": ["type": "string"]]
    ) throws -> String {
        try write("workflows/\(name).json", ["name": .string(name), "inputs": .object(inputs), "nodes": .object(nodes), "output": .string(output)])
        return directory.appendingPathComponent("workflows/\(name).json").path
    }

    func load(_ workflow: String) throws -> Project {
        try SpecLoader.loadProject(workflow: workflow, config: directory.appendingPathComponent("chorus.json").path).get()
    }

    /// Runs `workflow` to the end and returns the summary and the store it was traced to;
    /// `observer` sees the trace writer's committed batches.
    func run(
        _ workflow: String, inputs: JSONValue = ["question": "What limits fan-out?"], maxParallel: Int = 256,
        budget: Budget = Budget(), observer: (@Sendable ([TraceChange]) -> Void)? = nil
    ) async throws -> (RunSummary, TraceStore) {
        let project = try load(workflow)
        let store = try TraceStore(path: dbPath)
        let writer = TraceWriter(store: store, observer: observer)
        let summary = await Orchestrator.run(
            project, inputs: inputs, trace: writer, client: client, loop: loop,
            maxParallel: maxParallel, progress: RunProgress(), budget: budget)
        writer.close()
        return (summary, store)
    }

    /// Replays (or, with `fork`, forks) `runID` from this harness's trace.
    func replay(_ runID: String, workflow: String, fork: Replayer.Fork? = nil) async throws -> ReplayReport {
        let store = try TraceStore(path: dbPath)
        let writer = TraceWriter(store: store)
        defer { writer.close() }
        return try await Replayer.replay(
            runID, store: store, project: try load(workflow), trace: writer, loop: loop,
            progress: RunProgress(), fork: fork)
    }

    func stats() -> JSONValue { simulator.statsJSON() }

    /// Shuts the loops down if a test threw before calling `shutdown()`: a loop thread left
    /// running keeps the test process alive after the last test.
    deinit {
        simLoop.shutdown()
        loop.shutdown()
    }

    func shutdown() async {
        await client.shutdown()
        simulator.stop()
        loop.shutdown()
        simLoop.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }
}

let findingSchema: JSONValue = [
    "type": "object", "required": ["finding", "confidence"],
    "properties": ["finding": ["type": "string"], "confidence": ["type": "number", "minimum": 0, "maximum": 1]],
]

let planSchema: JSONValue = [
    "type": "object", "required": ["subtasks"],
    "properties": ["subtasks": ["type": "array", "items": ["type": "string"]], "done": ["type": "boolean"]],
]
