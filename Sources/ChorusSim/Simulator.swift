import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes

/// The simulated model provider behind `chorus sim`: a real HTTP server on loopback that
/// speaks OpenAI chat completions and Anthropic Messages, answers deterministically, and
/// injects latency and faults at seeded rates. It is the offline stand-in for model APIs
/// in the demo, the tests and the benchmarks.
public final class Simulator: @unchecked Sendable {
    /// The configuration it runs with.
    public let configuration: SimulatorConfiguration
    private let loop: EventLoop
    private var server: HTTPServer?
    private var faultRNG: SplitMix64
    private var latencyRNG: SplitMix64
    private var stats = SimulatorStats()
    private var hanging: [ObjectIdentifier: HTTPResponseWriter] = [:]
    private let pacer: StreamPacer?

    private init(loop: EventLoop, configuration: SimulatorConfiguration) {
        self.loop = loop
        self.configuration = configuration
        pacer = configuration.tokensPerSecond > 0 ? StreamPacer(loop: loop, tokensPerSecond: configuration.tokensPerSecond) : nil
        faultRNG = SplitMix64(seed: configuration.seed ^ 0xFA17)
        latencyRNG = SplitMix64(seed: configuration.seed ^ 0x1A7E)
    }

    /// Starts a simulator listening on `host:port` (0 picks a free port). Callable from
    /// any thread. Throws `IOError` when the port cannot be bound.
    public static func start(
        on loop: EventLoop, host: String = "127.0.0.1", port: Int = 0,
        configuration: SimulatorConfiguration = .init()
    ) throws(IOError) -> Simulator {
        let simulator = Simulator(loop: loop, configuration: configuration)
        let result: Result<Void, IOError> = loop.runBlocking {
            do throws(IOError) {
                simulator.server = try HTTPServer.start(on: loop, host: host, port: port) { request, writer in
                    simulator.handle(request, writer)
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
        return simulator
    }

    /// The port it listens on.
    public var port: Int { loop.runBlocking { self.server?.port ?? 0 } }

    /// The `/stats` document, as JSON.
    public func statsJSON() -> JSONValue {
        loop.runBlocking { self.currentStats() }
    }

    /// Stops accepting connections and drops requests left hanging or still streaming.
    public func stop() {
        loop.runBlocking {
            self.server?.close()
            self.pacer?.stop()
            for writer in self.hanging.values { writer.abort() }
            self.hanging.removeAll()
        }
    }

    private func currentStats() -> JSONValue {
        stats.json(connections: server?.connectionCount ?? 0, peakConnections: server?.peakConnectionCount ?? 0)
    }

    // MARK: routing

    private func handle(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter) {
        switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"):
            serveModel(request, writer, anthropic: false)
        case ("POST", "/v1/messages"):
            serveModel(request, writer, anthropic: true)
        case ("GET", "/stats"):
            writer.respond(status: .ok, headerFields: [.contentType: "application/json"], body: currentStats().serialized())
        case ("POST", "/stats/reset"):
            stats.reset()
            writer.respond(status: .ok, headerFields: [.contentType: "application/json"], body: currentStats().serialized())
        case ("GET", "/health"):
            writer.respond(status: .ok, headerFields: [.contentType: "text/plain"], body: Array("ok\n".utf8))
        case (_, "/v1/chat/completions"), (_, "/v1/messages"), (_, "/stats"), (_, "/stats/reset"):
            respondError(
                writer, status: .methodNotAllowed, anthropic: request.path == "/v1/messages",
                message: "\(request.method) is not allowed on \(request.path)", type: "invalid_request_error")
        default:
            respondError(
                writer, status: .notFound, anthropic: false,
                message: "no route for \(request.method) \(request.path)", type: "not_found_error")
        }
    }

    private func serveModel(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter, anthropic: Bool) {
        var modelRequest: ModelRequest
        do {
            modelRequest =
                anthropic
                ? try WireRequest.decodeAnthropic(request.body)
                : try WireRequest.decodeOpenAI(request.body)
            let bearer = request.headerFields[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : $0 }
            modelRequest.apiKey = bearer ?? request.headerFields[HTTPField.Name("x-api-key")!]
        } catch {
            stats.byStatus[400, default: 0] += 1
            respondError(
                writer, status: .badRequest, anthropic: anthropic,
                message: error.message, type: "invalid_request_error")
            return
        }
        let model = modelRequest.model
        stats.began(model: model)
        let fault = drawFault()
        if fault != .none { stats.faults[fault, default: 0] += 1 }
        // A hanging request is kept (so stop() can drop it) until its connection closes.
        let key = ObjectIdentifier(writer)
        if fault == .hang { hanging[key] = writer }
        writer.onFinish { [self] _ in
            stats.ended(model: model)
            hanging[key] = nil
        }
        if fault == .hang { return }
        let slow = configuration.slowDelayMs(contentHash: modelRequest.slowKey(seed: configuration.seed))
        if slow > 0 { stats.slow += 1 }
        // Before the answer starts: a slow streamed answer's first byte is late, as a
        // provider's queue makes it.
        let delay =
            configuration.latencyMs + slow
            + (configuration.jitterMs > 0
                ? Int(latencyRNG.next() % UInt64(configuration.jitterMs + 1)) : 0)
        let reply = { [self] in answer(modelRequest, fault: fault, slowMs: slow, anthropic: anthropic, writer: writer) }
        if delay == 0 { reply() } else { Timer.schedule(on: loop, after: .milliseconds(delay), reply) }
    }

    private func drawFault() -> SimulatedFault {
        let c = configuration
        guard c.errorRate + c.rateLimitRate + c.malformedRate + c.hangRate > 0 else { return .none }
        var r = faultRNG.nextUnit()
        for (fault, rate) in [
            (SimulatedFault.error, c.errorRate), (.rateLimit, c.rateLimitRate),
            (.malformed, c.malformedRate), (.hang, c.hangRate),
        ] {
            if r < rate { return fault }
            r -= rate
        }
        return .none
    }

    private func answer(_ request: ModelRequest, fault: SimulatedFault, slowMs: Int, anthropic: Bool, writer: HTTPResponseWriter) {
        guard writer.isOpen else { return }
        // A slow answer says so, for whoever measures the tail (a test, a benchmark):
        // timing alone cannot tell a slow call from one a loaded machine delayed.
        var tail = HTTPFields()
        if slowMs > 0 { tail[HTTPField.Name("x-sim-slow-ms")!] = String(slowMs) }
        switch fault {
        case .error:
            record(500)
            respondError(
                writer, status: .internalServerError, anthropic: anthropic, extra: tail,
                message: "simulated server error", type: anthropic ? "api_error" : "server_error")
            return
        case .rateLimit:
            record(429)
            var fields = configuration.retryAfterStyle.fields(seconds: configuration.retryAfterSeconds)
            fields.append(contentsOf: tail)
            respondError(
                writer, status: .tooManyRequests, anthropic: anthropic, extra: fields,
                message: "simulated rate limit", type: "rate_limit_error")
            return
        case .none, .malformed, .hang:
            break
        }
        if let refusal = Self.refusal(for: request, anthropic: anthropic) {
            record(refusal.status.code)
            respondError(
                writer, status: refusal.status, anthropic: anthropic, extra: tail, message: refusal.message, type: refusal.type)
            return
        }
        let generator = ReplyGenerator(seed: configuration.seed, accuracy: configuration.accuracy)
        let hash = request.contentHash(seed: configuration.seed)
        let callPrefix = (anthropic ? "toolu_" : "call_") + String(hash, radix: 16).suffix(12) + "_"
        var content: String
        var calls: [SimulatedToolCall] = []
        if let wanted = generator.toolCalls(for: request) {
            // A `tooluser-` model offered tools, before any result: it calls them.
            content = ""
            calls = wanted.enumerated().map {
                SimulatedToolCall(
                    id: callPrefix + String($0.offset), name: $0.element.name,
                    arguments: $0.element.input.text)
            }
        } else {
            content = generator.content(for: request)
            if let tool = request.format.toolName ?? (request.toolResults.isEmpty ? nil : request.answerTool?.name) {
                calls = [SimulatedToolCall(id: callPrefix + "0", name: tool, arguments: content)]
                content = ""
            }
        }
        var completionTokens = max(1, tokenEstimate(content) + calls.reduce(0) { $0 + tokenEstimate($1.arguments) })
        var finishReason = anthropic ? (calls.isEmpty ? "end_turn" : "tool_use") : (calls.isEmpty ? "stop" : "tool_calls")
        if request.format.toolName != nil && !anthropic { finishReason = "stop" }  // a forced call ends with stop on OpenAI
        // A real server stops generating at max_tokens, mid-word or mid-JSON.
        if let limit = request.maxTokens, completionTokens > limit {
            let text = calls.first?.arguments ?? content
            content = String(decoding: text.utf8.prefix(max(0, limit * 4)), as: UTF8.self)
            completionTokens = limit
            finishReason = anthropic ? "max_tokens" : "length"
            calls = []
        }
        let answer = SimulatedAnswer(
            id: (anthropic ? "msg_sim_" : "chatcmpl-sim-") + String(hash, radix: 16),
            model: request.model, content: content, promptTokens: request.promptTokens,
            completionTokens: completionTokens, created: Int(Date().timeIntervalSince1970),
            finishReason: finishReason, toolCalls: calls)
        record(200)
        // `nostream-…` models ignore `stream: true`, as some OpenAI-compatible servers do.
        if request.stream && !request.model.hasPrefix("nostream-") {
            let perEvent = configuration.tokensPerEvent
            var events =
                anthropic
                ? AnthropicWire.events(answer, tokensPerEvent: perEvent) : OpenAIWire.events(answer, tokensPerEvent: perEvent)
            if fault == .malformed {
                // Half the stream, then an event cut mid-JSON, then the end: no [DONE].
                events = Array(events.prefix(events.count / 2)) + [StreamEvent(bytes: Array("data: {\"id\":\"".utf8), tokens: 0)]
            }
            var fields: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            fields.append(contentsOf: tail)
            writer.startStream(status: .ok, headerFields: fields)
            if let pacer {
                pacer.send(events, on: writer)
            } else {
                // As fast as it can: the whole stream in one write (one chunk, one syscall).
                var bytes: [UInt8] = []
                bytes.reserveCapacity(events.reduce(0) { $0 + $1.bytes.count })
                for event in events { bytes.append(contentsOf: event.bytes) }
                writer.write(bytes)
                writer.end()
            }
        } else {
            var body = anthropic ? AnthropicWire.body(answer) : OpenAIWire.body(answer)
            if fault == .malformed { body = Array(body.prefix(body.count / 2)) }
            var fields: HTTPFields = [.contentType: "application/json"]
            fields.append(contentsOf: tail)
            writer.respond(status: .ok, headerFields: fields, body: body)
        }
    }

    /// Models whose names ask for a provider's refusals: `unauthorized-…` answers 401 and
    /// echoes the key it was sent (as providers do, partly or whole); `unknown-…` answers
    /// 404 "model does not exist"; `jsonobj-…` accepts `json_object` but answers a
    /// `json_schema` request with 500, as llama-cpp-python's server does.
    private static func refusal(
        for request: ModelRequest, anthropic: Bool
    )
        -> (status: HTTPResponse.Status, message: String, type: String)?
    {
        if request.model.hasPrefix("unauthorized-") {
            return (
                .unauthorized, "Incorrect API key provided: \(request.apiKey ?? "(none)"). You can find your API key in your account settings.",
                anthropic ? "authentication_error" : "invalid_request_error"
            )
        }
        if request.model.hasPrefix("unknown-") {
            return (
                .notFound, "The model `\(request.model)` does not exist or you do not have access to it.",
                anthropic ? "not_found_error" : "invalid_request_error"
            )
        }
        if request.model.hasPrefix("jsonobj-"), !anthropic, case .jsonSchema = request.format {
            return (
                .internalServerError, "response_format type 'json_schema' is not supported: expected 'text' or 'json_object'",
                "server_error"
            )
        }
        return nil
    }

    private func record(_ status: Int) {
        stats.byStatus[status, default: 0] += 1
    }

    private func respondError(
        _ writer: HTTPResponseWriter, status: HTTPResponse.Status, anthropic: Bool,
        extra: HTTPFields = [:], message: String, type: String
    ) {
        var fields: HTTPFields = [.contentType: "application/json"]
        fields.append(contentsOf: extra)
        let body =
            anthropic
            ? AnthropicWire.error(message: message, type: type)
            : OpenAIWire.error(message: message, type: type)
        writer.respond(status: status, headerFields: fields, body: body)
    }
}
