import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Tracing

/// What `TracingSpanEmitter.observe` costs a run: a recorded batch of `steps` steps (each
/// written running, its model call with bodies, then final), fed to an emitter with no
/// tracer bootstrapped (the no-op, as every embedder that does not trace has it) and to one
/// with a tracer that keeps nothing (the emitter's own work when spans are wanted).
struct SpanBench {
    var steps: Int
    var rounds = 20

    func run() -> JSONValue {
        let batch = Self.batch(steps: steps)
        let noOp = median { TracingSpanEmitter().observe(batch) }
        let active = median {
            let emitter = TracingSpanEmitter(tracer: DiscardingTracer(), parent: .topLevel)
            emitter.observe(batch)
            emitter.finish()
        }
        return [
            "steps": .number(Double(steps)), "changes": .number(Double(batch.count)),
            "no_tracer_ns_per_batch": .number((noOp * 1e9).rounded()),
            "tracer_ms_per_batch": .number((active * 1e3 * 10).rounded() / 10),
            "tracer_us_per_step": .number((active * 1e6 / Double(steps) * 10).rounded() / 10),
        ]
    }

    /// The median of `rounds` timings of `body`, in seconds.
    private func median(_ body: () -> Void) -> Double {
        var times: [Double] = []
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            body()
            let elapsed = (ContinuousClock.now - start).components
            times.append(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
        }
        return times.sorted()[times.count / 2]
    }

    static func batch(steps: Int) -> [TraceChange] {
        var run = RunRecord(id: "bench", workflow: "fan", workflowPath: "fan.json", inputsJSON: "{}", startedAt: 1)
        var changes: [TraceChange] = [.run(run)]
        let request: JSONValue = ["model": "sim-small", "max_tokens": 256, "messages": [["role": "user", "content": "Research subtask"]]]
        let response: JSONValue = ["model": "sim-small", "choices": [["message": ["role": "assistant", "content": "{\"finding\":\"x\"}"]]]]
        for i in 0..<steps {
            let path = "work/\(i)"
            var step = StepRecord(runID: "bench", path: path, node: "work", kind: .item, itemIndex: i, agent: "worker", startedAt: 1 + Double(i) / 1000)
            changes.append(.step(step))
            changes.append(
                .modelCall(
                    ModelCallRecord(
                        runID: "bench", stepPath: path, attempt: 1, model: "small", providerModel: "sim-small",
                        url: "http://127.0.0.1:8080/v1/chat/completions", requestHash: "", responseHash: nil, httpStatus: 200, error: nil,
                        tokensIn: 40, tokensOut: 20, cost: 0.00006, latencyMs: 50, startedAt: step.startedAt, finishReason: "stop",
                        outcome: .answered),
                    request: request.serialized(), response: response.serialized()))
            step.status = .succeeded
            step.endedAt = step.startedAt + 0.05
            changes.append(.step(step))
        }
        run.status = .succeeded
        run.endedAt = 20
        changes.append(.run(run))
        changes.append(.event(runID: "bench", .runSucceeded, stepPath: nil, detailJSON: nil, at: 20))
        return changes
    }
}

/// A tracer whose spans keep nothing: what is timed is the emitter's work, not a tracer's.
private struct DiscardingTracer: Tracer {
    final class Span: Tracing.Span {
        let context: ServiceContext
        init(context: ServiceContext) { self.context = context }
        var operationName: String {
            get { "" }
            set {}
        }
        var attributes: SpanAttributes {
            get { [:] }
            set {}
        }
        var isRecording: Bool { true }
        func setStatus(_ status: SpanStatus) {}
        func addEvent(_ event: SpanEvent) {}
        func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {}
        func addLink(_ link: SpanLink) {}
        func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {}
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind, at instant: @autoclosure () -> Instant,
        function: String, file fileID: String, line: UInt
    ) -> Span { Span(context: context()) }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {}
    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {}
    func forceFlush() {}
}
