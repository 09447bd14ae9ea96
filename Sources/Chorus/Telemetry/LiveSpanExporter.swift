import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// Exports a run's spans while it runs: the trace writer hands it every committed batch
/// (`observe`, which only queues), and a thread of its own turns them into spans and sends
/// them in batches over its own event loop and HTTP client — never the run's loop. The
/// queue is bounded: when the collector is slow or down, what does not fit is dropped and
/// counted, and the run goes on as if nothing were exported. Spans are built from records
/// that are final (a step once it ended, a call once it returned), so each is sent once.
public final class LiveSpanExporter: @unchecked Sendable {
    /// What the export came to, for the line at the end of a run.
    public struct Outcome: Sendable {
        /// Spans the receiver accepted.
        public var exported = 0
        /// Spans lost (the receiver refused or could not be reached, or the queue was full).
        public var dropped = 0
        /// The last failure, one line.
        public var lastError: String?
    }

    private let configuration: OTLPConfiguration
    private let capacity: Int
    private let condition = NSCondition()
    private var queue: [TraceChange] = []
    private var stopping = false
    private var outcome = Outcome()
    private let done = DispatchSemaphore(value: 0)
    private var deadline: ContinuousClock.Instant?
    /// Turns the changes into spans; only the export thread touches it.
    private var stream: GenAISpans.Stream
    /// After a failure the collector gets a rest (5 s) instead of a request a second; what
    /// arrives meanwhile is dropped, as a full queue would be.
    private var retryAfter: ContinuousClock.Instant?
    /// The send in flight, cancelled when `finish`'s limit passes: a stalled collector's
    /// 10 s request timeout must not hold the end of a run.
    private var inFlight: Task<Result<Void, OTLPError>, Never>?

    /// Starts the export thread. `capacity` bounds the changes waiting to be sent.
    public init(configuration: OTLPConfiguration, content: Bool, capacity: Int = 50_000) {
        self.configuration = configuration
        self.capacity = capacity
        stream = GenAISpans.Stream(content: content)
        let thread = Thread { [self] in run() }
        thread.name = "chorus-otlp"
        thread.start()
    }

    /// Queues what a committed batch holds that becomes a span (or tells about one);
    /// called on the trace writer's thread, so it never waits.
    public func observe(_ changes: [TraceChange]) {
        condition.lock()
        defer { condition.unlock() }
        for change in changes where GenAISpans.Stream.matters(change, starts: false) {
            if queue.count >= capacity {
                if case .event = change {} else { outcome.dropped += 1 }
                continue
            }
            queue.append(change)
        }
        if queue.count >= 512 { condition.signal() }
    }

    /// Sends what is queued, waiting at most `limit`; stops the thread. What is still not
    /// sent then is dropped and counted.
    public func finish(within limit: Duration = .seconds(2)) -> Outcome {
        condition.lock()
        stopping = true
        deadline = ContinuousClock.now + limit
        condition.signal()
        condition.unlock()
        // A send already in flight (begun with the full timeout) is cut at the limit too.
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            condition.lock()
            let running = inFlight
            condition.unlock()
            running?.cancel()
        }
        done.wait()
        condition.lock()
        defer { condition.unlock() }
        return outcome
    }

    private func run() {
        guard let loop = try? EventLoop(name: "chorus-otlp-io"),
            let client = try? HTTPClient.make(on: loop, configuration: .init(maxConnectionsPerHost: 2))
        else {
            condition.lock()
            outcome.lastError = "cannot start the exporter's event loop"
            stopping = true
            condition.unlock()
            done.signal()
            return
        }
        var exporter = OTLPExporter(configuration: configuration, client: client)
        while true {
            condition.lock()
            if !stopping { _ = condition.wait(until: Date().addingTimeInterval(1)) }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            let last = stopping
            let limit = deadline
            condition.unlock()
            if limit == nil, let retryAfter, ContinuousClock.now < retryAfter {
                // The collector is resting after a failure: what arrived is dropped unbuilt
                // (a dead collector costs the run a counter, not a span conversion per record).
                let ended = stream.remember(batch)
                drop(batch.filter { if case .event = $0 { false } else { true } }.count + ended, nil)
            } else {
                var spans = stream.take(batch).compactMap { if case .ended(let span) = $0 { span } else { nil } }
                if last { spans += stream.flush() }
                // At the end, a collector that is resting after a failure is not waited for.
                let resting = limit != nil && retryAfter.map { ContinuousClock.now < $0 } == true
                if resting { drop(spans.count, nil) } else if !spans.isEmpty { send(spans, with: &exporter, loop: loop, until: limit) }
            }
            if last { break }
        }
        loop.blockingWait { await client.shutdown() }
        loop.shutdown()
        done.signal()
    }

    private func send(_ spans: [TelemetrySpan], with exporter: inout OTLPExporter, loop: EventLoop, until limit: ContinuousClock.Instant?) {
        if let limit {
            let left = limit - ContinuousClock.now
            guard left > .milliseconds(50) else { return drop(spans.count, "the run ended before the collector took every span") }
            exporter.timeout = min(configuration.timeout, left)
        }
        let task = Task(executorPreference: loop) { [exporter] () -> Result<Void, OTLPError> in
            do throws(OTLPError) { try await exporter.export(spans); return .success(()) } catch { return .failure(error) }
        }
        condition.lock()
        inFlight = task
        if let deadline, ContinuousClock.now >= deadline { task.cancel() }
        condition.unlock()
        let result = loop.blockingWait { await task.value }
        condition.lock()
        defer { condition.unlock() }
        inFlight = nil
        switch result {
        case .success:
            outcome.exported += spans.count
            retryAfter = nil
        case .failure(let error):
            outcome.dropped += spans.count
            outcome.lastError = error.description
            retryAfter = ContinuousClock.now + .seconds(5)
        }
    }

    private func drop(_ count: Int, _ reason: String?) {
        condition.lock()
        outcome.dropped += count
        if let reason { outcome.lastError = outcome.lastError ?? reason }
        condition.unlock()
    }
}
