import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import InMemoryTracing
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Tracing

/// The front door as a Swift program uses it (issue 29): a project built in code, a run
/// from an ordinary async context, its events, its replay, an application's own model
/// transport, cancellation, and shutdown — directly and through a ServiceGroup. Against
/// the simulator on loopback and a real SQLite trace.
struct ChorusRuntimeTests {
    /// A two-node project built in code: a planner of `subtasks` subtasks and a small worker per subtask.
    private func project(_ h: RunHarness, subtasks: Int = 3, workerModel: String = "sim-small") throws -> Project {
        let base = JSONValue.string(h.baseURL)
        return try Project(
            workflow: [
                "name": "inline", "inputs": ["question": ["type": "string"]],
                "nodes": [
                    "plan": ["kind": "agent", "agent": "planner"],
                    "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"],
                ],
                "output": "work",
            ],
            agents: [
                [
                    "name": "planner", "model": "planner", "prompt": "{{inputs.question}}",
                    "output_schema": ["type": "object", "required": ["subtasks"], "properties": ["subtasks": ["type": "array"]]],
                ],
                ["name": "worker", "model": "small", "prompt": "{{item}}", "retries": 1],
            ],
            models: [
                "models": [
                    "planner": ["provider": "openai", "base_url": base, "model": .string("planner-\(subtasks)")],
                    "small": ["provider": "openai", "base_url": base, "model": .string(workerModel), "price": ["input_per_mtok": 1, "output_per_mtok": 2]],
                ]
            ])
    }

    private func runtime(_ h: RunHarness) throws -> ChorusRuntime {
        try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation(h.dbPath).open(), maxParallel: 8))
    }

    @Test func aProjectBuiltInCodeRunsFromAnyContextStreamsItsEventsAndReplaysWithNoCall() async throws {
        let h = try RunHarness()
        let runtime = try runtime(h)
        let project = try project(h)
        let progress = RunProgress()
        // Subscribed before the run starts: a stream taken after `finish()` is empty.
        let stream = progress.events()
        let events = Task {
            var seen: [RunProgress.Event] = []
            for await event in stream { seen.append(event) }
            return seen
        }
        let summary = try await runtime.run(project, inputs: ["question": "What limits fan-out?"], options: RunOptions(progress: progress))
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(summary.output?.arrayValue?.count == 3 && summary.calls == 4)
        let seen = await events.value
        #expect(seen.contains(.message("node work finished")), "the stream ends when the run does: \(seen.count) events")
        #expect(seen.contains { if case .call(calls: 4, _, _, _) = $0 { true } else { false } })
        #expect(seen.contains { if case .node(id: "work", let counters) = $0 { counters.succeeded == 3 } else { false } })

        let recorded = try #require(try await runtime.recorded(summary.runID))
        #expect(recorded.run.status == .succeeded && recorded.steps.filter { $0.node == "work" && !$0.isNodeResult }.count == 3)
        #expect(try await runtime.runs().first?.id == summary.runID)

        let requests = h.stats()["requests"]?.intValue
        let replay = try await runtime.replay(summary.runID, project: project)
        #expect(replay.reproduced && replay.summary.calls == 4 && h.stats()["requests"]?.intValue == requests, "no model call")
        await runtime.shutdown()
        await runtime.shutdown()
        await #expect(throws: ChorusRuntimeError.self) { try await runtime.run(project, inputs: ["question": "again"]) }
        await h.shutdown()
    }

    /// An application's own transport answers the worker's calls from code: Chorus parses,
    /// validates, records and prices them as for its own.
    @Test func anApplicationsModelTransportCarriesTheCallsItIsGiven() async throws {
        final class Canned: ModelTransport {
            let live: LiveTransport
            let seen = Mutex<[String]>([])
            init(live: LiveTransport) { self.live = live }
            func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
                guard endpoint.spec.name == "small" else { return await live.exchange(endpoint, body: body, step: step, attempt: attempt, timeout: timeout) }
                seen.withLock { $0.append(step) }
                let answer: JSONValue = [
                    "id": "x", "object": "chat.completion", "model": "canned",
                    "choices": [["index": 0, "message": ["role": "assistant", "content": .string("canned answer for \(step)")], "finish_reason": "stop"]],
                    "usage": ["prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15],
                ]
                return .response(status: 200, body: Array(answer.text.utf8), firstTokenMs: nil)
            }
        }
        let h = try RunHarness()
        let runtime = try runtime(h)
        let transport = Canned(live: runtime.liveTransport)
        let summary = try await runtime.run(try project(h), inputs: ["question": "q"], options: RunOptions(transport: transport))
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(transport.seen.withLock { $0.sorted() } == ["work/0", "work/1", "work/2"])
        #expect(summary.output?.arrayValue?.first?.stringValue == "canned answer for work/0")
        #expect(h.stats()["requests"]?.intValue == 1, "only the planner went over HTTP")
        let calls = try TraceStore(path: h.dbPath).modelCalls(ofRun: summary.runID).filter { $0.stepPath.hasPrefix("work/") }
        #expect(calls.count == 3 && calls.allSatisfy { $0.tokensIn == 10 && $0.tokensOut == 5 })
        await runtime.shutdown()
        await h.shutdown()
    }

    @Test func cancellingTheCallerInterruptsTheRunAndAServiceGroupShutsTheRuntimeDown() async throws {
        let h = try RunHarness { $0.latencyMs = 5_000 }
        let runtime = try runtime(h)
        let project = try project(h)
        let task = Task { try await runtime.run(project, inputs: ["question": "slow"]) }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let summary = try await task.value
        #expect(summary.status == .interrupted, "\(summary.status)")

        let group = ServiceGroup(services: [runtime], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(100))
        await group.triggerGracefulShutdown()
        try await running.value
        await #expect(throws: ChorusRuntimeError.self) { try await runtime.run(project, inputs: ["question": "after"]) }
        await h.shutdown()
    }

    @Test func aProjectBuiltInCodeIsCheckedAsFilesAre() throws {
        let h = try RunHarness()
        #expect(throws: ValidationFailure.self) {
            try Project(
                workflow: ["name": "bad", "nodes": ["a": ["kind": "agent", "agent": "ghost"]], "output": "a"], agents: [], models: ["models": [:]])
        }
        do {
            _ = try Project(
                workflow: ["name": "w", "nodes": ["a": ["kind": "agent", "agent": "one"]], "output": "a"],
                agents: [["name": "one", "model": "nowhere", "prompt": "hi"]],
                models: ["models": ["small": ["provider": "openai", "base_url": .string(h.baseURL), "model": "m"]]])
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("/inline/agents/one.json: $.model: no model named 'nowhere'"), "\(error)")
        }
    }

    /// With a tracer (the host's; here swift-distributed-tracing's in-memory one), a run's
    /// spans arrive as children of the span current where `run` was called: a server's
    /// request span. A second run beside it gets its own root under its own request.
    @Test func aRunsSpansGoToTheHostsTracerUnderTheCallersSpan() async throws {
        let h = try RunHarness()
        let tracer = InMemoryTracer()
        let runtime = try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation(h.dbPath).open(), maxParallel: 8, tracer: tracer))
        let project = try project(h, subtasks: 2)
        let requests = (0..<2).map { tracer.startSpan("POST /answer \($0)", ofKind: .server) }
        let summaries = try await withThrowingTaskGroup(of: RunSummary.self) { group in
            for request in requests {
                group.addTask { try await ServiceContext.withValue(request.context) { try await runtime.run(project, inputs: ["question": "q"]) } }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(summaries.allSatisfy { $0.status == .succeeded })
        requests.forEach { $0.end() }
        let spans = tracer.finishedSpans
        for request in requests {
            let roots = spans.filter { $0.parentSpanID == request.spanContext.spanID }
            #expect(roots.count == 1 && roots.first?.operationName == "invoke_workflow inline", "\(roots.map(\.operationName))")
            let root = try #require(roots.first)
            let inside = spans.filter { $0.traceID == request.spanContext.traceID && $0.spanID != request.spanContext.spanID }
            // The run, its two nodes' steps (plan, work/0, work/1) and their three calls.
            #expect(inside.count == 7 && inside.filter { $0.operationName.hasPrefix("chat ") }.count == 3, "\(inside.map(\.operationName))")
            #expect(root.status?.code == .ok)
        }
        await runtime.shutdown()
        await h.shutdown()
    }
}
