import ChorusIO
import Foundation
import HTTPTypes
import Testing

/// Runs `body` with a fresh event loop, shut down afterwards.
func withLoop<T>(_ body: (EventLoop) async throws -> T) async throws -> T {
    let loop = try EventLoop(name: "test-loop")
    defer { loop.shutdown() }
    return try await body(loop)
}

/// Creates an HTTP client on `loop` (clients are created on the loop thread).
func makeClient(_ loop: EventLoop, maxConnectionsPerHost: Int = 1024) throws -> HTTPClient {
    try HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: maxConnectionsPerHost, maxIdleConnections: max(1024, maxConnectionsPerHost)))
}

/// Polls `condition` every 5 ms on `loop`'s timers until it holds or `limit` passes.
func eventually(_ loop: EventLoop, within limit: Duration = .seconds(5), _ condition: @Sendable () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try await loop.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A loopback server with the routes the HTTP client tests need.
final class TestServer: @unchecked Sendable {
    let loop: EventLoop
    private(set) var server: HTTPServer!
    var port: Int { loop.runBlocking { self.server.port } }
    var connectionCount: Int { loop.runBlocking { self.server.connectionCount } }
    var peakConnectionCount: Int { loop.runBlocking { self.server.peakConnectionCount } }
    var url: String { "http://127.0.0.1:\(port)" }
    static let bigBody: [UInt8] = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    init() {
        loop = try! EventLoop(name: "test-server")  // test fixture: no descriptors left is a broken machine
        server = loop.runBlocking { [loop] in
            try! HTTPServer.start(on: loop, port: 0) { request, writer in
                TestServer.route(request, writer, loop: loop)
            }
        }
    }

    private let closed = NSLock()
    private var isShutDown = false

    func shutdown() {
        let first = closed.withLock { () -> Bool in
            defer { isShutDown = true }; return !isShutDown
        }
        guard first else { return }
        loop.runBlocking { self.server.close() }
        loop.shutdown()
    }

    /// Stops the loop if a test threw before `shutdown()`, so no loop thread outlives it.
    deinit { shutdown() }

    private static func route(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter, loop: EventLoop) {
        let json: HTTPFields = [.contentType: "application/json"]
        switch request.path {
        case "/json":
            writer.respond(status: .ok, headerFields: json, body: Array(#"{"ok":true,"n":42}"#.utf8))
        case "/big":
            writer.respond(status: .ok, body: bigBody)
        case "/echo":
            writer.respond(status: .ok, body: request.body)
        case "/slow":
            Timer.schedule(on: loop, after: .milliseconds(20)) {
                writer.respond(status: .ok, body: Array("slow".utf8))
            }
        case "/hang":
            break
        case "/truncate":
            writer.startStream(status: .ok, contentLength: 1000)
            writer.write([UInt8](repeating: 65, count: 500))
            writer.abort()
        case "/close":
            writer.abort()
        case "/ratelimited":
            writer.respond(status: .tooManyRequests, headerFields: [.retryAfter: "2"], body: Array("slow down".utf8))
        case "/sse":
            writer.startStream(status: .ok, headerFields: [.contentType: "text/event-stream"])
            sendEvents(writer, loop: loop, remaining: 5, index: 0)
        case "/endless":
            writer.startStream(status: .ok)
            sendChunks(writer, loop: loop)
        case "/big-error":
            writer.respond(status: .internalServerError, body: bigBody)
        case "/sse-forever":
            writer.startStream(status: .ok, headerFields: [.contentType: "text/event-stream"])
            sendEvents(writer, loop: loop, remaining: Int.max, index: 0)
        case "/sse-then-hang":
            // A whole answer, then the body is never ended (a server that keeps the stream open).
            writer.startStream(status: .ok, headerFields: [.contentType: "text/event-stream"])
            writer.write(Array("data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: [DONE]\n\n".utf8))
        default:
            writer.respond(status: .notFound, body: [])
        }
    }

    /// 64 KB every millisecond until the client goes away.
    private static func sendChunks(_ writer: HTTPResponseWriter, loop: EventLoop) {
        guard writer.isOpen else { return }
        writer.write([UInt8](repeating: 66, count: 65_536))
        Timer.schedule(on: loop, after: .milliseconds(1)) { sendChunks(writer, loop: loop) }
    }

    /// One event every 2 ms, split across writes to exercise the incremental parser.
    private static func sendEvents(_ writer: HTTPResponseWriter, loop: EventLoop, remaining: Int, index: Int) {
        guard writer.isOpen else { return }
        if remaining == 0 {
            writer.write(Array("data: [DONE]\n\n".utf8))
            writer.end()
            return
        }
        writer.write(Array("event: tick\ndata: {\"i\":".utf8))
        writer.write(Array("\(index)}\n\n".utf8))
        Timer.schedule(on: loop, after: .milliseconds(2)) {
            sendEvents(writer, loop: loop, remaining: remaining - 1, index: index + 1)
        }
    }
}
