import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes
import Logging
import MCP

/// The MCP SDK's transport to a Streamable HTTP server (MCP 2025-03-26 and later), on
/// Chorus's own HTTP client: the SDK builds its `HTTPClientTransport` on URLSession, and only
/// on Apple platforms.
///
/// Each message the client sends is one POST; the server answers a request with one JSON
/// message or with an event stream whose events carry JSON-RPC messages (notifications and
/// requests of its own first, then the response), and a notification or response with 202.
/// The session id the server gives with its answer to `initialize` goes with every later
/// request, as does the protocol version it chose; `disconnect` ends the session with a DELETE.
///
/// Once the session is initialized, one GET stream carries what the server sends of its own
/// accord (a ping, a notification); a server that offers none answers 405 and is not asked
/// again. An answer stream that ends or drops before the response is resumed as the spec
/// says: a GET with `Last-Event-ID`, after the wait the server asked for (`retry:`), a few
/// times, before the request's deadline.
///
/// `send` returns once the server's answer has been read, so a POST that fails fails the
/// request it carried (the SDK's client resumes that request with the error), in one line,
/// never with the headers' values (they may hold a token). A 404 for a session the server no
/// longer knows is `MCPSessionExpired`, which the connection answers with a new session.
actor MCPHTTPTransport: Transport {
    nonisolated let logger = Logger(label: "chorus.mcp.http", factory: { _ in SwiftLogNoOpLogHandler() })
    private let client: HTTPClient
    private let url: String
    private let headers: HTTPFields
    private let timeout: Duration
    private let maxResponseBytes: Int
    private var sessionID: String?
    private var protocolVersion: String?
    private var isConnected = false
    /// The server answered 404 to the session: there is nothing left to DELETE.
    private var sessionExpired = false
    /// Reads the GET stream, from the end of initialization to `disconnect`.
    private var listener: Task<Void, Never>?
    private let stream: AsyncThrowingStream<Data, Swift.Error>
    private let continuation: AsyncThrowingStream<Data, Swift.Error>.Continuation

    static let sessionHeader = HTTPField.Name("Mcp-Session-Id")!  // a valid field name, written out
    static let versionHeader = HTTPField.Name("MCP-Protocol-Version")!
    static let lastEventHeader = HTTPField.Name("Last-Event-ID")!
    /// Reconnections to a stream that brought nothing new, before giving up on it.
    static let reconnectAttempts = 3

    /// A transport to `url`, sending `headers` with every request; each request may take
    /// `timeout`, and its answer may hold `maxResponseBytes`.
    init(client: HTTPClient, url: String, headers: HTTPFields, timeout: Duration, maxResponseBytes: Int) {
        self.client = client
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
        (stream, continuation) = AsyncThrowingStream.makeStream(of: Data.self)
    }

    func connect() async throws {
        isConnected = true
    }

    /// Closes the GET stream and ends the session on the server (a DELETE, which a server may
    /// refuse with 405), then the message stream.
    func disconnect() async {
        guard isConnected else { return }
        isConnected = false
        listener?.cancel()
        listener = nil
        continuation.finish()
        guard let sessionID, !sessionExpired else { return }
        var fields = headers
        fields[Self.sessionHeader] = sessionID
        if let protocolVersion { fields[Self.versionHeader] = protocolVersion }
        _ = try? await client.execute(
            HTTPClientRequest(
                method: .delete, url: url, headerFields: fields, timeout: min(timeout, .seconds(5)), maxResponseBytes: 65536))
    }

    func receive() -> AsyncThrowingStream<Data, Swift.Error> {
        stream
    }

    func send(_ data: Data) async throws {
        guard isConnected else { throw MCPFailure("the MCP session has ended") }
        let deadline = ContinuousClock.now + timeout
        let message = try? JSONValue(parsing: Array(data))
        let method = message?["method"]?.stringValue
        // A request (a method and an id) waits for its response; anything else is accepted.
        let requestID = method != nil ? message?["id"] : nil
        let isInitialize = method == "initialize"
        // A failure names the call it ends: "calling echo: POST URL: …".
        let tool = message?["params"]?["name"]?.stringValue?.prefix(80).filter { !$0.isNewline } ?? "a tool"
        let call = method == "tools/call" ? "calling \(tool): " : ""
        let what = call + endpoint
        var fields = sessionFields()
        fields[.accept] = "application/json, text/event-stream"
        fields[.contentType] = "application/json"
        let request = HTTPClientRequest(
            method: .post, url: url, headerFields: fields, body: Array(data), timeout: timeout,
            connectTimeout: min(timeout, .seconds(10)), maxResponseBytes: maxResponseBytes)
        let response: HTTPStreamingResponse
        do { response = try await client.stream(request) } catch {
            throw failure(error, call)
        }
        if isInitialize, let id = response.headerFields[Self.sessionHeader] {
            guard id.utf8.count <= 1024, id.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                throw MCPFailure("\(endpoint): the server's Mcp-Session-Id is not visible ASCII of at most 1024 bytes")
            }
            sessionID = id
        }
        guard let requestID else {
            // The session is ready once the server has the client's `initialized`.
            if method == "notifications/initialized", listener == nil {
                listener = Task { await self.listen() }
            }
            return  // 202 Accepted, or an answer the spec says to ignore
        }
        let contentType = response.headerFields[.contentType]?.lowercased() ?? ""
        do {
            if contentType.hasPrefix("text/event-stream") {
                var cursor = StreamCursor()
                if try await read(response.body, answering: requestID, isInitialize, &cursor) { return }
                try await resume(requestID, isInitialize, &cursor, what, deadline: deadline)
            } else if contentType.hasPrefix("application/json") {
                var body: [UInt8] = []
                for try await chunk in response.body { body += chunk }
                if try !deliver(body, answering: requestID, isInitialize) {
                    throw MCPFailure("\(what): the server ended its answer without the response to the request")
                }
            } else {
                throw MCPFailure(
                    "\(what): HTTP \(response.status.code) with Content-Type '\(contentType.prefix(80))', not application/json or text/event-stream")
            }
        } catch let error as HTTPClientError {
            throw failure(error, call)
        }
    }

    /// Where a stream is: the last event id seen (what a reconnection resumes from), the wait
    /// the server asked for before one, and how many messages it brought.
    private struct StreamCursor {
        var lastEventID: String?
        var retry: Int?
        var messages = 0
        /// Why the stream ended early, when it dropped rather than ended.
        var drop: String?

        /// The server's `retry:` within sane bounds (50 ms to 10 s); half a second without one.
        var delay: Duration { .milliseconds(retry.map { min(max($0, 50), 10_000) } ?? 500) }
    }

    /// Reads the event stream `body` to its end, or to the response to `requestID`, handing
    /// each message to the client; true when the response came. A connection that drops ends
    /// the reading as the stream's end does (the caller may resume it); a timeout or an answer
    /// past the size cap fails it.
    private func read(
        _ body: AsyncThrowingStream<[UInt8], Swift.Error>, answering requestID: JSONValue?, _ isInitialize: Bool,
        _ cursor: inout StreamCursor
    ) async throws -> Bool {
        var parser = ServerSentEventParser()
        do {
            for try await chunk in body {
                let events = parser.feed(chunk)
                cursor.retry = parser.retry ?? cursor.retry
                for event in events {
                    if let id = event.id, !id.isEmpty, id.utf8.count <= 1024 { cursor.lastEventID = id }
                    // A priming event (an id, no message), or an event of a type MCP does not
                    // send (a server's own keep-alive): nothing for the client.
                    guard !event.data.isEmpty, event.event.isEmpty || event.event == "message" else { continue }
                    // The response ends what this stream is for: it is dropped (the transfer
                    // removed) rather than waited on.
                    let answered = try deliver(Array(event.data.utf8), answering: requestID, isInitialize)
                    // Counted once delivered: a stream of messages that are not JSON-RPC is
                    // fruitless, and gives up, rather than reopened forever.
                    cursor.messages += 1
                    if answered { return true }
                }
            }
        } catch let error as HTTPClientError where [.connectionClosed, .truncatedBody, .transport].contains(error.code) {
            cursor.drop = error.detail
        }
        return false
    }

    /// The answer stream to `requestID` ended before the response: a GET with
    /// `Last-Event-ID` asks the server to replay what followed that event and go on. Up to
    /// `reconnectAttempts` tries in a row that bring nothing new, each after the server's
    /// `retry:` wait, all before `deadline`; a server that cannot resume (no event ids, 404,
    /// 405) fails the request at once.
    private func resume(
        _ requestID: JSONValue, _ isInitialize: Bool, _ cursor: inout StreamCursor, _ what: String,
        deadline: ContinuousClock.Instant
    ) async throws {
        var fruitless = 0
        while true {
            let ended = cursor.drop.map { "the answer stream dropped (\($0.prefix(80)))" } ?? "the answer stream ended"
            guard let lastEventID = cursor.lastEventID else {
                throw MCPFailure("\(what): \(ended) before the response, with no event id to resume from")
            }
            guard fruitless < Self.reconnectAttempts else {
                throw MCPFailure("\(what): \(ended) before the response; \(fruitless) reconnections with Last-Event-ID did not bring it")
            }
            guard ContinuousClock.now + cursor.delay < deadline else {
                throw MCPFailure("\(what): \(ended) before the response, with no time left to resume it")
            }
            try await client.loop.sleep(for: cursor.delay)
            guard isConnected else { throw MCPFailure("\(what): \(ended) before the response, and the session has ended") }
            fruitless += 1
            var fields = sessionFields()
            fields[.accept] = "text/event-stream"
            fields[Self.lastEventHeader] = lastEventID
            let request = HTTPClientRequest(
                method: .get, url: url, headerFields: fields, timeout: max(deadline - ContinuousClock.now, .milliseconds(1)),
                connectTimeout: min(timeout, .seconds(10)), maxResponseBytes: maxResponseBytes)
            let response: HTTPStreamingResponse
            let outcome: Result<HTTPStreamingResponse, HTTPClientError>
            do { outcome = .success(try await client.stream(request)) } catch { outcome = .failure(error) }
            switch outcome {
            case .success(let value): response = value
            case .failure(let error) where error.code == .httpStatus:
                let status = error.response?.status.code ?? 0
                throw MCPFailure("\(what): \(ended) before the response, and the server cannot resume it (GET with Last-Event-ID: HTTP \(status))")
            case .failure(let error) where [.connect, .connectTimeout, .connectionClosed, .transport].contains(error.code):
                cursor.drop = error.detail
                continue
            case .failure(let error): throw MCPFailure("\(what): \(ended) before the response; resuming it failed: \(error.description)")
            }
            guard response.headerFields[.contentType]?.lowercased().hasPrefix("text/event-stream") == true else {
                throw MCPFailure("\(what): \(ended) before the response, and the server's resumption is not an event stream")
            }
            let (before, seen) = (cursor.messages, cursor.lastEventID)
            cursor.drop = nil
            if try await read(response.body, answering: requestID, isInitialize, &cursor) { return }
            if cursor.messages > before || cursor.lastEventID != seen { fruitless = 0 }
        }
    }

    /// The GET stream: messages the server sends of its own accord go to the client as the
    /// answers to POSTs do. A 405 (the server offers no such stream) or any other status ends
    /// it quietly; a stream that ends or drops is reopened from its last event id, until
    /// `reconnectAttempts` reopenings in a row bring nothing. It holds no request up: calls
    /// have their own streams, and `disconnect` cancels it.
    private func listen() async {
        var cursor = StreamCursor()
        var fruitless = 0
        while isConnected, !Task.isCancelled, fruitless < Self.reconnectAttempts {
            var fields = sessionFields()
            fields[.accept] = "text/event-stream"
            if let id = cursor.lastEventID { fields[Self.lastEventHeader] = id }
            let request = HTTPClientRequest(
                method: .get, url: url, headerFields: fields, connectTimeout: min(timeout, .seconds(10)),
                maxResponseBytes: maxResponseBytes)
            let before = cursor.messages
            do {
                let response = try await client.stream(request)
                guard response.headerFields[.contentType]?.lowercased().hasPrefix("text/event-stream") == true else { return }
                _ = try await read(response.body, answering: nil, false, &cursor)
            } catch let error as HTTPClientError where error.code == .httpStatus {
                return
            } catch {
                // A connection refused (the server is restarting), a message that is not
                // JSON-RPC: tried again, a few times.
            }
            fruitless = cursor.messages > before ? 0 : fruitless + 1
            guard (try? await client.loop.sleep(for: cursor.delay)) != nil else { return }
        }
    }

    /// Hands the message(s) in `bytes` to the client; true when one is the response to
    /// `requestID`. Something that is not JSON-RPC ends the request.
    private func deliver(_ bytes: [UInt8], answering requestID: JSONValue?, _ isInitialize: Bool) throws -> Bool {
        guard let value = try? JSONValue(parsing: bytes) else {
            let excerpt = String(decoding: bytes.prefix(80), as: UTF8.self).map { $0.isNewline || $0 == "\t" ? " " : String($0) }.joined()
            throw MCPFailure("\(endpoint): the server sent something that is not JSON: \(excerpt)")
        }
        let messages = value.arrayValue ?? [value]
        var answered = false
        for message in messages {
            guard message.objectValue != nil, message["jsonrpc"]?.stringValue == "2.0" else {
                throw MCPFailure("\(endpoint): the server sent a message that is not JSON-RPC 2.0")
            }
            if let requestID, message["method"] == nil, message["id"] == requestID {
                answered = true
                if isInitialize, let version = message["result"]?["protocolVersion"]?.stringValue,
                    version.utf8.count <= 64, version.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E })
                {
                    protocolVersion = version
                }
            }
        }
        continuation.yield(Data(bytes))
        return answered
    }

    /// The configured headers, with the session id and protocol version once there are.
    private func sessionFields() -> HTTPFields {
        var fields = headers
        if let sessionID { fields[Self.sessionHeader] = sessionID }
        if let protocolVersion { fields[Self.versionHeader] = protocolVersion }
        return fields
    }

    /// The request as errors name it: method and URL without query or credentials.
    private var endpoint: String { "POST \(HTTPClientRequest.redact(url))" }

    /// One line for a failed request (`call` names the tool call it carried): its status, or
    /// what curl said; never a header. A 404
    /// to a request that carried a session id is the server saying it no longer knows it.
    private func failure(_ error: HTTPClientError, _ call: String) -> any Error {
        guard error.code == .httpStatus, let status = error.response?.status else { return MCPFailure(call + error.description) }
        if status.code == 404, sessionID != nil {
            sessionExpired = true
            return MCPSessionExpired(description: "\(call)\(endpoint): HTTP 404 (the server no longer knows this session)")
        }
        return MCPFailure("\(call)\(endpoint): HTTP \(status.code)")
    }
}

/// The server answered 404 to a request in a session: it restarted, or let the session
/// expire. The connection starts a new session once and tries the call again.
struct MCPSessionExpired: Error, CustomStringConvertible {
    var description: String
}
