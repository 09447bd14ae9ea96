import ChorusJSON
import ChorusTrace

/// Serves every tool call from a recorded run: the call `index` of the answer to request
/// `attempt` of `step` gets the output recorded for it. Runs nothing; a call the recording
/// does not have is a tool error the model sees (and the replay then diverges on the next
/// request, which the model transport reports).
final class ReplayTools: ToolTransport {
    private struct Recorded: Sendable {
        var call: ToolCallRecord
        var output: String
    }

    private let calls: [String: Recorded]
    /// MCP tool definitions as each agent was offered them, from `tools_offered` events.
    private let mcpOffers: [String: [JSONValue]]

    /// Loads every tool call of `runID` and its outputs. Reads the database: call it before
    /// the run starts, not from the event loop.
    init(store: any TraceBackend, runID: String) throws {
        let recorded = try store.toolCalls(ofRun: runID)
        let outputs = try store.blobs(Set(recorded.map(\.outputHash)))
        var calls: [String: Recorded] = [:]
        for call in recorded {
            calls[Self.key(call.stepPath, call.attempt, call.callIndex)] =
                Recorded(call: call, output: String(decoding: outputs[call.outputHash] ?? [], as: UTF8.self))
        }
        self.calls = calls
        var offers: [String: [JSONValue]] = [:]
        for event in try store.events(ofRun: runID) where event.isKind(.toolsOffered) {
            guard case .toolsOffered(let agent, let tools)? = event.event else { continue }
            offers[agent] = tools
        }
        mcpOffers = offers
    }

    private static func key(_ step: String, _ attempt: Int, _ index: Int) -> String { "\(step)#\(attempt)#\(index)" }

    /// Offers the tools from their files, as the recorded run did (its requests, which
    /// carried the definitions, must hash the same). MCP tools are offered as recorded:
    /// their definitions are in the recorded requests, not known here.
    func offer(_ agent: AgentSpec, tools: [String: ToolSpec]) async -> Result<[OfferedTool], ToolFailure> {
        var offered: [OfferedTool] = []
        for name in agent.tools {
            guard let spec = tools[name] else { return .failure(ToolFailure(description: "no tool named '\(name)'")) }
            if let tool = Self.fileDefinition(spec) { offered.append(tool); continue }
            for recorded in mcpOffers[agent.name] ?? [] where recorded["file"]?.stringValue == name {
                guard let toolName = recorded["name"]?.stringValue else { continue }
                offered.append(
                    OfferedTool(
                        definition: ToolDefinition(
                            name: toolName, description: recorded["description"]?.stringValue ?? "",
                            inputSchema: recorded["input_schema"] ?? [:]),
                        spec: spec, remoteName: recorded["remote"]?.stringValue))
            }
        }
        return .success(offered)
    }

    func run(_ tool: OfferedTool, input: JSONValue, step: String, attempt: Int, index: Int) async -> ToolOutcome {
        guard let recorded = calls[Self.key(step, attempt, index)] else {
            return .failure("replay: the recording has no tool call \(index) for \(step), attempt \(attempt)")
        }
        return ToolOutcome(
            output: recorded.output, isError: recorded.call.isError, exitStatus: recorded.call.exitStatus,
            error: recorded.call.error)
    }
}
