import HTTPTypes

/// An HTTP request for `HTTPClient`: method, absolute URL, header fields, body, timeouts.
public struct HTTPClientRequest: Sendable {
    /// The request method (GET, POST, …).
    public var method: HTTPRequest.Method
    /// The absolute URL, `http://` or `https://`.
    public var url: String
    /// Header fields sent as given (curl adds Host and Content-Length).
    public var headerFields: HTTPFields
    /// The request body; empty for none.
    public var body: [UInt8]
    /// Limit on the whole transfer, from start to last byte; nil for none.
    public var timeout: Duration?
    /// Limit on establishing the connection; nil for curl's default (300 s).
    public var connectTimeout: Duration?

    /// A request with the given parts; GET with no body unless told otherwise.
    public init(method: HTTPRequest.Method = .get, url: String, headerFields: HTTPFields = [:],
                body: [UInt8] = [], timeout: Duration? = nil, connectTimeout: Duration? = nil) {
        self.method = method
        self.url = url
        self.headerFields = headerFields
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
    }

    /// The URL without its query string or user info, safe to show in logs and errors
    /// (some providers take API keys as query parameters).
    public var redactedURL: String { HTTPClientRequest.redact(url) }

    /// `url` without its query string or user info.
    public static func redact(_ url: String) -> String {
        var result = Substring(url)
        if let query = result.firstIndex(where: { $0 == "?" || $0 == "#" }) { result = result[..<query] }
        if let scheme = result.range(of: "://"),
           let at = result[scheme.upperBound...].firstIndex(of: "@"),
           !result[scheme.upperBound..<at].contains("/") {
            result = result[..<scheme.upperBound] + result[result.index(after: at)...]
        }
        return String(result)
    }
}

/// A complete HTTP response: status, header fields and the whole body.
public struct HTTPClientResponse: Sendable {
    /// The final status (after any 1xx interim responses).
    public var status: HTTPResponse.Status
    /// The final response's header fields.
    public var headerFields: HTTPFields
    /// The body as received.
    public var body: [UInt8]

    /// Creates a response value; `HTTPClient` is the usual source.
    public init(status: HTTPResponse.Status, headerFields: HTTPFields, body: [UInt8]) {
        self.status = status
        self.headerFields = headerFields
        self.body = body
    }

    /// The `Retry-After` header as a duration, when it holds delay-seconds.
    public var retryAfter: Duration? {
        guard let value = headerFields[.retryAfter],
              let seconds = Double(value.trimmingCharacters(in: " \t")), seconds >= 0 else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }
}

/// The head of a streamed response and its body as an async sequence of byte chunks.
public struct HTTPStreamingResponse: Sendable {
    /// The final status; always below 400 (an error status ends in `HTTPClientError.httpStatus`).
    public var status: HTTPResponse.Status
    /// The response's header fields.
    public var headerFields: HTTPFields
    /// Body chunks as curl delivers them; the sequence throws `HTTPClientError` on failure.
    public var body: AsyncThrowingStream<[UInt8], Error>
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return s
    }
}

extension Double {
    fileprivate init?(_ s: Substring) { self.init(String(s)) }
}
