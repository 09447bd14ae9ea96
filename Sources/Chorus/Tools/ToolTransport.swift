import ChorusJSON
import ChorusTrace

/// A tool as one agent step offers it: the definition the model sees and the file behind it.
public struct OfferedTool: Sendable {
    /// What the model is offered: name, description, input schema.
    public var definition: ToolDefinition
    /// The tool's file, which says how it runs.
    public var spec: ToolSpec
    /// The name on the server, for an MCP tool.
    public var remoteName: String?

    /// A tool as offered; `remoteName` for an MCP tool (the name the model sees may differ).
    public init(definition: ToolDefinition, spec: ToolSpec, remoteName: String? = nil) {
        self.definition = definition
        self.spec = spec
        self.remoteName = remoteName
    }

    /// subprocess, http or mcp, as the trace records it.
    public var kind: String {
        switch spec.kind {
        case .subprocess: "subprocess"
        case .http: "http"
        case .mcp: "mcp"
        }
    }
}

/// What one tool call gave the model.
public struct ToolOutcome: Sendable, Equatable {
    /// What the model is given: the output, or what went wrong.
    public var output: String
    /// The output reports a failure; the model is told so (Anthropic `is_error`).
    public var isError = false
    /// A subprocess's exit status, or an HTTP tool's status.
    public var exitStatus: Int? = nil
    /// Why it failed, one line, for the trace.
    public var error: String? = nil

    /// An outcome; a success unless `isError`.
    public init(output: String, isError: Bool = false, exitStatus: Int? = nil, error: String? = nil) {
        self.output = output
        self.isError = isError
        self.exitStatus = exitStatus
        self.error = error
    }

    /// A failure the model is told about, with `reason` as both its output and the trace's error.
    public static func failure(_ reason: String, exitStatus: Int? = nil) -> ToolOutcome {
        ToolOutcome(output: reason, isError: true, exitStatus: exitStatus, error: reason)
    }
}

/// How tool calls are carried out: live (`LiveTools`: subprocess, HTTP, MCP), served from a
/// recorded run, or — an application's own — answered by its code. Every call and its
/// outcome is recorded by Chorus whatever carried it.
public protocol ToolTransport: Sendable {
    /// The tools `agent` may call, as the model is offered them.
    func offer(_ agent: AgentSpec, tools: [String: ToolSpec]) async -> Result<[OfferedTool], ToolFailure>
    /// Runs `tool` with `input` for the call `index` of the answer of `step`'s request `attempt`.
    func run(_ tool: OfferedTool, input: JSONValue, step: String, attempt: Int, index: Int) async -> ToolOutcome
    /// The run is over: stop what was started for it (MCP servers).
    func finish() async
}

/// A tool that could not be offered at all (an MCP server that does not start).
public struct ToolFailure: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// A failure saying `description`.
    public init(description: String) { self.description = description }
}

extension ToolTransport {
    /// Nothing to stop, for a transport that starts nothing.
    public func finish() async {}

    /// The definitions of tools defined in their files (subprocess, http); MCP tools are
    /// listed by their server, which the live transport asks.
    static func fileDefinition(_ spec: ToolSpec) -> OfferedTool? {
        guard let schema = spec.inputSchema else { return nil }
        return OfferedTool(definition: ToolDefinition(name: spec.name, description: spec.description, inputSchema: schema), spec: spec)
    }

    /// The `tools_offered` event: what an agent's MCP servers offered, so a replay can offer
    /// the same definitions without starting them.
    static func offeredEvent(agent: String, _ tools: [OfferedTool]) -> TraceEvent {
        .toolsOffered(
            agent: agent,
            tools: tools.compactMap { tool in
                guard let remote = tool.remoteName else { return nil }
                return [
                    "file": .string(tool.spec.name), "name": .string(tool.definition.name), "remote": .string(remote),
                    "description": .string(tool.definition.description), "input_schema": tool.definition.inputSchema,
                ]
            })
    }
}
