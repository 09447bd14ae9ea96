import ChorusIO
import HTTPTypes

/// The real thing: the request goes to the provider through the shared HTTP client,
/// streamed (server-sent events, assembled into the non-streamed body) when the model
/// streams. Whatever comes back has the model's API key removed before anyone sees it.
public struct LiveTransport: ModelTransport {
    let client: HTTPClient

    /// Calls go through `client` (`ChorusRuntime.liveTransport` is the runtime's).
    public init(client: HTTPClient) { self.client = client }

    public func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        let request: HTTPClientRequest
        do { request = try endpoint.httpRequest(body: body, timeout: timeout) } catch {
            return .failure(ProviderFailure(kind: .configuration, detail: error.description))
        }
        let redactor = SecretRedactor(endpoint.apiKey())
        do {
            if endpoint.spec.stream { return try await streamed(request, endpoint: endpoint, redactor: redactor) }
            let response = try await client.execute(request)
            return .response(status: Int(response.status.code), body: redactor?.redact(response.body) ?? response.body, firstTokenMs: nil)
        } catch {
            return Self.failure(error, redactor: redactor, endpoint: endpoint)
        }
    }

    private func streamed(
        _ request: HTTPClientRequest, endpoint: ModelEndpoint, redactor: SecretRedactor?
    )
        async throws(HTTPClientError) -> ModelExchange
    {
        let answer = StreamedAnswer(provider: endpoint.spec.provider)
        let head = try await client.receive(request, into: answer)
        if Task.isCancelled { return .cancelled }
        let status = Int(head.status.code)
        if let body = answer.passthrough {
            // A server that ignores `stream: true` answers with the whole JSON body: take it as is.
            return .response(status: status, body: redactor?.redact(body) ?? body, firstTokenMs: nil)
        }
        switch answer.end {
        case .error(let message):
            let detail = "error in the stream: " + (redactor?.redact(message) ?? message)
            return .failure(ProviderFailure(kind: .transient, detail: detail, status: status))
        case .malformed(let reason):
            return .failure(ProviderFailure(kind: .transient, detail: "malformed stream: " + (redactor?.redact(reason) ?? reason)))
        case .progress, .content, .done:
            break
        }
        guard let body = answer.assembler.assembled() else {
            return .failure(ProviderFailure(kind: .transient, detail: "malformed stream: it ended before the answer was complete"))
        }
        let firstTokenMs = answer.firstToken.map { ($0 - answer.started).millisecondsDouble }
        return .response(status: status, body: redactor?.redact(body) ?? body, firstTokenMs: firstTokenMs)
    }

    private static func failure(_ error: HTTPClientError, redactor: SecretRedactor?, endpoint: ModelEndpoint) -> ModelExchange {
        if error.code == .cancelled { return .cancelled }
        if let response = error.response {
            let body = redactor?.redact(response.body) ?? response.body
            return .failure(.status(Int(response.status.code), body: body, retryAfter: response.retryAfter))
        }
        let detail =
            switch error.code {
            case .idleTimeout: "no byte received for the idle timeout (idle_timeout_s)"
            case .responseTooLarge: "\(error.detail) (max_response_bytes)"
            case .connect where Self.isLoopback(endpoint.spec.baseURL):
                // The first thing a new user meets when the simulator is not running.
                "\(error.code): \(error.detail): nothing listens at \(endpoint.spec.redactedEndpoint) — start the model's server"
                    + (endpoint.spec.baseURL.contains("127.0.0.1:8711") ? " (the shipped chorus.json's models are served by: chorus sim --port 8711)" : "")
            default: "\(error.code): \(error.detail)"
            }
        return .failure(ProviderFailure(kind: error.isTransient ? .transient : .rejected, detail: detail))
    }
}

/// A streamed answer read as it arrives, in curl's write callback on the loop: events are
/// scanned out of the bytes and their deltas appended to the answer there, with no task
/// switch, no array and no `JSONValue` per event (issue 26: one token per event cost
/// 21.6 µs of loop CPU that way).
///
/// Touched only on the loop thread by the transfer, then read by the caller after
/// `HTTPClient.receive` returned (the transfer's continuation orders the two), hence
/// `@unchecked Sendable`.
private final class StreamedAnswer: HTTPBodyConsumer, @unchecked Sendable {
    var scanner = ServerSentEventScanner()
    var assembler: StreamAssembler
    /// The body as it came, when the server did not stream it.
    var passthrough: [UInt8]?
    /// Why reading ended early (`done`, an error in the stream, a malformed event); `progress` while it runs.
    var end = StreamAssembler.Step.progress
    let started = ContinuousClock.now
    var firstToken: ContinuousClock.Instant?

    init(provider: ProviderKind) { assembler = StreamAssembler(provider: provider) }

    func head(status: Int, headerFields: HTTPFields) {
        if let type = headerFields[.contentType], !type.lowercased().hasPrefix("text/event-stream") { passthrough = [] }
    }

    func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if passthrough != nil {
            passthrough?.append(contentsOf: bytes)
            return true
        }
        return scanner.feed(bytes) { event in
            switch assembler.consume(type: event.type, data: event.data) {
            case .progress: return true
            case .content:
                if firstToken == nil { firstToken = .now }
                return true
            case let step:
                end = step
                return false
            }
        }
    }
}

extension LiveTransport {
    /// Whether `url` names this machine.
    static func isLoopback(_ url: String) -> Bool {
        ["://127.", "://localhost", "://[::1]"].contains { url.contains($0) }
    }
}

extension Duration {
    /// The duration in milliseconds, with a fraction.
    var millisecondsDouble: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}
