import ChorusJSON
import ChorusTrace
import Crypto
import Foundation

/// One span as OpenTelemetry models it, independent of how it is sent.
public struct TelemetrySpan: Sendable, Equatable {
    /// The span's kind: `client` for a model call (a request to another service), `internal`
    /// for the rest.
    public enum Kind: Int, Sendable {
        /// Work inside the process (the run, a step, a tool call).
        case `internal` = 1
        /// A request to another service (a model call).
        case client = 3
    }

    /// An attribute's value, in the types OTLP carries.
    public enum Value: Sendable, Equatable {
        /// Text.
        case string(String)
        /// An integer (tokens, counts, an HTTP status).
        case int(Int64)
        /// A number with a fraction (a cost, a temperature).
        case double(Double)
        /// True or false.
        case bool(Bool)
        /// A list of text (finish reasons, stop sequences).
        case strings([String])
    }

    /// 16 bytes.
    public var traceID: [UInt8]
    /// 8 bytes.
    public var spanID: [UInt8]
    /// The enclosing span's id; nil for the run's root span.
    public var parentSpanID: [UInt8]?
    /// `invoke_workflow {workflow}`, `invoke_agent {agent}`, `chat {model}`, `execute_tool {tool}`.
    public var name: String
    /// Client for a model call, internal otherwise.
    public var kind: Kind
    /// Start, in nanoseconds since 1970.
    public var startNanos: UInt64
    /// End, in nanoseconds since 1970.
    public var endNanos: UInt64
    /// How a span's work ended, as OpenTelemetry's status: unset for what has no outcome
    /// (a skipped step, a paused run), OK, or an error with its one line (the error's code
    /// is the `error.type` attribute).
    public enum Status: Sendable, Equatable {
        /// No outcome: the work did not finish (a skipped step, a paused run).
        case unset
        /// The work succeeded.
        case ok
        /// The work failed, saying why in one line.
        case error(String)
    }

    /// In the order they were set.
    public var attributes: [(key: String, value: Value)]
    /// How the span's work ended.
    public var status: Status

    /// The error's line, when the status is an error.
    public var error: String? { if case .error(let message) = status { message } else { nil } }

    public static func == (a: Self, b: Self) -> Bool {
        a.traceID == b.traceID && a.spanID == b.spanID && a.parentSpanID == b.parentSpanID && a.name == b.name && a.kind == b.kind
            && a.startNanos == b.startNanos && a.endNanos == b.endNanos && a.status == b.status
            && a.attributes.map(\.key) == b.attributes.map(\.key) && a.attributes.map(\.value) == b.attributes.map(\.value)
    }

    /// The attribute named `key`, if set.
    public subscript(key: String) -> Value? { attributes.first { $0.key == key }?.value }

    /// Marks the span failed: ERROR with `message`, `code` as `error.type`.
    mutating func fail(_ code: String, _ message: String) {
        status = .error(message)
        attributes.append(("error.type", .string(code)))
    }
}

/// A recorded run as spans that follow the OpenTelemetry GenAI semantic conventions (the
/// agent and inference span documents): the run is `invoke_workflow {workflow}`, each step
/// that calls an agent `invoke_agent {agent}` (other steps `{kind} {node}`), each model call
/// `chat {model}` (kind CLIENT), each tool call `execute_tool {tool}`. Chorus's own facts
/// (run id, step path, attempt, fan-out index, cost, escalation, outcome) are `chorus.*`
/// attributes. Message contents are added only when asked for (`content`), as the
/// conventions say: prompts and answers are sensitive.
///
/// Every span with an outcome has a status: OK, or ERROR with the failure's line and its
/// code in `error.type` (a run's `RunFailureCode`, a call's outcome or HTTP status). A
/// skipped step and a run paused for approval are left unset: neither has finished, let
/// alone failed. Backends that read the OpenInference conventions (Arize Phoenix) get their
/// attributes too: `openinference.span.kind` (CHAIN for the run and steps with no agent,
/// AGENT, LLM, TOOL), and on each model call the model, provider, token counts and the
/// recorded cost (`llm.cost.total`).
///
/// Ids are derived from the run (SHA-256 of the run id and the span's identity), so a run
/// exported twice — live, then again after the fact — gives the same trace, and a child can
/// name its parent before the parent has ended.
public enum GenAISpans {
    /// What a recorded run is made of.
    public struct Recording: Sendable {
        /// The run.
        public var run: RunRecord
        /// Its steps.
        public var steps: [StepRecord]
        /// Its model calls.
        public var calls: [ModelCallRecord]
        /// Its tool calls.
        public var tools: [ToolCallRecord]
        /// Its event log (escalations and guard verdicts become span attributes).
        public var events: [EventRecord]
        /// Request and response bodies by hash (for request parameters, the response model
        /// and, with content, the messages); missing ones are left out.
        public var bodies: [String: [UInt8]]

