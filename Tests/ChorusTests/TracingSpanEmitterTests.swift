@testable import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import InMemoryTracing
import Testing
import Tracing

/// A run's spans in the host's tracer: swift-distributed-tracing's own in-memory tracer
/// stands for the one an application bootstraps (passed in, never bootstrapped: that is
/// once per process), and the run is a real one against `chorus sim` on loopback.
@Suite struct TracingSpanEmitterTests {
    /// ConditionRunTests' `when` workflow, its model priced.
    private func tiers(_ h: RunHarness) throws -> String {
        try ConditionRunTests.tiers(h, small: ["model": "sim-small", "price": ["input_per_mtok": 2, "output_per_mtok": 8]])
    }

    @Test func theHostsTracerGetsTheRunsSpansUnderItsRequestSpan() async throws {
        let h = try RunHarness()
        let path = try tiers(h)
        let tracer = InMemoryTracer()
        let request = tracer.startSpan("POST /answer", ofKind: .server)
        let emitter = TracingSpanEmitter(tracer: tracer, parent: request.context)
        let (summary, store) = try await h.run(path, inputs: ["question": "Which plan?", "tier": "gold"]) { emitter.observe($0) }
        emitter.finish()
        request.end()
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(tracer.activeSpans.isEmpty, "every span ended")

        let spans = tracer.finishedSpans.filter { $0.spanID != request.spanContext.spanID }
        let recorded = GenAISpans.spans(try GenAISpans.Recording(run: try #require(try store.run(matching: summary.runID)), store: store))
        #expect(spans.count == recorded.count && spans.count == 1 + 3 + 2, "run, 3 steps (one skipped), 2 calls")
        #expect(spans.allSatisfy { $0.traceID == request.spanContext.traceID }, "in the host's trace")
        let root = try #require(spans.first { $0.operationName == "invoke_workflow tiers" })
        #expect(root.parentSpanID == request.spanContext.spanID)
        let steps = spans.filter { $0.attributes["chorus.step_kind"] != nil }
        #expect(steps.count == 3 && steps.allSatisfy { $0.parentSpanID == root.spanID })
        let chats = spans.filter { $0.operationName == "chat sim-small" }
        #expect(chats.count == 2 && chats.allSatisfy { $0.kind == .client })
        #expect(Set(chats.compactMap(\.parentSpanID)).isSubset(of: Set(steps.map(\.spanID))), "each call under its step")

        // The same spans the OTLP exporter sends: names, attributes, statuses, instants.
        for span in recorded {
            let host = try #require(
                spans.first { $0.operationName == span.name && $0.attributes["chorus.step"]?.toSpanAttribute() == span["chorus.step"].map(Self.attribute) },
                "\(span.name)")
            for (name, value) in span.attributes {
                #expect(host.attributes[name]?.toSpanAttribute() == Self.attribute(value), "\(span.name): \(name)")
            }
            #expect(host.startInstant.nanosecondsSinceEpoch == span.startNanos && host.endInstant.nanosecondsSinceEpoch == span.endNanos, "\(span.name)")
            switch span.status {
            case .unset: #expect(host.status == nil, "\(span.name)")
            case .ok: #expect(host.status?.code == .ok, "\(span.name)")
            case .error(let message): #expect(host.status == SpanStatus(code: .error, message: message), "\(span.name)")
            }
        }
        #expect(root.status?.code == .ok && root.attributes["openinference.span.kind"]?.toSpanAttribute() == .string("CHAIN"))
        #expect(root.attributes["chorus.cost_usd"]?.toSpanAttribute() == .double(summary.cost) && summary.cost > 0)
        let skipped = try #require(steps.first { $0.attributes["chorus.step"]?.toSpanAttribute() == .string("basic") })
        #expect(skipped.status == nil && skipped.attributes["chorus.skipped"] != nil, "a skipped step is no error: its status is unset")
        #expect(skipped.attributes["openinference.span.kind"]?.toSpanAttribute() == .string("CHAIN"), "no agent ran it")
        #expect(steps.filter { $0.attributes["openinference.span.kind"]?.toSpanAttribute() == .string("AGENT") }.count == 2)
        let costs = chats.compactMap { if case .double(let cost)? = $0.attributes["llm.cost.total"]?.toSpanAttribute() { cost } else { nil } }
        #expect(abs(costs.reduce(0, +) - summary.cost) < 1e-12, "the calls' llm.cost.total add up to the run's cost")
        #expect(chats.allSatisfy { $0.attributes["llm.model_name"]?.toSpanAttribute() == .string("sim-small") && $0.status?.code == .ok })
        await h.shutdown()
    }

    @Test func withNoTracerARunIsTheSame() async throws {
        let h = try RunHarness()
        let path = try tiers(h)
        let emitter = TracingSpanEmitter(tracer: NoOpTracer())
        let (traced, store) = try await h.run(path, inputs: ["question": "Which plan?", "tier": "gold"]) { emitter.observe($0) }
        emitter.finish()
        let (plain, _) = try await h.run(path, inputs: ["question": "Which plan?", "tier": "gold"])
        #expect(traced.status == .succeeded && plain.status == .succeeded)
        #expect(traced.calls == plain.calls && traced.tokensIn == plain.tokensIn && traced.cost == plain.cost)
        let stepsOf = { (run: String) in try store.steps(ofRun: run).map { "\($0.path) \($0.status)" }.sorted() }
        #expect(try stepsOf(traced.runID) == stepsOf(plain.runID))
        await h.shutdown()
    }

    /// Recorded changes, no run: a failed run's root carries its code; an interrupted run's
    /// open spans end as errors when the emitter finishes.
    @Test func failuresAreErrorsWithTheirCodeAndWhatIsLeftOpenEndsAsAnError() {
        let tracer = InMemoryTracer()
        let emitter = TracingSpanEmitter(tracer: tracer, parent: .topLevel)
        var run = RunRecord(id: "r1", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 1_000)
        var step = StepRecord(runID: "r1", path: "a", node: "a", kind: .agent, agent: "x", startedAt: 1_001)
        emitter.observe([.run(run), .step(step)])
        step.status = .failed
        step.endedAt = 1_002
        step.error = "a: small: not JSON (after 2 attempts)"
        run.status = .failed
        run.endedAt = 1_003
        run.error = "1 step failed"
        emitter.observe([.step(step), .run(run)])
        #expect(tracer.finishedSpans.map(\.operationName) == ["invoke_agent x"], "the run waits for its run_ended event")
        let ended = TraceEvent.runEnded(.failed, error: run.error, code: "steps_failed")
        emitter.observe([.event(runID: "r1", ended.kind, stepPath: nil, detailJSON: ended.detail?.text, at: 1_003)])
        let spans = tracer.popFinishedSpans()
        #expect(spans.map(\.operationName) == ["invoke_agent x", "invoke_workflow w"])
        #expect(spans[0].status == SpanStatus(code: .error, message: step.error))
        #expect(spans[0].attributes["error.type"]?.toSpanAttribute() == .string("step_failed"))
        #expect(spans[1].status == SpanStatus(code: .error, message: "1 step failed"))
        #expect(spans[1].attributes["error.type"]?.toSpanAttribute() == .string("steps_failed"), "the run's failure code")
        #expect(spans[1].endInstant.nanosecondsSinceEpoch == 1_003_000_000_000)

        // Interrupted: the process stopped before the records ended.
        let open = RunRecord(id: "r2", workflow: "w", workflowPath: "w.json", inputsJSON: "{}", startedAt: 2_000)
        emitter.observe([.run(open), .step(StepRecord(runID: "r2", path: "b", node: "b", kind: .agent, agent: "y", startedAt: 2_001))])
        #expect(tracer.finishedSpans.isEmpty && tracer.activeSpans.count == 2)
        emitter.finish()
        let left = tracer.popFinishedSpans()
        #expect(left.map(\.operationName) == ["invoke_agent y", "invoke_workflow w"], "children end first")
        #expect(left.allSatisfy { $0.status?.code == .error })
    }

    private static func attribute(_ value: TelemetrySpan.Value) -> SpanAttribute {
        switch value {
        case .string(let text): .string(text)
        case .int(let number): .int64(number)
        case .double(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .strings(let texts): .stringArray(texts)
        }
    }
}
