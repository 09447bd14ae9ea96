import Glibc
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
    /// Ends the transfer when no byte arrives for this long (whole seconds, at least 1):
    /// a stalled stream fails long before `timeout`. Nil for none.
    public var idleTimeout: Duration?
    /// The most body bytes accepted, counted as they arrive (streamed or not): past it the
    /// transfer is aborted with `.responseTooLarge`. Nil for no limit.
    public var maxResponseBytes: Int?

    /// A request with the given parts; GET with no body unless told otherwise.
    public init(
        method: HTTPRequest.Method = .get, url: String, headerFields: HTTPFields = [:],
        body: [UInt8] = [], timeout: Duration? = nil, connectTimeout: Duration? = nil, idleTimeout: Duration? = nil,
        maxResponseBytes: Int? = nil
    ) {
        self.maxResponseBytes = maxResponseBytes
        self.method = method
        self.url = url
        self.headerFields = headerFields
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
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
            !result[scheme.upperBound..<at].contains("/")
        {
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

    /// How long the server asks the client to wait before retrying, from the first of
    /// `retry-after-ms` (OpenAI), `Retry-After` (seconds or an HTTP date, RFC 9110 §10.2.3)
    /// and the `llm_provider-` forms of both that LiteLLM forwards from its upstream.
    public var retryAfter: Duration? { RetryAfter.parse(headerFields) }
}

/// Reads a server's retry hint from response header fields.
public enum RetryAfter {
    /// The delay the fields ask for, or nil when they ask for none (or it cannot be read).
    /// `now` is the current time in seconds since 1970, for HTTP-date values.
    public static func parse(_ fields: HTTPFields, now: Double = Double(time(nil))) -> Duration? {
        for prefix in ["", "llm_provider-"] {
            if let name = HTTPField.Name(prefix + "retry-after-ms"), let value = fields[name],
                let ms = Double(value.trimmingCharacters(in: " \t")), ms.isFinite, ms >= 0
            {
                return .milliseconds(Int64(min(ms, 86_400_000)))
            }
            if let name = HTTPField.Name(prefix + "retry-after"), let value = fields[name] {
                let text = value.trimmingCharacters(in: " \t")
                if let seconds = Double(text), seconds.isFinite, seconds >= 0 {
                    return .milliseconds(Int64(min(seconds, 86_400) * 1000))
                }
                if let date = httpDate(String(text)) { return .milliseconds(Int64(max(0, min(date - now, 86_400)) * 1000)) }
            }
        }
        return nil
    }

    /// Seconds since 1970 for an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form
    /// RFC 9110 requires senders to use.
    static func httpDate(_ text: String) -> Double? {
        // Parsed by hand: Glibc's strptime is not visible to Swift, and the format is fixed.
        let fields = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[5] == "GMT", let day = Int(fields[1]), let month = months.firstIndex(of: String(fields[2])),
            let year = Int(fields[3]), (1970...9999).contains(year), (1...31).contains(day)
        else { return nil }
        let clock = fields[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3, (0...23).contains(clock[0]), (0...59).contains(clock[1]), (0...60).contains(clock[2]) else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(clock[0])
        parts.tm_min = Int32(clock[1])
        parts.tm_sec = Int32(clock[2])
        return Double(timegm(&parts))
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

/// The head of a response whose body went to an `HTTPBodyConsumer`.
public struct HTTPResponseHead: Sendable {
    /// The final status; always below 400 (an error status ends in `HTTPClientError.httpStatus`).
    public var status: HTTPResponse.Status
    /// The response's header fields.
    public var headerFields: HTTPFields
}

/// Takes a response's body on the loop thread, chunk by chunk, inside curl's write callback:
/// no task hop and no copy per chunk. For bodies of many small parts read as they arrive
/// (an answer streamed one token per server-sent event): `HTTPClient.stream`'s async
/// sequence costs a task switch and an array per chunk.
///
/// Called only on the loop thread, and never after the `receive` call that was given it has
/// returned: the consumer's state needs no lock.
public protocol HTTPBodyConsumer: AnyObject, Sendable {
    /// The final response head (a status below 400), before any body.
    func head(status: Int, headerFields: HTTPFields)
    /// The next bytes of the body, valid only during the call. False when the consumer has
    /// all it needs: the transfer then ends early, as a success.
    func body(_ bytes: UnsafeRawBufferPointer) -> Bool
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
