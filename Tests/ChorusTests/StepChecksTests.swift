@testable import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// The checks of a step, each on its own, without a socket: a real loop and a real SQLite
/// trace, a project loaded from files, and transports that fail the test if a call is made.
/// A transport no check may use.
struct StepChecksNoCalls: ModelTransport, ToolTransport {
    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        Issue.record("a check sent a request")
        return .cancelled
    }
    func offer(_ agent: AgentSpec, tools: [String: ToolSpec]) async -> Result<[OfferedTool], ToolFailure> { .success([]) }
    func run(_ tool: OfferedTool, input: JSONValue, step: String, attempt: Int, index: Int) async -> ToolOutcome {
        Issue.record("a check ran a tool")
        return .failure("no")
    }
    func finish() async {}
}

/// A project whose `ask` node calls `asker` with [open, closed, gated]: `closed` accepts
/// no label the input carries, `gated` requires approval.
final class StepChecksScene: @unchecked Sendable {
    let directory: URL
    let loop: EventLoop
    let store: TraceStore
    let trace: TraceWriter
    let project: Project

    init(guards: JSONValue = [:], nodeExtra: [String: JSONValue] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-checks-\(UUID().uuidString)")
        self.directory = directory
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("agents"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("workflows"), withIntermediateDirectories: true)
        func write(_ path: String, _ value: JSONValue) throws { try Data(value.serialized()).write(to: directory.appendingPathComponent(path)) }
        let base: JSONValue = "http://127.0.0.1:9/v1"
        let price: JSONValue = ["input_per_mtok": 1, "output_per_mtok": 2]
        try write(
            "chorus.json",
            [
                "models": [
                    "open": ["provider": "openai", "base_url": base, "model": "m", "price": price],
                    "closed": ["provider": "openai", "base_url": base, "model": "m", "price": price, "accepts": ["public"]],
                    "gated": ["provider": "openai", "base_url": base, "model": "m", "price": price, "approval": "always"],
                ]
            ])
        try write("agents/asker.json", ["name": "asker", "model": ["open", "closed", "gated"], "prompt": "{{inputs.ticket}}", "guards": guards])
        var node: [String: JSONValue] = ["kind": "agent", "agent": "asker"]
        node.merge(nodeExtra) { $1 }
        try write(
            "workflows/w.json",
            [
                "name": "w", "inputs": ["ticket": ["type": "string", "labels": ["pii"]]],
                "nodes": ["ask": .object(node)], "output": "ask",
            ])
        project = try SpecLoader.loadProject(
            workflow: directory.appendingPathComponent("workflows/w.json").path,
            config: directory.appendingPathComponent("chorus.json").path
        ).get()
        loop = try EventLoop(name: "checks")
        store = try TraceStore(path: directory.appendingPathComponent("trace.db").path)
        trace = TraceWriter(store: store)
    }

    func context(origin: RunOrigin = .fresh, ledger: BudgetLedger? = nil) -> RunContext {
        RunContext(
            loop: loop, transport: StepChecksNoCalls(), recordedTransport: nil, tools: StepChecksNoCalls(), recordedTools: nil, origin: origin,
            trace: trace, runID: "run-1", project: project, maxParallel: 4, progress: RunProgress(), ledger: ledger)
    }

    func step(_ context: RunContext, prompt: String = "my email is ann@example.com") -> StepCall {
        StepCall(
            caller: AgentCaller(context: context), agent: project.agents["asker"]!, prompts: [.init(role: .user, content: prompt)],
            path: "ask", node: "ask", takesSlot: true)
    }

