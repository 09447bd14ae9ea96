import HTTPTypes

/// Writes the response to one request: whole (`respond`) or streamed (`startStream`,
/// `write`, `end`). Loop thread only. Once the connection is gone, writes are ignored.
public final class HTTPResponseWriter {
    private enum State { case idle, streaming(chunked: Bool), ended }

    private weak var connection: HTTPServerConnection?
    private let keepAlive: Bool
    private var state = State.idle
    private var finishHandler: ((Bool) -> Void)?

    init(connection: HTTPServerConnection, keepAlive: Bool) {
        self.connection = connection
        self.keepAlive = keepAlive
    }

    /// Whether the connection is still open, so a response can still reach the client.
    public var isOpen: Bool { connection.map { !$0.isClosed } ?? false }

    /// Registers `handler`, called once: with true when the response has ended, with
    /// false when the connection closed first.
    public func onFinish(_ handler: @escaping (Bool) -> Void) {
        finishHandler = handler
    }

    /// Sends a complete response with a Content-Length body.
    public func respond(status: HTTPResponse.Status, headerFields: HTTPFields = [:], body: [UInt8]) {
        guard case .idle = state else { return }
        var head = self.head(status: status, headerFields: headerFields)
        head += "Content-Length: \(body.count)\r\n\r\n"
        var bytes = Array(head.utf8)
        bytes.append(contentsOf: body)
        connection?.write(bytes)
        finish(ended: true)
    }

    /// Sends the head of a streamed response. With `contentLength` the body is sent raw
    /// and must add up to it; without, it is sent with chunked transfer encoding.
    public func startStream(status: HTTPResponse.Status, headerFields: HTTPFields = [:], contentLength: Int? = nil) {
        guard case .idle = state else { return }
        var head = self.head(status: status, headerFields: headerFields)
        if let contentLength {
            head += "Content-Length: \(contentLength)\r\n\r\n"
        } else {
            head += "Transfer-Encoding: chunked\r\n\r\n"
        }
        state = .streaming(chunked: contentLength == nil)
        connection?.write(Array(head.utf8))
    }

    /// Sends part of a streamed body.
    public func write(_ bytes: [UInt8]) {
        guard case .streaming(let chunked) = state, !bytes.isEmpty else { return }
        if chunked {
            var framed = Array((String(bytes.count, radix: 16) + "\r\n").utf8)
            framed.append(contentsOf: bytes)
            framed.append(contentsOf: [13, 10])
            connection?.write(framed)
        } else {
            connection?.write(bytes)
        }
    }

    /// Ends a streamed response.
    public func end() {
        guard case .streaming(let chunked) = state else { return }
        if chunked { connection?.write(Array("0\r\n\r\n".utf8)) }
        finish(ended: true)
    }

    /// Closes the connection without finishing the response: the client sees a
    /// truncated body or no response at all. For fault injection and tests.
    public func abort() {
        guard let connection else { return }
        if case .ended = state { return }
        state = .ended
        connection.shutdownAndClose()
        let handler = finishHandler
        finishHandler = nil
        handler?(false)
    }

    private func head(status: HTTPResponse.Status, headerFields: HTTPFields) -> String {
        var head = "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n"
        for field in headerFields { head += "\(field.name.rawName): \(field.value)\r\n" }
        head += keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n"
        return head
    }

    private func finish(ended: Bool) {
        state = .ended
        let handler = finishHandler
        finishHandler = nil
        handler?(ended)
        connection?.responseEnded(self, keepAlive: keepAlive)
    }

    func connectionClosed() {
        if case .ended = state { return }
        state = .ended
        let handler = finishHandler
        finishHandler = nil
        handler?(false)
    }
}