        /// A recording, as read from a trace store (`runs export --otlp`).
        public init(
            run: RunRecord, steps: [StepRecord], calls: [ModelCallRecord], tools: [ToolCallRecord], events: [EventRecord],
            bodies: [String: [UInt8]]
        ) {
            self.run = run
            self.steps = steps
            self.calls = calls
            self.tools = tools
            self.events = events
            self.bodies = bodies
        }

        /// Reads everything `run` holds from `store`.
        public init(run: RunRecord, store: any TraceBackend) throws {
            let calls = try store.modelCalls(ofRun: run.id)
            let hashes = Set(calls.flatMap { [$0.requestHash] + ($0.responseHash.map { [$0] } ?? []) })
            self.init(
                run: run, steps: try store.steps(ofRun: run.id).filter { !$0.isNodeResult }, calls: calls,
                tools: try store.toolCalls(ofRun: run.id), events: try store.events(ofRun: run.id), bodies: try store.blobs(hashes))
        }
    }

    /// The trace id of a run.
    public static func traceID(run: String) -> [UInt8] { digest("chorus trace \(run)", 16) }

    static func spanID(run: String, _ key: String) -> [UInt8] { digest("chorus span \(run) \(key)", 8) }

    private static func digest(_ text: String, _ count: Int) -> [UInt8] { Array(SHA256.hash(data: Array(text.utf8)).prefix(count)) }

    private static func nanos(_ seconds: Double) -> UInt64 { seconds.isFinite && seconds > 0 ? UInt64(seconds * 1e9) : 0 }

    /// Every span of `recording`: the run first, then steps in order, each followed by its
    /// model and tool calls.
    public static func spans(_ recording: Recording, content: Bool = false) -> [TelemetrySpan] {
        let run = recording.run
        let ended = run.endedAt ?? ([run.startedAt] + recording.steps.compactMap(\.endedAt)).max() ?? run.startedAt
        let evalContext = recording.events.lazy.compactMap { event -> JSONValue? in
            if case .runStarted(let detail)? = event.event { detail } else { nil }
        }.first?["eval"]
        let code = recording.events.lazy.compactMap { event -> String? in
            if case .runEnded(_, _, let code)? = event.event { code } else { nil }
        }.first
        var spans = [runSpan(run, endedAt: ended, eval: evalContext, code: code)]
        let escalated = Dictionary(grouping: recording.events.filter { $0.isKind(.escalated) }, by: { $0.stepPath ?? "" })
        let truncations = PlanTruncation.byStep(recording.events)
        let callsByStep = Dictionary(grouping: recording.calls, by: { owner(of: $0.stepPath) })
        let toolsByStep = Dictionary(grouping: recording.tools, by: \.stepPath)
        let json = { (hash: String?) in hash.flatMap { recording.bodies[$0] }.flatMap { try? JSONValue(parsing: $0) } }
        for step in recording.steps {
            spans.append(stepSpan(step, escalations: escalated[step.path]?.count ?? 0, truncation: truncations[step.path], runEndedAt: ended))
            for call in callsByStep[step.path] ?? [] {
                spans.append(modelCallSpan(call, request: json(call.requestHash), response: json(call.responseHash), content: content))
            }
            for tool in toolsByStep[step.path] ?? [] { spans.append(toolCallSpan(tool)) }
        }
        return spans
    }

    /// `invoke_workflow {workflow}`: the root. `code` is the run's failure code, as its
    /// `run_ended` event has it (nil in runs recorded before it was kept: the status stands in).
    static func runSpan(_ run: RunRecord, endedAt: Double, eval: JSONValue?, code: String? = nil) -> TelemetrySpan {
        var root = TelemetrySpan(
            traceID: traceID(run: run.id), spanID: spanID(run: run.id, "run"), parentSpanID: nil,
            name: "invoke_workflow \(run.workflow)", kind: .internal,
            startNanos: nanos(run.startedAt), endNanos: nanos(endedAt),
            attributes: [
                ("gen_ai.operation.name", .string("invoke_workflow")), ("gen_ai.workflow.name", .string(run.workflow)),
                ("openinference.span.kind", .string("CHAIN")),
                ("chorus.run_id", .string(run.id)), ("chorus.status", .string(run.status.rawValue)),
                ("gen_ai.usage.input_tokens", .int(Int64(run.tokensIn))), ("gen_ai.usage.output_tokens", .int(Int64(run.tokensOut))),
                ("chorus.cost_usd", .double(run.cost)),
            ], status: run.status == .succeeded ? .ok : .unset)
        if run.status == .failed || run.status == .interrupted {
            root.fail(code ?? run.status.rawValue, run.error ?? run.status.rawValue)
        }
        if let parent = run.parentRunID { root.attributes.append(("chorus.parent_run_id", .string(parent))) }
        if let relation = run.relation { root.attributes.append(("chorus.relation", .string(relation.rawValue))) }
        if let eval {
            root.attributes.append(("chorus.eval_id", .string(eval["id"]?.stringValue ?? "")))
            root.attributes.append(("chorus.eval_variant", .string(eval["variant"]?.stringValue ?? "")))
        }
        return root
    }

