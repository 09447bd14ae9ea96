import ChorusIO

/// The real thing: the request goes to the provider through the shared HTTP client,
/// streamed (server-sent events, assembled into the non-streamed body) when the model
/// streams. Whatever comes back has the model's API key removed before anyone sees it.
struct LiveTransport: ModelTransport {
    let client: HTTPClient

    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
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
        let started = ContinuousClock.now
        let response = try await client.stream(request)
        if let type = response.headerFields[.contentType], !type.lowercased().hasPrefix("text/event-stream") {
            // A server that ignores `stream: true` answers with the whole JSON body: take it as is.
            var body: [UInt8] = []
            do { for try await chunk in response.body { body += chunk } } catch let error as HTTPClientError { throw error } catch {
                return .failure(ProviderFailure(kind: .transient, detail: "response failed: \(error)"))
            }
            if Task.isCancelled { return .cancelled }
            return .response(status: Int(response.status.code), body: redactor?.redact(body) ?? body, firstTokenMs: nil)
        }
        var assembler = StreamAssembler(provider: endpoint.spec.provider)
        var firstTokenMs: Double?
        do {
            events: for try await event in response.events {
                switch assembler.consume(event) {
                case .progress: continue
                case .content: if firstTokenMs == nil { firstTokenMs = (ContinuousClock.now - started).millisecondsDouble }
                case .done: break events
                case .error(let message):
                    let detail = "error in the stream: " + (redactor?.redact(message) ?? message)
                    return .failure(ProviderFailure(kind: .transient, detail: detail, status: Int(response.status.code)))
                case .malformed(let reason):
                    return .failure(ProviderFailure(kind: .transient, detail: "malformed stream: " + (redactor?.redact(reason) ?? reason)))
                }
            }
        } catch let error as HTTPClientError {
            throw error
        } catch {
            return .failure(ProviderFailure(kind: .transient, detail: "stream failed: \(error)"))
        }
        if Task.isCancelled { return .cancelled }
        guard let body = assembler.assembled() else {
            return .failure(ProviderFailure(kind: .transient, detail: "malformed stream: it ended before the answer was complete"))
        }
        return .response(status: Int(response.status.code), body: redactor?.redact(body) ?? body, firstTokenMs: firstTokenMs)
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