    deinit {
        trace.close()
        loop.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite struct StepChecksTests {
    @Test func theBoundaryDeniesAModelThatMayNotSeeALabelTheStepCarries() async throws {
        let scene = try StepChecksScene()
        var step = scene.step(scene.context())
        #expect(await step.check(.boundary(model: 0)) == .checked(.allow))
        guard case .checked(.deny(let reason)) = await step.check(.boundary(model: 1)) else { Issue.record("not denied"); return }
        #expect(reason.contains("label 'pii'") && reason.contains("model 'closed'"), "\(reason)")
    }

    @Test func approvalHoldsUntilAPersonDecidesThenAllowsOrDenies() async throws {
        let scene = try StepChecksScene()
        var waiting = scene.step(scene.context())
        _ = await waiting.perform(.prepare(model: 2))
        guard case .checked(.hold(let reason)) = await waiting.check(.approval(model: 2)) else { Issue.record("not held"); return }
        #expect(reason.contains("chorus approve run-1 model:gated"), "\(reason)")
        #expect(await waiting.check(.approval(model: 0)) == .checked(.allow), "a model that needs no approval")

        var approved = RunOrigin()
        approved.approvals["model:gated"] = ApprovalDecision(node: "model:gated", approved: true, by: "ann", note: nil)
        var go = scene.step(scene.context(origin: approved))
        #expect(await go.check(.approval(model: 2)) == .checked(.allow))

        var denied = RunOrigin()
        denied.approvals["model:gated"] = ApprovalDecision(node: "model:gated", approved: false, by: "bob", note: "too dear\u{1b}[2J")
        var no = scene.step(scene.context(origin: denied))
        #expect(await no.check(.approval(model: 2)) == .checked(.deny("denied by bob: too dear\\e[2J")), "a person's note is escaped")
    }

    @Test func theCircuitRefusesOnceTheRunStopsMakingCalls() async throws {
        let scene = try StepChecksScene()
        let context = scene.context()
        var step = scene.step(context)
        #expect(await step.check(.circuit) == .checked(.allow))
        _ = context.circuit.open(.refused("model 'open': HTTP 401"))
        #expect(await step.check(.circuit) == .checked(.refuse("model 'open': HTTP 401")))
    }

    @Test func aBudgetThatCannotHoldTheCallRefusesItAndStopsTheRun() async throws {
        let scene = try StepChecksScene()
        let ledger = BudgetLedger(budget: Budget(json: ["usd": 0.000001]), loop: scene.loop)
        let context = scene.context(ledger: ledger)
        var step = scene.step(context)
        _ = await step.perform(.prepare(model: 0))
        guard case .checked(.refuse(let reason)) = await step.check(.budget(model: 0)) else { Issue.record("not refused"); return }
        #expect(context.budgetRefusal == reason, "the refusal opened the circuit")
        #expect(await step.check(.circuit) == .checked(.refuse(reason)))
    }

    @Test func inputGuardsRedactOrDenyBeforeAnyRequestExists() async throws {
        let redacting = try StepChecksScene(guards: ["input": [["type": "pii", "action": "redact"]]])
        var step = redacting.step(redacting.context())
        guard case .checked(.redact) = await step.check(.inputGuards) else { Issue.record("not redacted"); return }
        #expect(!step.prompts[0].content.contains("ann@example.com") && step.conversation == step.prompts)

        let denying = try StepChecksScene(guards: ["input": [["type": "regex", "pattern": "email", "action": "deny"]]])
        var denied = denying.step(denying.context())
        guard case .checked(.deny(let reason)) = await denied.check(.inputGuards) else { Issue.record("not denied"); return }
        #expect(reason.hasPrefix("input "), "\(reason)")
        var clean = denying.step(denying.context(), prompt: "nothing to see")
        #expect(await clean.check(.inputGuards) == .checked(.allow))
    }

    @Test func escalationWaitsForAPersonWhenTheNodeSaysSo() async throws {
        let scene = try StepChecksScene(nodeExtra: ["approval": "on_escalation"])
        var step = scene.step(scene.context())
        guard case .checked(.hold(let reason)) = await step.check(.escalation(from: 0, to: 2, reason: "not JSON")) else {
            Issue.record("not held")
            return
        }
        #expect(reason.contains("escalating from 'open' to 'gated'"), "\(reason)")
        let plain = try StepChecksScene()
        var free = plain.step(plain.context())
        #expect(await free.check(.escalation(from: 0, to: 2, reason: "not JSON")) == .checked(.allow))
    }
}
