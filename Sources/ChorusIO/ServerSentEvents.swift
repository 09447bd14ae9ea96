/// One server-sent event: its type (`event:`), data lines joined with newlines, and id.
public struct ServerSentEvent: Equatable, Sendable {
    /// The event type; "message" when the stream gave none.
    public var event: String
    /// The data lines, joined by "\n".
    public var data: String
    /// The last `id:` seen, if any.
    public var id: String?
}

/// Incremental parser for the `text/event-stream` format (WHATWG HTML, §9.2): feed it
/// byte chunks as they arrive, split anywhere, and take the complete events.
public struct ServerSentEventParser: Sendable {
    private var line: [UInt8] = []
    private var lastWasCR = false
    private var eventType = ""
    private var dataLines: [String] = []
    private var hasData = false
    private var lastID: String?
    private var atStart = true

    /// An empty parser.
    public init() {}

    /// Consumes `chunk` and returns the events it completed, in order.
    public mutating func feed<C: Collection>(_ chunk: C) -> [ServerSentEvent] where C.Element == UInt8 {
        var events: [ServerSentEvent] = []
        for byte in chunk {
            if lastWasCR {
                lastWasCR = false
                if byte == 10 { continue }  // CRLF: the CR already ended the line
            }
            if byte == 10 || byte == 13 {
                lastWasCR = byte == 13
                if let event = endLine() { events.append(event) }
            } else {
                line.append(byte)
            }
        }
        return events
    }

    /// Ends the stream: an event not followed by a blank line is discarded, per the spec.
    public mutating func finish() {
        line.removeAll()
        dataLines.removeAll()
        hasData = false
        eventType = ""
    }

    private mutating func endLine() -> ServerSentEvent? {
        defer { line.removeAll(keepingCapacity: true) }
        if atStart {
            atStart = false
            if line.starts(with: [0xEF, 0xBB, 0xBF]) { line.removeFirst(3) }
        }
        if line.isEmpty {
            guard hasData else {
                eventType = ""
                return nil
            }
            let event = ServerSentEvent(
                event: eventType.isEmpty ? "message" : eventType,
                data: dataLines.joined(separator: "\n"), id: lastID)
            dataLines.removeAll()
            hasData = false
            eventType = ""
            return event
        }
        if line.first == UInt8(ascii: ":") { return nil }  // a comment
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = String(decoding: line[..<(colon ?? line.count)], as: UTF8.self)
        var valueStart = colon.map { $0 + 1 } ?? line.count
        if valueStart < line.count, line[valueStart] == 32 { valueStart += 1 }
        let value = String(decoding: line[valueStart...], as: UTF8.self)
        switch field {
        case "event": eventType = value
        case "data":
            dataLines.append(value)
            hasData = true
        case "id" where !value.contains("\0"): lastID = value
        default: break  // "retry" and unknown fields are ignored
        }
        return nil
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
