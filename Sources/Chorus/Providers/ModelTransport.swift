import ChorusIO

/// What came back for one model request, whatever carried it.
public enum ModelExchange: Sendable {
    /// A response with a status below 400: the whole body, or for a streamed call the
    /// body it adds up to, and the milliseconds until the first answer token (streamed calls).
    case response(status: Int, body: [UInt8], firstTokenMs: Double?)
    /// No usable answer: an error status, a transport failure, a broken stream.
    case failure(ProviderFailure)
    /// The calling task was cancelled.
    case cancelled
}

/// How a model request's bytes travel: over HTTP to the provider (`LiveTransport`), from a
/// recorded trace (a replay), or — an application's own — through any client it likes.
/// The body is the provider's request in its own shape (OpenAI chat completions or
/// Anthropic messages, as `endpoint.spec.provider` says); what comes back, in the same
/// shape, is parsed, validated, recorded and priced by Chorus as for its own transports.
public protocol ModelTransport: Sendable {
    /// Sends `body` for step `step`, attempt `attempt`, and returns what came back. A
    /// transport honours task cancellation (returning `.cancelled`) and `timeout`.
    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange
}
