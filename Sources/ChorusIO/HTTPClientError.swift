/// Why an HTTP request failed. A struct around a private code so that new cases do not
/// break callers; compare with the static members (`error.code == .timeout`).
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure, stable enough to map to retry policy or an exit status.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String {
            case dns, connect, connectTimeout, timeout, idleTimeout, httpStatus,
                truncatedBody, connectionClosed, cancelled, invalidRequest, transport,
                responseTooLarge
        }
        fileprivate let base: Base
        /// The host name could not be resolved.
        public static let dns = Code(base: .dns)
        /// The connection was refused or could not be established.
        public static let connect = Code(base: .connect)
        /// The connect timeout passed before a connection was made.
        public static let connectTimeout = Code(base: .connectTimeout)
        /// The request's total timeout passed.
        public static let timeout = Code(base: .timeout)
        /// No byte arrived for the request's idle timeout (a stalled stream).
        public static let idleTimeout = Code(base: .idleTimeout)
        /// The server answered with a status of 400 or more; `response` holds it.
        public static let httpStatus = Code(base: .httpStatus)
        /// The connection ended before the body announced by the server was complete.
        public static let truncatedBody = Code(base: .truncatedBody)
        /// The server closed or reset the connection without a complete response.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// The calling task was cancelled; the transfer was removed.
        public static let cancelled = Code(base: .cancelled)
        /// The request itself was unusable (a malformed URL, say).
        public static let invalidRequest = Code(base: .invalidRequest)
        /// The body passed the request's `maxResponseBytes`; the transfer was aborted.
        public static let responseTooLarge = Code(base: .responseTooLarge)
        /// Any other transport failure; `curlCode` says which.
        public static let transport = Code(base: .transport)
        public var description: String { base.rawValue }
    }

    /// What kind of failure this is.
    public let code: Code
    /// The request's method and URL, with query string and credentials removed.
    public let request: String
    /// curl's result code, when curl reported the failure.
    public let curlCode: Int?
    /// A human-readable detail from curl or the status line.
    public let detail: String
    /// The response, for `.httpStatus` failures (status, headers such as Retry-After, body).
    public let response: HTTPClientResponse?

    init(_ code: Code, request: String, curlCode: Int? = nil, detail: String, response: HTTPClientResponse? = nil) {
        self.code = code
        self.request = request
        self.curlCode = curlCode
        self.detail = detail
        self.response = response
    }

    /// Whether retrying the same request may succeed: connection failures, timeouts,
    /// truncated bodies, 408, 429 and 5xx.
    public var isTransient: Bool {
        switch code.base {
        case .dns, .connect, .connectTimeout, .timeout, .idleTimeout, .truncatedBody, .connectionClosed, .transport: return true
        case .httpStatus:
            let status = response?.status.code ?? 0
            return status == 408 || status == 429 || status >= 500
        case .cancelled, .invalidRequest, .responseTooLarge: return false
        }
    }

    public var description: String { "\(request): \(detail)" }
}
