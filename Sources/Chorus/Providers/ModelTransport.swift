import ChorusIO

/// What came back for one model request, whatever carried it.
enum ModelExchange: Sendable {
    /// A response with a status below 400.
    case response(status: Int, body: [UInt8])
    /// No usable response: an error status (with its body) or a transport failure.
    case failure(detail: String, status: Int?, body: [UInt8]?, transient: Bool, retryAfter: Duration?)
    /// The calling task was cancelled.
    case cancelled
}

/// How a model request's bytes travel: over HTTP to the provider, or from a recorded trace.
protocol ModelTransport: Sendable {
    /// Sends `body` for step `step`, attempt `attempt`, and returns what came back.
    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange
}

/// The real thing: the request goes to the provider through the shared HTTP client.
struct LiveTransport: ModelTransport {
    let client: HTTPClient

    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        let request: HTTPClientRequest
        do { request = try endpoint.httpRequest(body: body, timeout: timeout) } catch {
            return .failure(detail: error.description, status: nil, body: nil, transient: false, retryAfter: nil)
        }
        do {
            let response = try await client.execute(request)
            return .response(status: Int(response.status.code), body: response.body)
        } catch {
            if error.code == .cancelled { return .cancelled }
            let detail = error.response.map { "HTTP \($0.status.code)" } ?? "\(error.code): \(error.detail)"
            return .failure(detail: detail, status: error.response.map { Int($0.status.code) }, body: error.response?.body,
                            transient: error.isTransient, retryAfter: error.response?.retryAfter)
        }
    }
}
