import Glibc

/// One server-sent event: its type (`event:`), data lines joined with newlines, and id.
public struct ServerSentEvent: Equatable, Sendable {
    /// The event type; "message" when the stream gave none.
    public var event: String
    /// The data lines, joined by "\n".
    public var data: String
    /// The last `id:` seen, if any.
    public var id: String?
}

/// One event as `ServerSentEventScanner` hands it over: views of the scanner's buffers,
/// valid only during the call that receives them (nothing is copied per event).
public struct ServerSentEventView {
    /// The `event:` field; empty when the stream gave none (the type is then "message").
    public let type: UnsafeBufferPointer<UInt8>
    /// The data lines, joined by "\n".
    public let data: UnsafeBufferPointer<UInt8>
    /// The last `id:` seen, if any.
    public let id: UnsafeBufferPointer<UInt8>?
}

/// Incremental scanner for the `text/event-stream` format (WHATWG HTML, §9.2): fed byte
/// chunks as they arrive, split anywhere, it hands each complete event to a closure as
/// views of its own buffers, reused from event to event. The format's grammar lives here
/// only: `ServerSentEventParser` builds its `ServerSentEvent` values on it.
public struct ServerSentEventScanner: Sendable {
    /// A line cut by the end of a chunk, completed by the next.
    private var partial: [UInt8] = []
    private var lastWasCR = false
    private var atStart = true
    private var type: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var lastID: [UInt8]?
    /// The reconnection time the stream last asked for (`retry:`), in milliseconds; nil
    /// until it asks.
    public private(set) var retry: Int?

    /// An empty scanner.
    public init() {}

    /// Consumes `chunk`, calling `onEvent` for each event it completes, in order; stops
    /// and returns false as soon as `onEvent` does.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ onEvent: (ServerSentEventView) -> Bool) -> Bool {
        let bytes = chunk.bindMemory(to: UInt8.self)
        guard let base = bytes.baseAddress else { return true }
        var lineStart = 0
        while lineStart < bytes.count {
            // CRLF: the CR already ended the line, so its LF ends nothing.
            if lastWasCR {
                lastWasCR = false
                if bytes[lineStart] == 10 {
                    lineStart += 1
                    continue
                }
            }
            // The line's end: memchr for the LF, then for a CR before it (streams end lines
            // with LF; byte by byte, this loop cost a tenth of a streamed event's handling).
            let rest = bytes.count - lineStart
            let lf = memchr(base + lineStart, 10, rest).map { UnsafeRawPointer($0) - UnsafeRawPointer(base + lineStart) } ?? rest
            let cr = memchr(base + lineStart, 13, lf).map { UnsafeRawPointer($0) - UnsafeRawPointer(base + lineStart) } ?? lf
            let end = lineStart + min(lf, cr)
            guard end < bytes.count else { break }
            lastWasCR = bytes[end] == 13
            let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<end])
            let go: Bool
            if partial.isEmpty {
                go = endLine(line, onEvent)
            } else {
                partial.append(contentsOf: line)
                go = partial.withUnsafeBufferPointer { endLine($0, onEvent) }
                partial.removeAll(keepingCapacity: true)
            }
            lineStart = end + 1
            if !go { return false }
        }
        if lineStart < bytes.count { partial.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[lineStart...])) }
        return true
    }

    /// Ends the stream: an event not followed by a blank line is discarded, per the spec.
    public mutating func finish() {
        partial.removeAll()
        data.removeAll()
        hasData = false
        type.removeAll()
    }

    private mutating func endLine(_ whole: UnsafeBufferPointer<UInt8>, _ onEvent: (ServerSentEventView) -> Bool) -> Bool {
        var line = whole
        if atStart {
            atStart = false
            if line.starts(with: [0xEF, 0xBB, 0xBF]) { line = UnsafeBufferPointer(rebasing: line[3...]) }
        }
        if line.isEmpty {
            defer { type.removeAll(keepingCapacity: true) }
            guard hasData else { return true }
            hasData = false
            defer { data.removeAll(keepingCapacity: true) }
            return type.withUnsafeBufferPointer { type in
                data.withUnsafeBufferPointer { data in
                    guard let lastID else { return onEvent(ServerSentEventView(type: type, data: data, id: nil)) }
                    return lastID.withUnsafeBufferPointer { onEvent(ServerSentEventView(type: type, data: data, id: $0)) }
                }
            }
        }
        if line[0] == UInt8(ascii: ":") { return true }  // a comment
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.count
        let field = UnsafeBufferPointer(rebasing: line[..<colon])
        var valueStart = min(colon + 1, line.count)
        if valueStart < line.count, line[valueStart] == 32 { valueStart += 1 }
        let value = UnsafeBufferPointer(rebasing: line[valueStart...])
        if field.elementsEqual("data".utf8) {
            if hasData { data.append(10) }
            data.append(contentsOf: value)
            hasData = true
        } else if field.elementsEqual("event".utf8) {
            type.removeAll(keepingCapacity: true)
            type.append(contentsOf: value)
        } else if field.elementsEqual("id".utf8), !value.contains(0) {
            lastID = Array(value)
        } else if field.elementsEqual("retry".utf8), !value.isEmpty, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
            retry = value.count > 9 ? 999_999_999 : Int(String(decoding: value, as: UTF8.self))
        }
        // Unknown fields are ignored.
        return true
    }
}

/// Incremental parser for the `text/event-stream` format: feed it byte chunks as they
/// arrive, split anywhere, and take the complete events as values.
public struct ServerSentEventParser: Sendable {
    private var scanner = ServerSentEventScanner()

    /// An empty parser.
    public init() {}

    /// The reconnection time the stream last asked for (`retry:`), in milliseconds; nil
    /// until it asks.
    public var retry: Int? { scanner.retry }

    /// Consumes `chunk` and returns the events it completed, in order.
    public mutating func feed<C: Collection>(_ chunk: C) -> [ServerSentEvent] where C.Element == UInt8 {
        var events: [ServerSentEvent] = []
        Array(chunk).withUnsafeBytes { bytes in
            _ = scanner.feed(bytes) { event in
                events.append(
                    ServerSentEvent(
                        event: event.type.isEmpty ? "message" : String(decoding: event.type, as: UTF8.self),
                        data: String(decoding: event.data, as: UTF8.self), id: event.id.map { String(decoding: $0, as: UTF8.self) }))
                return true
            }
        }
        return events
    }

    /// Ends the stream: an event not followed by a blank line is discarded, per the spec.
    public mutating func finish() {
        scanner.finish()
    }
}

/// Server-sent events parsed from a body stream, lazily, on the consumer's executor.
public struct ServerSentEventStream: AsyncSequence, Sendable {
    public typealias Element = ServerSentEvent
    let body: AsyncThrowingStream<[UInt8], Error>

    /// Reads events from `body`.
    public init(body: AsyncThrowingStream<[UInt8], Error>) {
        self.body = body
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: AsyncThrowingStream<[UInt8], Error>.AsyncIterator
        var parser = ServerSentEventParser()
        var pending: [ServerSentEvent] = []
        var index = 0

        public mutating func next() async throws -> ServerSentEvent? {
            while index == pending.count {
                guard let chunk = try await chunks.next() else {
                    parser.finish()
                    return nil
                }
                pending = parser.feed(chunk)
                index = 0
            }
            defer { index += 1 }
            return pending[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: body.makeAsyncIterator())
    }
}

extension HTTPStreamingResponse {
    /// The body parsed as server-sent events, each delivered as soon as it is complete.
    public var events: ServerSentEventStream { ServerSentEventStream(body: body) }
}
