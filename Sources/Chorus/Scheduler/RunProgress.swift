import Synchronization

/// Live counters of a run for the progress display: per node, items done, running and
/// failed; tokens and cost overall. Updated from the loop, read from any thread.
public final class RunProgress: Sendable {
    /// One node's counters.
    public struct NodeCounters: Sendable, Equatable {
        /// Steps the node has so far: a foreach's items, a lead's subtasks as rounds are planned, 1 for an agent node.
        public var total = 0
        /// Steps calling a model now.
        public var running = 0
        /// Steps finished with an accepted answer.
        public var succeeded = 0
        /// Steps that failed for good.
        public var failed = 0
        /// The node has its result (or failed).
        public var finished = false
        /// The node did not run: a route chose another case, or its `when` was false.
        public var skipped = false
    }

    /// A consistent copy of all counters.
    public struct Snapshot: Sendable {
        /// Every node's counters, in the order the nodes started.
        public var nodes: [(id: String, counters: NodeCounters)]
        /// Tokens read so far.
        public var tokensIn: Int
        /// Tokens written so far.
        public var tokensOut: Int
        /// In dollars, summed from every call's cost in pico-dollars (`USD`).
        public var cost: Double
        /// Model requests finished so far.
        public var calls: Int
        /// Of those, requests that were retries.
        public var retries: Int
        /// Steps taken from the run this one resumes.
        public var reusedSteps: Int
        /// Tool calls made (or served from a recording).
        public var toolCalls = 0
    }

    private struct State {
        var order: [String] = []
        var nodes: [String: NodeCounters] = [:]
        var tokensIn = 0
        var tokensOut = 0
        var cost = USD.zero
        var calls = 0
        var retries = 0
        var reusedSteps = 0
        var toolCalls = 0
    }

    /// What a UI following a run sees (`events()`): a node's counters changed, a model call
    /// finished (the run's totals after it), or a notable event in one line.
    public enum Event: Sendable, Equatable {
        /// Node `id`'s counters changed; these are the new ones.
        case node(id: String, counters: NodeCounters)
        /// A model call finished: the run's totals after it (cost in US dollars).
        case call(calls: Int, tokensIn: Int, tokensOut: Int, cost: Double)
        /// A notable event, one line (an escalation, a node finishing, a budget reached).
        case message(String)
    }

    private let state = Mutex(State())
    /// The streams of `events()`. Counters change on the loop, one at a time, so events
    /// arrive in the order the counters changed.
    private let listeners = Mutex<(streams: [AsyncStream<Event>.Continuation], finished: Bool)>(([], false))
    private let logLine: @Sendable (String) -> Void
    /// Set once a stream is taken: until then `publish` skips the lock.
    private let followed = Atomic<Bool>(false)

    /// Progress that reports notable events through `log`.
    public init(log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.logLine = log
    }

    /// A stream of this run's events from now until it ends (`finish()`, which the runtime
    /// calls when the run returns). It keeps the newest `buffer` events a slow reader has
    /// not taken; with no reader, an event costs one check of an empty list. Call it before
    /// the run starts (not inside a task that may start after the run has ended).
    public func events(buffer: Int = 4096) -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(max(1, buffer)))
        let finished = listeners.withLock { listeners -> Bool in
            if !listeners.finished { listeners.streams.append(continuation) }
            return listeners.finished
        }
        if !finished { followed.store(true, ordering: .releasing) }
        if finished { continuation.finish() }
        return stream
    }

    /// Ends every stream of `events()`; later events go nowhere.
    public func finish() {
        let streams = listeners.withLock { listeners -> [AsyncStream<Event>.Continuation] in
            listeners.finished = true
            defer { listeners.streams = [] }
            return listeners.streams
        }
        streams.forEach { $0.finish() }
    }

    private func publish(_ event: @autoclosure () -> Event) {
        // The common case — nobody follows the run — costs one atomic load, not a lock.
        guard followed.load(ordering: .acquiring) else { return }
        listeners.withLock { listeners in
            guard !listeners.streams.isEmpty else { return }
            let value = event()
            for stream in listeners.streams { stream.yield(value) }
        }
    }

    /// Reports a notable event in one line.
    func log(_ line: String) {
        logLine(line)
        publish(.message(line))
    }

    func update(_ node: String, _ change: (inout NodeCounters) -> Void) {
        let counters = state.withLock { state -> NodeCounters in
            if state.nodes[node] == nil { state.order.append(node) }
            change(&state.nodes[node, default: NodeCounters()])
            return state.nodes[node, default: NodeCounters()]
        }
        publish(.node(id: node, counters: counters))
    }

    func recordCall(tokensIn: Int, tokensOut: Int, cost: USD, retry: Bool) {
        let totals = state.withLock { state -> Event in
            state.tokensIn += tokensIn
            state.tokensOut += tokensOut
            state.cost += cost
            state.calls += 1
            if retry { state.retries += 1 }
            return .call(calls: state.calls, tokensIn: state.tokensIn, tokensOut: state.tokensOut, cost: state.cost.dollars)
        }
        publish(totals)
    }

    /// `count` tool calls of one answer finished.
    func recordToolCalls(_ count: Int) {
        state.withLock { $0.toolCalls += count }
    }

    /// A step reused from the run being resumed: its tokens and cost count toward the run's
    /// totals (they produced its output), but no call was made.
    func recordReused(tokensIn: Int, tokensOut: Int, cost: USD) {
        state.withLock {
            $0.tokensIn += tokensIn
            $0.tokensOut += tokensOut
            $0.cost += cost
            $0.reusedSteps += 1
        }
    }

    /// The counters right now.
    public func snapshot() -> Snapshot {
        state.withLock { state in
            Snapshot(
                nodes: state.order.map { ($0, state.nodes[$0]!) }, tokensIn: state.tokensIn,
                tokensOut: state.tokensOut, cost: state.cost.dollars, calls: state.calls, retries: state.retries,
                reusedSteps: state.reusedSteps, toolCalls: state.toolCalls)
        }
    }
}
