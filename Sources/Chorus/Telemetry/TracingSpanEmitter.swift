import ChorusTrace
import Synchronization
import Tracing

/// A run's spans in the host application's tracer, through swift-distributed-tracing: a
/// server that bootstraps its own tracer (swift-otel or any other) sees Chorus's run, step,
/// model-call and tool-call spans as children of its request span. They are the spans the
/// OTLP exporter sends (`GenAISpans`: the same names, kinds, attributes, statuses and
/// recorded instants), but the ids are the tracer's own and the run's root is a child of
/// `parent`.
///
/// Fed a trace writer's committed batches (`observe`, on the writer's thread, as
/// `LiveSpanExporter.observe` is), it starts a run's and a step's span when their record is
/// first written (as running), so a model call or tool call, complete when it is recorded,
/// is started inside its step. With no tracer bootstrapped (`NoOpTracer`) it does nothing:
/// `observe` returns before looking at the batch.
public final class TracingSpanEmitter: Sendable {
    private struct State: ~Copyable {
        var stream: GenAISpans.Stream
        /// Spans started and not yet ended, by the span id GenAISpans derives.
        var open: [[UInt8]: any Span] = [:]
        /// The open spans' ids in the order they started.
        var order: [[UInt8]] = []
    }

    private let tracer: (any Tracer)?
    private let parent: ServiceContext
    private let state: Mutex<State>

    /// Spans go to `tracer` (default: `InstrumentationSystem.tracer`, a no-op until the host
    /// bootstraps one), children of `parent` (default: `ServiceContext.current ?? .topLevel`,
    /// the host's request span when there is one). `content` adds prompts and answers, as
    /// `--otel-content` does: they are sensitive, so they are left out unless asked for.
    public init(tracer: (any Tracer)? = nil, parent: ServiceContext? = nil, content: Bool = false) {
        let chosen = tracer ?? InstrumentationSystem.tracer
        self.tracer = chosen is NoOpTracer ? nil : chosen
        self.parent = parent ?? ServiceContext.current ?? .topLevel
        state = Mutex(State(stream: GenAISpans.Stream(content: content)))
    }

    /// Feed it a TraceWriter's committed batches, as `LiveSpanExporter.observe` is fed.
    public func observe(_ changes: [TraceChange]) {
        guard let tracer else { return }
        state.withLock { state in
            for piece in state.stream.take(changes.filter { GenAISpans.Stream.matters($0, starts: true) }) {
                switch piece {
                case .started(let span):
                    guard state.open[span.spanID] == nil else { continue }
                    state.open[span.spanID] = start(span, in: tracer, open: state.open)
                    state.order.append(span.spanID)
                case .ended(let span):
                    end(span, state.open.removeValue(forKey: span.spanID) ?? start(span, in: tracer, open: state.open))
                }
            }
        }
    }

    /// Ends any span still open (an interrupted run) with an error status.
    public func finish() {
        guard let tracer else { return }
        state.withLock { state in
            for span in state.stream.flush() {
                end(span, state.open.removeValue(forKey: span.spanID) ?? start(span, in: tracer, open: state.open))
            }
            // Latest first, so children end before their parents.
            for id in state.order.reversed() {
                guard let span = state.open.removeValue(forKey: id) else { continue }
                span.setStatus(SpanStatus(code: .error, message: "not ended: the run stopped before it did"))
                span.end()
            }
            state.order.removeAll()
        }
    }

    /// Starts `span` at its recorded start, a child of its parent's open span (the host's
    /// `parent` for the run, or for a span whose parent is not open here).
    private func start(_ span: TelemetrySpan, in tracer: any Tracer, open: [[UInt8]: any Span]) -> any Span {
        let context = span.parentSpanID.flatMap { open[$0]?.context } ?? parent
        let started = tracer.startSpan(
            span.name, context: context, ofKind: span.kind == .client ? .client : .internal, at: RecordedInstant(span.startNanos),
            function: #function, file: #fileID, line: #line)
        set(span.attributes, on: started)
        return started
    }

    /// Gives `started` the complete span's attributes and status and ends it at its recorded end.
    private func end(_ span: TelemetrySpan, _ started: any Span) {
        set(span.attributes, on: started)
        switch span.status {
        case .unset: break
        case .ok: started.setStatus(SpanStatus(code: .ok))
        case .error(let message): started.setStatus(SpanStatus(code: .error, message: message))
        }
        started.end(at: RecordedInstant(max(span.startNanos, span.endNanos)))
    }

    private func set(_ attributes: [(key: String, value: TelemetrySpan.Value)], on span: any Span) {
        var all = span.attributes
        for (key, value) in attributes {
            switch value {
            case .string(let text): all.set(key, value: .string(text))
            case .int(let number): all.set(key, value: .int64(number))
            case .double(let number): all.set(key, value: .double(number))
            case .bool(let flag): all.set(key, value: .bool(flag))
            case .strings(let texts): all.set(key, value: .stringArray(texts))
            }
        }
        span.attributes = all
    }
}

/// A recorded instant (nanoseconds since the epoch, as the trace has it) for the tracer.
struct RecordedInstant: TracerInstant {
    var nanosecondsSinceEpoch: UInt64

    init(_ nanos: UInt64) { nanosecondsSinceEpoch = nanos }

    static func < (a: Self, b: Self) -> Bool { a.nanosecondsSinceEpoch < b.nanosecondsSinceEpoch }
}