    /// `invoke_agent {agent}` for a step that calls an agent, `{kind} {node}` for others;
    /// a child of the run. An as_completed lead call carries what its prompt held
    /// (`chorus.lead.saw_count`, `chorus.lead.saw`: finding steps in order), a plan cut to
    /// what was left of max_subtasks how much was cut (`chorus.lead.planned`, `.kept`, `.dropped`).
    static func stepSpan(_ step: StepRecord, escalations: Int, truncation: PlanTruncation? = nil, runEndedAt: Double) -> TelemetrySpan {
        var span = TelemetrySpan(
            traceID: traceID(run: step.runID), spanID: spanID(run: step.runID, "step \(step.path)"),
            parentSpanID: spanID(run: step.runID, "run"),
            name: step.agent.map { "invoke_agent \($0)" } ?? "\(step.kind) \(step.node)", kind: .internal,
            startNanos: nanos(step.startedAt), endNanos: nanos(step.endedAt ?? runEndedAt), attributes: [],
            status: step.status == .succeeded ? .ok : .unset)
        if let agent = step.agent {
            span.attributes += [("gen_ai.operation.name", .string("invoke_agent")), ("gen_ai.agent.name", .string(agent))]
        }
        span.attributes.append(("openinference.span.kind", .string(step.agent == nil ? "CHAIN" : "AGENT")))
        span.attributes += [
            ("chorus.step", .string(step.path)), ("chorus.node", .string(step.node)), ("chorus.step_kind", .string(step.kind)),
            ("chorus.status", .string(step.status.rawValue)), ("chorus.attempts", .int(Int64(step.attempts))),
            ("gen_ai.usage.input_tokens", .int(Int64(step.tokensIn))), ("gen_ai.usage.output_tokens", .int(Int64(step.tokensOut))),
            ("chorus.cost_usd", .double(step.cost)),
        ]
        if let index = step.itemIndex { span.attributes.append(("chorus.fan_out_index", .int(Int64(index)))) }
        if let model = step.model { span.attributes.append(("chorus.model", .string(model))) }
        if escalations > 0 { span.attributes.append(("chorus.escalated", .int(Int64(escalations)))) }
        if let why = step.skippedBecause { span.attributes.append(("chorus.skipped", .string(why))) }
        if let saw = step.leadSaw { span.attributes += [("chorus.lead.saw_count", .int(Int64(saw.count))), ("chorus.lead.saw", .strings(saw))] }
        if let truncation {
            span.attributes += [
                ("chorus.lead.planned", .int(Int64(truncation.planned))), ("chorus.lead.kept", .int(Int64(truncation.kept))),
                ("chorus.lead.dropped", .int(Int64(truncation.dropped))),
            ]
        }
        switch step.status {
        case .failed: span.fail("step_failed", step.error ?? "failed")
        case .cancelled: span.fail("cancelled", step.error ?? "cancelled")
        case .running, .succeeded, .skipped: break
        }
        return span
    }

    /// The step a call belongs to: a guard's judge call (`PATH#guard-input`) is its step's.
    static func owner(of path: String) -> String {
        path.firstIndex(of: "#").map { String(path[..<$0]) } ?? path
    }

