import Synchronization

/// Live counters of a run for the progress display: per node, items done, running and
/// failed; tokens and cost overall. Updated from the loop, read from any thread.
public final class RunProgress: Sendable {
    /// One node's counters.
    public struct NodeCounters: Sendable, Equatable {
        public var total = 0
        public var running = 0
        public var succeeded = 0
        public var failed = 0
        public var finished = false
        /// The node did not run: a route chose another case, or its `when` was false.
        public var skipped = false
    }

    /// A consistent copy of all counters.
    public struct Snapshot: Sendable {
        public var nodes: [(id: String, counters: NodeCounters)]
        public var tokensIn: Int
        public var tokensOut: Int
        /// In dollars, summed from every call's cost in pico-dollars (`USD`).
        public var cost: Double
        public var calls: Int
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

    private let state = Mutex(State())
    /// Called with a one-line description of notable events (node started/finished, failures).
    let log: @Sendable (String) -> Void

    /// Progress that reports notable events through `log`.
    public init(log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.log = log
    }

    func update(_ node: String, _ change: (inout NodeCounters) -> Void) {
        state.withLock { state in
            if state.nodes[node] == nil { state.order.append(node) }
            change(&state.nodes[node, default: NodeCounters()])
        }
    }

    func recordCall(tokensIn: Int, tokensOut: Int, cost: USD, retry: Bool) {
        state.withLock {
            $0.tokensIn += tokensIn
            $0.tokensOut += tokensOut
            $0.cost += cost
            $0.calls += 1
            if retry { $0.retries += 1 }
        }
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
