import ChorusJSON
import ChorusTrace

/// The tool stages of a step: offering the agent's tools, telling a tool-call answer from
/// a final one, and running a round of tool calls.
extension StepCall {
    /// Offers the agent's tools (an MCP server's are listed when it starts).
    mutating func offerTools() async -> ModelCall.Event {
        guard !agent.tools.isEmpty else { return .offered(tools: 0) }
        switch await context.tools.transport(for: path).offer(agent, tools: context.project.tools) {
        case .success(let tools):
            offered = tools
            if tools.contains(where: { $0.remoteName != nil }), context.tools.firstOffer(of: agent.name) {
                context.event(LiveTools.offeredEvent(agent: agent.name, tools), step: path)
            }
            return .offered(tools: tools.count)
        case .failure(let failure):
            return .offerFailed("\(failure)")
        }
    }

    /// The name of the forced answer tool in `tool` structured-output mode, else nil.
    func answerToolName(_ target: Target) -> String? {
        target.spec.structuredOutput == .tool && agent.outputSchema != nil ? OpenAIChatRequestBody.sanitizedName(agent.name) : nil
    }

    /// The tool calls `answer` asks Chorus to run, or nil when it is a final answer.
    func toolCalls(in answer: ModelAnswer, _ target: Target) -> [ToolCall]? {
        guard !offered.isEmpty else { return nil }
        let answerTool = answerToolName(target)
        let calls = answer.toolCalls.filter { $0.name != answerTool }
        return calls.isEmpty ? nil : calls
    }

    /// Runs the last answer's tool calls and continues the conversation with their results.
    mutating func runTools(attempt: Int) async -> ModelCall.Event {
        let results = await runTools(toolTurn.calls, attempt: attempt)
        conversation.append(.assistant(toolTurn.content, toolCalls: toolTurn.calls))
        for (call, result) in zip(toolTurn.calls, results) {
            conversation.append(.toolResult(call.id, content: result.output, isError: result.isError))
        }
        toolTurn = ("", [])
        return .toolsFinished
    }

    /// Runs one answer's tool calls concurrently and records each; the results come back in
    /// the calls' order. An unknown tool or an input that fails the tool's schema is an
    /// error result the model sees, and nothing runs.
    private func runTools(_ calls: [ToolCall], attempt: Int) async -> [ToolOutcome] {
        let (context, path) = (self.context, self.path)
        let tools = context.tools.transport(for: path)
        let byName = Dictionary(offered.map { ($0.definition.name, $0) }, uniquingKeysWith: { first, _ in first })
        let results = await withTaskGroup(of: (Int, ToolOutcome, Double, Duration).self) { group in
            for (index, call) in calls.enumerated() {
                group.addTask {
                    let startedAt = RunContext.now()
                    let started = ContinuousClock.now
                    let outcome: ToolOutcome
                    if let tool = byName[call.name] {
                        if let problem = await Self.inputProblem(call.input, schema: tool.definition.inputSchema) {
                            outcome = .failure(problem)
                        } else if let finished = context.tools.takeFinished(step: path, tool: call.name, input: call.input, context: context) {
                            outcome = finished
                        } else {
                            outcome = await tools.run(tool, input: call.input, step: path, attempt: attempt, index: index)
                        }
                    } else {
                        outcome = .failure(
                            "no tool named '\(call.name)'; the tools are: "
                                + byName.keys.sorted().joined(separator: ", "))
                    }
                    return (index, outcome, startedAt, ContinuousClock.now - started)
                }
            }
            var results: [(Int, ToolOutcome, Double, Duration)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        for (index, outcome, startedAt, latency) in results {
            let call = calls[index]
            context.trace.append(
                .toolCall(
                    ToolCallRecord(
                        runID: context.runID, stepPath: path, attempt: attempt, callIndex: index, callID: call.id, tool: call.name,
                        kind: byName[call.name]?.kind ?? "unknown", isError: outcome.isError, exitStatus: outcome.exitStatus,
                        error: outcome.error, latencyMs: latency.millisecondsDouble, startedAt: startedAt),
                    input: call.input.serialized(), output: Array(outcome.output.utf8)))
        }
        context.progress.recordToolCalls(results.count)
        return results.map(\.1)
    }

    /// Why `input` may not go to a tool whose input schema is `schema`, or nil.
    private static func inputProblem(_ input: JSONValue, schema: JSONValue) async -> String? {
        if case .string = input { return "the tool's arguments are not a JSON object: \(input.text.prefix(200))" }
        // An MCP server's schema may carry any pattern: one with patterns is checked off the loop.
        let violations =
            JSONSchemaValidator.matchesPatterns(schema)
            ? (try? await OffLoop.compute { JSONSchemaValidator(schema: schema).validate(input) }) ?? [SchemaViolation(path: "$", message: "cancelled")]
            : JSONSchemaValidator(schema: schema).validate(input)
        guard !violations.isEmpty else { return nil }
        return "the input fails the tool's input schema: " + violations.prefix(3).map(\.description).joined(separator: "; ")
    }
}
