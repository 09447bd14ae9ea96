import ChorusJSON
import ChorusTrace
import Synchronization

/// A run's tool calls: the live transport, the recorded one (replays and forks), the tool
/// calls a resumed run finished in its unfinished steps, and the agents already offered.
final class RunTools: Sendable {
    /// Runs tool calls, live.
    let live: any ToolTransport
    /// Serves tool calls from the parent's trace (replays and forks).
    let recorded: (any ToolTransport)?
    private let origin: RunOrigin
    private let finished: Mutex<[String: [FinishedToolCall]]>
    private let offeredAgents = Mutex<Set<String>>([])

    init(live: any ToolTransport, recorded: (any ToolTransport)?, origin: RunOrigin) {
        self.live = live
        self.recorded = recorded
        self.origin = origin
        finished = Mutex(origin.finishedToolCalls)
    }

    /// What runs `path`'s tool calls.
    func transport(for path: String) -> any ToolTransport {
        origin.isRecorded(path) ? recorded ?? live : live
    }

    /// The output of a tool call the resumed run finished in this (unfinished) step with the
    /// same tool and input, taken once; nil when there is none and the tool must run.
    func takeFinished(step: String, tool: String, input: JSONValue, context: RunContext) -> ToolOutcome? {
        guard origin.finishedToolCalls[step] != nil else { return nil }
        let hash = TraceStore.hash(input.serialized())
        let taken = finished.withLock { pending -> FinishedToolCall? in
            guard let index = pending[step]?.firstIndex(where: { $0.call.tool == tool && $0.call.inputHash == hash }) else { return nil }
            return pending[step]?.remove(at: index)
        }
        guard let taken else { return nil }
        context.event(.toolCallReused(tool: tool, from: origin.parent ?? ""), step: step)
        return ToolOutcome(output: taken.output, isError: taken.call.isError, exitStatus: taken.call.exitStatus, error: taken.call.error)
    }

    /// True the first time `agent`'s tools are offered in this run (for the one
    /// `tools_offered` event a replay needs).
    func firstOffer(of agent: String) -> Bool {
        offeredAgents.withLock { $0.insert(agent).inserted }
    }
}