    /// `chat {model}` (CLIENT), a child of its step, from the call and its bodies (parsed).
    static func modelCallSpan(_ call: ModelCallRecord, request: JSONValue?, response: JSONValue?, content: Bool) -> TelemetrySpan {
        let anthropic = call.url.hasSuffix("/messages")
        let provider = anthropic ? "anthropic" : "openai"
        let start = nanos(call.startedAt)
        var span = TelemetrySpan(
            traceID: traceID(run: call.runID), spanID: spanID(run: call.runID, "call \(call.stepPath) \(call.attempt)"),
            parentSpanID: spanID(run: call.runID, "step \(owner(of: call.stepPath))"),
            name: "chat \(call.providerModel)", kind: .client, startNanos: start,
            endNanos: start + UInt64(max(0, call.latencyMs) * 1e6),
            attributes: [
                ("gen_ai.operation.name", .string("chat")),
                ("gen_ai.provider.name", .string(provider)),
                ("gen_ai.request.model", .string(call.providerModel)),
            ], status: .ok)
        if let model = response?["model"]?.stringValue { span.attributes.append(("gen_ai.response.model", .string(model))) }
        if let maxTokens = (request?["max_tokens"] ?? request?["max_completion_tokens"])?.intValue {
            span.attributes.append(("gen_ai.request.max_tokens", .int(Int64(maxTokens))))
        }
        if let temperature = request?["temperature"]?.numberValue { span.attributes.append(("gen_ai.request.temperature", .double(temperature))) }
        if let reason = call.finishReason { span.attributes.append(("gen_ai.response.finish_reasons", .strings([reason]))) }
        span.attributes += [("gen_ai.usage.input_tokens", .int(Int64(call.tokensIn))), ("gen_ai.usage.output_tokens", .int(Int64(call.tokensOut)))]
        // OpenInference's names for the same facts. Phoenix prices an LLM span itself from
        // llm.model_name and the token counts (its own table, or a model with Chorus's prices
        // added in its settings); backends that take a span's own cost read llm.cost.total.
        span.attributes += [
            ("openinference.span.kind", .string("LLM")), ("llm.model_name", .string(call.providerModel)),
            ("llm.provider", .string(provider)), ("llm.system", .string(provider)),
            ("llm.token_count.prompt", .int(Int64(call.tokensIn))), ("llm.token_count.completion", .int(Int64(call.tokensOut))),
            ("llm.token_count.total", .int(Int64(call.tokensIn + call.tokensOut))), ("llm.cost.total", .double(call.cost)),
        ]
        if let url = URLComponents(string: call.url), let host = url.host {
            span.attributes.append(("server.address", .string(host)))
            span.attributes.append(("server.port", .int(Int64(url.port ?? (url.scheme == "https" ? 443 : 80)))))
        }
        span.attributes += [
            ("chorus.step", .string(call.stepPath)), ("chorus.attempt", .int(Int64(call.attempt))),
            ("chorus.model", .string(call.model)), ("chorus.outcome", .string(call.callOutcome.rawValue)),
            ("chorus.cost_usd", .double(call.cost)),
        ]
        if let status = call.httpStatus { span.attributes.append(("http.response.status_code", .int(Int64(status)))) }
        if let first = call.firstTokenMs { span.attributes.append(("chorus.first_token_ms", .double(first))) }
        if call.url.hasPrefix("replay:") { span.attributes.append(("chorus.replayed", .bool(true))) }
        switch call.callOutcome {
        case .answered, .toolCalls: break
        case .invalid: span.fail("invalid_answer", call.error ?? "invalid answer")
        case .failed: span.fail(call.httpStatus.map { String($0) } ?? "transport", call.error ?? "failed")
        case .cancelled: span.fail("cancelled", "cancelled")
        }
        if content {
            if let messages = request?["messages"] { span.attributes.append(("gen_ai.input.messages", .string(messages.text))) }
            if let system = request?["system"] { span.attributes.append(("gen_ai.system_instructions", .string(system.text))) }
            let output = response?["choices"]?.arrayValue?.first?["message"] ?? response?["content"]
            if let output { span.attributes.append(("gen_ai.output.messages", .string(output.text))) }
        }
        return span
    }

    /// `execute_tool {tool}`, a child of its step.
    static func toolCallSpan(_ tool: ToolCallRecord) -> TelemetrySpan {
        let start = nanos(tool.startedAt)
        var span = TelemetrySpan(
            traceID: traceID(run: tool.runID), spanID: spanID(run: tool.runID, "tool \(tool.stepPath) \(tool.attempt) \(tool.callIndex)"),
            parentSpanID: spanID(run: tool.runID, "step \(tool.stepPath)"), name: "execute_tool \(tool.tool)", kind: .internal, startNanos: start,
            endNanos: start + UInt64(max(0, tool.latencyMs) * 1e6),
            attributes: [
                ("gen_ai.operation.name", .string("execute_tool")), ("gen_ai.tool.name", .string(tool.tool)),
                ("gen_ai.tool.call.id", .string(tool.callID)), ("gen_ai.tool.type", .string("function")),
                ("openinference.span.kind", .string("TOOL")), ("tool.name", .string(tool.tool)),
                ("chorus.step", .string(tool.stepPath)), ("chorus.attempt", .int(Int64(tool.attempt))),
                ("chorus.tool_kind", .string(tool.kind)),
            ], status: .ok)
        if let status = tool.exitStatus { span.attributes.append(("chorus.exit_status", .int(Int64(status)))) }
        if tool.isError { span.fail("tool_error", tool.error ?? "the tool reported an error") }
        return span
    }
}
