import ChorusIO

/// Sends streamed answers at a pace of tokens per second, every stream of a simulator on
/// one loop timer. Streams wait in a min-heap ordered by when their next event is due;
/// each firing writes every event that has come due (a stream's several in one write) and
/// arms the timer again for the earliest left. A thousand streams at 50 tokens/s are
/// 50,000 events a second but at most one firing per millisecond (libuv's resolution), so
/// the cost is the writes themselves, not timers. Loop thread only.
final class StreamPacer {
    private final class Stream {
        let writer: HTTPResponseWriter
        let events: [StreamEvent]
        let started: ContinuousClock.Instant
        /// The next event to send, and the tokens carried by the events before it.
        var next = 0
        var tokensSent = 0

        init(writer: HTTPResponseWriter, events: [StreamEvent], started: ContinuousClock.Instant) {
            self.writer = writer
            self.events = events
            self.started = started
        }
    }

    private struct Entry {
        var due: ContinuousClock.Instant
        /// Arrival order, so streams due at the same instant go out first come, first served.
        var order: UInt64
        var stream: Stream

        func precedes(_ other: Entry) -> Bool { due < other.due || (due == other.due && order < other.order) }
    }

    private let loop: EventLoop
    private let secondsPerToken: Double
    private var heap: [Entry] = []
    private var arrivals: UInt64 = 0
    private var timer: Timer?
    private var armedFor: ContinuousClock.Instant?

    /// A pacer for `tokensPerSecond` tokens a second per stream (more than 0).
    init(loop: EventLoop, tokensPerSecond: Double) {
        self.loop = loop
        secondsPerToken = 1 / tokensPerSecond
    }

    /// Sends `events` on `writer`, whose streamed response has started: the events up to
    /// and including the first one carrying tokens go now, each later one once the tokens
    /// before it have had their time, then the response ends.
    func send(_ events: [StreamEvent], on writer: HTTPResponseWriter) {
        let now = ContinuousClock.now
        advance(Stream(writer: writer, events: events, started: now), now: now)
        arm(now: now)
    }

    /// Drops every stream still being paced, closing its connection.
    func stop() {
        timer?.cancel()
        timer = nil
        armedFor = nil
        let streams = heap.map(\.stream)
        heap.removeAll()
        for stream in streams { stream.writer.abort() }
    }

    private func due(_ stream: Stream) -> ContinuousClock.Instant {
        stream.started + .seconds(Double(stream.tokensSent) * secondsPerToken)
    }

    /// Writes the stream's events that are due by `now` and queues it for its next one,
    /// or ends it. A stream whose client has gone is dropped.
    private func advance(_ stream: Stream, now: ContinuousClock.Instant) {
        guard stream.writer.isOpen else { return }
        var bytes: [UInt8] = []
        while stream.next < stream.events.count && due(stream) <= now {
            let event = stream.events[stream.next]
            bytes.append(contentsOf: event.bytes)
            stream.tokensSent += event.tokens
            stream.next += 1
        }
        stream.writer.write(bytes)
        if stream.next == stream.events.count {
            stream.writer.end()
        } else {
            push(Entry(due: due(stream), order: arrivals, stream: stream))
            arrivals &+= 1
        }
    }

    private func fire() {
        timer = nil
        armedFor = nil
        let now = ContinuousClock.now
        while let first = heap.first, first.due <= now {
            advance(pop().stream, now: now)
        }
        arm(now: now)
    }

    /// Arms the timer for the earliest due stream, unless it is armed for that already.
    private func arm(now: ContinuousClock.Instant) {
        guard let first = heap.first?.due else { return }
        if let armedFor, armedFor <= first { return }
        timer?.cancel()
        armedFor = first
        timer = Timer.schedule(on: loop, after: max(first - now, .zero)) { [self] in fire() }
    }

    // MARK: the heap

    private func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func pop() -> Entry {
        let first = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && heap[left].precedes(heap[smallest]) { smallest = left }
                if right < heap.count && heap[right].precedes(heap[smallest]) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}
