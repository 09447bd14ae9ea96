import ChorusJSON
import ChorusTrace

extension GenAISpans {
    /// The spans of runs as they are recorded: fed a trace writer's committed batches in
    /// order, it says when a span starts (a run or step written as running) and when one is
    /// complete (a step or run once final, a call once it returned). Both live exporters take
    /// their spans from it: the OTLP one sends the complete ones, the `Tracing` one also
    /// opens a span in the host's tracer at each start, so children have a parent to name.
    ///
    /// A run's final record is held until its `run_ended` event (appended right after it),
    /// which carries the failure code; `flush` gives up what is still held.
    struct Stream: Sendable {
        enum Piece: Sendable {
            /// A run or step started: its span so far (attributes as they were at the start).
            case started(TelemetrySpan)
            /// A span that is complete.
            case ended(TelemetrySpan)
        }

        let content: Bool
        /// Per run: the eval it belongs to (from `run_started`), escalations per step.
        private var evals: [String: JSONValue] = [:]
        private var escalations: [String: Int] = [:]
        /// Final run records waiting for their `run_ended` event.
        private var ending: [String: RunRecord] = [:]

        init(content: Bool) { self.content = content }

        /// Whether a change can start, end or inform a span (what an exporter queues).
        static func matters(_ change: TraceChange, starts: Bool) -> Bool {
            switch change {
            case .run(let run): return starts || run.status != .running
            // A node's `#result` row is its reconciled output, not a step of its own.
            case .step(let step): return !step.isNodeResult && (starts || step.status.isFinal)
            case .event(_, let kind, _, _, _):
                return kind == EventKind.runStarted.rawValue || kind == EventKind.escalated.rawValue || isRunEnd(kind)
            case .eval, .evalResult: return false
            case .modelCall, .copiedModelCall, .toolCall, .copiedToolCall: return true
            }
        }

        private static let runEnds = Set(RunStatus.allCases.filter { $0 != .running }.map { EventKind.ended($0).rawValue })

        /// Whether an event of `kind` says how a run ended.
        static func isRunEnd(_ kind: String) -> Bool { runEnds.contains(kind) }

        /// What `changes` start and end, in order.
        mutating func take(_ changes: [TraceChange]) -> [Piece] {
            var pieces: [Piece] = []
            let parse = { (bytes: [UInt8]?) in bytes.flatMap { try? JSONValue(parsing: $0) } }
            for change in changes {
                switch change {
                case .event(let runID, let kind, let step, let detail, _):
                    if let ended = remember(runID: runID, kind: kind, step: step, detail: detail) { pieces.append(.ended(ended)) }
                case .run(let run) where run.status == .running:
                    pieces.append(.started(GenAISpans.runSpan(run, endedAt: run.startedAt, eval: evals[run.id])))
                case .run(let run):
                    ending[run.id] = run
                case .step(let step) where step.isNodeResult:
                    break
                case .step(let step) where step.status == .running:
                    pieces.append(.started(GenAISpans.stepSpan(step, escalations: 0, runEndedAt: step.startedAt)))
                case .step(let step):
                    let escalated = escalations.removeValue(forKey: "\(step.runID) \(step.path)") ?? 0
                    pieces.append(.ended(GenAISpans.stepSpan(step, escalations: escalated, runEndedAt: step.endedAt ?? step.startedAt)))
                case .modelCall(let call, let request, let response):
                    pieces.append(.ended(GenAISpans.modelCallSpan(call, request: parse(request), response: parse(response), content: content)))
                case .copiedModelCall(let call):
                    pieces.append(.ended(GenAISpans.modelCallSpan(call, request: nil, response: nil, content: false)))
                case .toolCall(let tool, _, _), .copiedToolCall(let tool):
                    pieces.append(.ended(GenAISpans.toolCallSpan(tool)))
                case .eval, .evalResult:
                    break
                }
            }
            return pieces
        }

        /// Keeps what later spans need from the events among `changes`, building nothing
        /// (an exporter that drops a batch unbuilt); returns how many complete spans that
        /// gave up (runs that ended).
        mutating func remember(_ changes: [TraceChange]) -> Int {
            var ended = 0
            for case .event(let runID, let kind, let step, let detail, _) in changes {
                if Self.isRunEnd(kind) {
                    ended += ending.removeValue(forKey: runID) == nil ? 0 : 1
                } else {
                    _ = remember(runID: runID, kind: kind, step: step, detail: detail)
                }
            }
            return ended
        }

        /// The runs still held (their `run_ended` event never came), without a failure code.
        mutating func flush() -> [TelemetrySpan] {
            defer { ending.removeAll() }
            return ending.values.sorted { $0.id < $1.id }.map { finalSpan($0, code: nil) }
        }

        private mutating func remember(runID: String, kind: String, step: String?, detail: String?) -> TelemetrySpan? {
            switch EventKind(rawValue: kind) {
            case .runStarted?:
                if let eval = detail.flatMap({ try? JSONValue(parsing: $0) })?["eval"] { evals[runID] = eval }
            case .escalated?:
                if let step { escalations["\(runID) \(step)", default: 0] += 1 }
            default:
                guard Self.isRunEnd(kind), let run = ending.removeValue(forKey: runID) else { return nil }
                let code = detail.flatMap { try? JSONValue(parsing: $0) }?["code"]?.stringValue
                return finalSpan(run, code: code)
            }
            return nil
        }

        private mutating func finalSpan(_ run: RunRecord, code: String?) -> TelemetrySpan {
            GenAISpans.runSpan(run, endedAt: run.endedAt ?? run.startedAt, eval: evals.removeValue(forKey: run.id), code: code)
        }
    }
}
