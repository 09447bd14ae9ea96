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
/// `send` returns once the server's answer has been read, so a POST that fails fails the
/// request it carried (the SDK's client resumes that request with the error), in one line,
/// never with the headers' values (they may hold a token).
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
    private let stream: AsyncThrowingStream<Data, Swift.Error>
    private let continuation: AsyncThrowingStream<Data, Swift.Error>.Continuation

    static let sessionHeader = HTTPField.Name("Mcp-Session-Id")!  // a valid field name, written out
    static let versionHeader = HTTPField.Name("MCP-Protocol-Version")!

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

    /// Ends the session on the server (a DELETE, which a server may refuse with 405), then the
    /// message stream.
    func disconnect() async {
        guard isConnected else { return }
        isConnected = false
        continuation.finish()
        guard let sessionID else { return }
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
        let message = try? JSONValue(parsing: Array(data))
        // A request (a method and an id) waits for its response; anything else is accepted.
        let requestID = message?["method"] != nil ? message?["id"] : nil
        let isInitialize = message?["method"]?.stringValue == "initialize"
        var fields = headers
        fields[.accept] = "application/json, text/event-stream"
        fields[.contentType] = "application/json"
        if let sessionID { fields[Self.sessionHeader] = sessionID }
        if let protocolVersion { fields[Self.versionHeader] = protocolVersion }
        let request = HTTPClientRequest(
            method: .post, url: url, headerFields: fields, body: Array(data), timeout: timeout,
            connectTimeout: min(timeout, .seconds(10)), maxResponseBytes: maxResponseBytes)
        let response: HTTPStreamingResponse
        do { response = try await client.stream(request) } catch {
            throw MCPFailure(describe(error))
        }
        if isInitialize, let id = response.headerFields[Self.sessionHeader] {
            guard id.utf8.count <= 1024, id.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                throw MCPFailure("\(endpoint): the server's Mcp-Session-Id is not visible ASCII of at most 1024 bytes")
            }
            sessionID = id
        }
        guard let requestID else { return }  // 202 Accepted, or an answer the spec says to ignore
        let contentType = response.headerFields[.contentType]?.lowercased() ?? ""
        var answered = false
        do {
            if contentType.hasPrefix("text/event-stream") {
                var parser = ServerSentEventParser()
                reading: for try await chunk in response.body {
                    for event in parser.feed(chunk) where !event.data.isEmpty {
                        answered = try deliver(Array(event.data.utf8), answering: requestID, isInitialize) || answered
                        // The response ends what this POST is for: the stream is dropped (the
                        // transfer removed) rather than waited on.
                        if answered { break reading }
                    }
                }
            } else if contentType.hasPrefix("application/json") {
                var body: [UInt8] = []
                for try await chunk in response.body { body += chunk }
                answered = try deliver(body, answering: requestID, isInitialize)
            } else {
                throw MCPFailure(
                    "\(endpoint): HTTP \(response.status.code) with Content-Type '\(contentType.prefix(80))', not application/json or text/event-stream")
            }
        } catch let error as HTTPClientError {
            throw MCPFailure(describe(error))
        }
        if !answered { throw MCPFailure("\(endpoint): the server ended its answer without the response to the request") }
    }

    /// Hands the message(s) in `bytes` to the client; true when one is the response to
    /// `requestID`. Something that is not JSON-RPC ends the request.
    private func deliver(_ bytes: [UInt8], answering requestID: JSONValue, _ isInitialize: Bool) throws -> Bool {
        guard let value = try? JSONValue(parsing: bytes) else {
            throw MCPFailure("\(endpoint): the server sent something that is not JSON: \(String(decoding: bytes.prefix(80), as: UTF8.self))")
        }
        let messages = value.arrayValue ?? [value]
        var answered = false
        for message in messages {
            guard message.objectValue != nil, message["jsonrpc"]?.stringValue == "2.0" else {
                throw MCPFailure("\(endpoint): the server sent a message that is not JSON-RPC 2.0")
            }
            if message["method"] == nil, message["id"] == requestID {
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

    /// The request as errors name it: method and URL without query or credentials.
    private var endpoint: String { "POST \(HTTPClientRequest.redact(url))" }

    /// One line for a failed request: its status, or what curl said; never a header.
    private func describe(_ error: HTTPClientError) -> String {
        guard error.code == .httpStatus, let status = error.response?.status else { return error.description }
        let expired = status.code == 404 && sessionID != nil ? " (the server no longer knows this session)" : ""
        return "\(endpoint): HTTP \(status.code)\(expired)"
    }
}
