import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Logging
import ServiceLifecycle
import Testing

// The code of Sources/Chorus/Chorus.docc/GettingStarted.md, verbatim (the last test checks
// every swift block of the article is in this file), run against the simulator on loopback
// by the tests below. Edit the article and this file together.

/// Runs the workflow at `workflow` once, with the models of `config`, recording it to the
/// trace database at `trace`, and prints what it answered.
func research(workflow: String, config: String, trace: String) async throws -> RunSummary {
    let runtime = try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation(trace).open()))
    let project = try Project(loading: workflow, config: config)
    let summary = try await runtime.run(project, inputs: ["question": "Which model should answer support tickets?"])
    print(summary.status, summary.output?.text ?? "no output")
    print("\(summary.calls) calls, \(summary.tokensIn + summary.tokensOut) tokens, $\(summary.cost)")
    await runtime.shutdown()
    return summary
}

/// A planner splits the question into subtasks and a small model answers each, both served
/// at `baseURL` (an OpenAI-compatible endpoint; `chorus sim` serves one).
func planAndWork(baseURL: String) throws -> Project {
    try Project(
        workflow: [
            "name": "plan-and-work", "inputs": ["question": ["type": "string"]],
            "nodes": [
                "plan": ["kind": "agent", "agent": "planner"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"],
            ],
            "output": "work",
        ],
        agents: [
            [
                "name": "planner", "model": "planner", "prompt": "Split into subtasks: {{inputs.question}}",
                "output_schema": ["type": "object", "required": ["subtasks"], "properties": ["subtasks": ["type": "array"]]],
            ],
            ["name": "worker", "model": "small", "prompt": "{{item}}"],
        ],
        models: [
            "models": [
                "planner": ["provider": "openai", "base_url": .string(baseURL), "model": "planner-3"],
                "small": [
                    "provider": "openai", "base_url": .string(baseURL), "model": "sim-small",
                    "price": ["input_per_mtok": 0.02, "output_per_mtok": 0.04],
                ],
            ]
        ])
}

/// Answers the `small` model's requests from code (a model running in this process, say)
/// and sends every other request over HTTP as Chorus would.
struct LocalSmallModel: ModelTransport {
    let live: LiveTransport

    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        guard endpoint.spec.name == "small" else {
            return await live.exchange(endpoint, body: body, step: step, attempt: attempt, timeout: timeout)
        }
        // The provider's own response shape (OpenAI chat completions here, as the model's
        // provider says): Chorus parses, checks, records and prices it as any other.
        let response: JSONValue = [
            "id": .string("local-\(step)"), "object": "chat.completion", "model": "local-small",
            "choices": [["index": 0, "message": ["role": "assistant", "content": .string("answered locally for \(step)")], "finish_reason": "stop"]],
            "usage": ["prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16],
        ]
        return .response(status: 200, body: Array(response.text.utf8), firstTokenMs: nil)
    }
}

/// Runs `project` with the `small` model answered in this process.
func runOnLocalModel(_ project: Project, runtime: ChorusRuntime) async throws -> RunSummary {
    let transport = LocalSmallModel(live: runtime.liveTransport)
    return try await runtime.run(project, inputs: ["question": "What limits fan-out?"], options: RunOptions(transport: transport))
}

/// Lists the latest runs, shows one run's steps, and replays it from the trace: the replay
/// makes no model call, and says whether it reproduced the recorded run.
func readBack(_ runID: String, project: Project, runtime: ChorusRuntime) async throws -> ReplayReport {
    for run in try await runtime.runs(limit: 5) {
        print(run.id, run.workflow, run.status, run.cost)
    }
    if let recorded = try await runtime.recorded(runID) {
        print("\(recorded.run.id): \(recorded.run.status), $\(recorded.run.cost)")
        for step in recorded.steps where !step.isNodeResult {
            print("  \(step.path) \(step.status) \(step.model ?? "-") \(step.tokensIn) in, \(step.tokensOut) out")
        }
    }
    let replay = try await runtime.replay(runID, project: project)
    print("replay \(replay.summary.runID): reproduced \(replay.reproduced), \(replay.summary.calls) calls served from the trace")
    return replay
}

/// Runs `project`, printing its progress as it goes.
func runShowingProgress(_ project: Project, runtime: ChorusRuntime) async throws -> RunSummary {
    let progress = RunProgress()
    let events = progress.events()  // from now: before the run starts, not inside the task
    let display = Task {
        for await event in events {
            switch event {
            case .node(let id, let counters): print("\(id): \(counters.succeeded) of \(counters.total) done, \(counters.running) running")
            case .call(let calls, _, _, let cost): print("\(calls) calls so far, $\(cost)")
            case .message(let line): print(line)
            }
        }
    }
    let summary = try await runtime.run(project, inputs: ["question": "What limits fan-out?"], options: RunOptions(progress: progress))
    await display.value  // the stream ends with the run
    return summary
}

/// The runtime as a service of a server's `ServiceGroup`: on SIGTERM the group shuts its
/// services down in reverse order, so list the runtime before the services that use it.
func serviceGroup(runtime: ChorusRuntime, server: some Service, logger: Logger) -> ServiceGroup {
    ServiceGroup(services: [runtime, server], gracefulShutdownSignals: [.sigterm], logger: logger)
}

/// Runs the getting-started article's code against the simulator on loopback.
struct GettingStartedArticleTests {
    @Test func aWorkflowLoadedFromFilesRunsAndIsRecorded() async throws {
        let h = try RunHarness()
        try h.writeConfig(["planner": ["model": "planner-3"], "small": ["model": "sim-small"]])
        try h.agent("planner", model: "planner", prompt: "Split into subtasks: {{inputs.question}}", extra: ["output_schema": planSchema])
        try h.agent("worker", model: "small", prompt: "{{item}}")
        let workflow = try h.workflow(
            "research", nodes: ["plan": ["kind": "agent", "agent": "planner"], "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"]],
            output: "work")
        let summary = try await research(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path, trace: h.dbPath)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.output?.arrayValue?.count == 3 && summary.calls == 4)
        #expect(try TraceStore(path: h.dbPath).run(matching: summary.runID)?.status == .succeeded)
        await h.shutdown()
    }

    @Test func anOwnTransportProgressAndReadingBackWithAReplayThatCallsNothing() async throws {
        let h = try RunHarness()
        let runtime = try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation(h.dbPath).open(), maxParallel: 8))
        let project = try planAndWork(baseURL: h.baseURL)

        let local = try await runOnLocalModel(project, runtime: runtime)
        #expect(local.status == .succeeded, "\(local.error ?? "")")
        #expect(local.output?.arrayValue?.first?.stringValue == "answered locally for work/0")
        #expect(h.stats()["requests"]?.intValue == 1, "only the planner went over HTTP")
        #expect(local.tokensIn >= 3 * 12 && local.cost > 0, "the local answers are counted and priced")

        let followed = try await runShowingProgress(project, runtime: runtime)
        #expect(followed.status == .succeeded && followed.calls == 4)

        let requests = h.stats()["requests"]?.intValue
        let replay = try await readBack(followed.runID, project: project, runtime: runtime)
        #expect(replay.reproduced && replay.summary.calls == 4)
        #expect(h.stats()["requests"]?.intValue == requests, "the replay made no model call")
        await runtime.shutdown()
        await h.shutdown()
    }

    @Test func theServiceGroupShutsTheRuntimeDown() async throws {
        let h = try RunHarness()
        let runtime = try ChorusRuntime(RuntimeConfiguration(store: nil))
        let server = ServiceUntilShutdown()
        let group = serviceGroup(runtime: runtime, server: server, logger: Logger(label: "getting-started"))
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(100))
        await group.triggerGracefulShutdown()
        try await running.value
        await #expect(throws: ChorusRuntimeError.self) { try await runtime.run(try planAndWork(baseURL: h.baseURL), inputs: ["question": "after"]) }
        await h.shutdown()
    }

    /// Every swift block of the article is code of this file, character for character.
    @Test func theArticlesCodeIsThisFilesCode() throws {
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let article = try String(contentsOf: root.appendingPathComponent("Sources/Chorus/Chorus.docc/GettingStarted.md"), encoding: .utf8)
        let source = try String(contentsOf: here, encoding: .utf8)
        let blocks = article.components(separatedBy: "```swift\n").dropFirst().map { $0.components(separatedBy: "```").first ?? "" }
        #expect(blocks.count >= 6, "the article's swift blocks: \(blocks.count)")
        for block in blocks {
            #expect(source.contains(block), "not in GettingStartedArticleTests.swift:\n\(block)")
        }
    }
}

/// What stands for a server in the ServiceGroup test: it runs until the group shuts down.
private struct ServiceUntilShutdown: Service {
    func run() async throws { try? await gracefulShutdown() }
}
