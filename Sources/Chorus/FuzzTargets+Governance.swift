import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Synchronization

/// The `governance` fuzz target (issue 23): random policies × random provider lies. The
/// bytes choose a fan-out (items, parallelism, retries, a small → large chain with prices
/// and `max_tokens`), budgets on the run, the node and each model, and a script the provider
/// follows call by call: honest answers, usage over-reported 1-64× past `max_tokens`, input
/// tokens past the request's size, no usage with far more text than `max_tokens` allows,
/// malformed bodies, refusals, stalls. The real scheduler runs it on a real event loop with
/// a real SQLite trace; only the provider is scripted (it must lie on demand). Two
/// properties must hold for every input: the run ends (the driver's watchdog calls a run
/// that takes over 2 s a hang), and what the trace records as spent is within every budget
/// (a violation traps, so the driver keeps the input).
extension FuzzTargets {
    static func governance(_ input: [UInt8], scratch: String) -> String {
        var choices = ByteChoices(input)
        let items = 1 + choices.next(48)
        let maxTokens = 1 + choices.next(400)
        let prices = (small: Double(choices.next(5)), large: Double(1 + choices.next(200)))
        // A limit or none; small enough that most runs hit one.
        func limit(_ scale: Int) -> Int? { choices.next(3) == 0 ? nil : choices.next(scale) }
        let run = Budget(microUSD: limit(20_000).map(Int64.init), tokens: limit(40_000), calls: limit(120))
        let node = Budget(microUSD: limit(30_000).map(Int64.init), tokens: limit(60_000), calls: limit(150))
        let smallBudget = Budget(microUSD: limit(10_000).map(Int64.init), tokens: nil, calls: limit(100))
        func model(_ name: String, _ price: Double, _ budget: Budget) -> ModelSpec {
            var json: [String: JSONValue] = [
                "provider": "openai", "base_url": "http://fuzz.invalid/v1", "model": .string(name),
                "stream": false, "price": ["input_per_mtok": .number(price), "output_per_mtok": .number(price * 4)],
            ]
            if budget.isLimited { json["budget"] = budget.json }
            return ModelSpec(name: name, json: .object(json))
        }
        let config = ChorusConfig(
            path: "fuzz:chorus.json",
            models: [
                "plan": model("plan", 0, Budget()), "small": model("small", prices.small, smallBudget), "large": model("large", prices.large, Budget()),
            ])
        let plan = AgentSpec(
            path: "fuzz:plan.json",
            json: [
                "name": "plan", "model": "plan", "prompt": "Plan {{inputs.q}}",
                "output_schema": ["type": "object", "required": ["subtasks"]],
            ])
        let worker = AgentSpec(
            path: "fuzz:worker.json",
            json: [
                "name": "worker", "model": ["small", "large"], "prompt": "{{item}}", "max_tokens": .number(Double(maxTokens)),
                "retries": .number(Double(choices.next(3))), "timeout_s": 5,
            ])
        var work: [String: JSONValue] = [
            "kind": "foreach", "agent": "worker", "over": "plan.subtasks",
            "max_parallel": .number(Double(1 + choices.next(items))),
            "min_success": .number(Double(1 + choices.next(100)) / 100),
        ]
        if node.isLimited { work["budget"] = node.json }
        let workflow = WorkflowSpec(
            path: "fuzz:workflow.json",
            json: [
                "name": "fuzz", "inputs": ["q": ["type": "string"]],
                "nodes": ["plan": ["kind": "agent", "agent": "plan"], "work": .object(work)], "output": "work",
            ], agentsDirectory: scratch)
        let project = Project(
            config: config, workflow: workflow, agents: ["plan": plan, "worker": worker],
            dependencies: ["plan": [], "work": ["plan"]])
        let provider = LyingProvider(items: items, script: choices.rest)
        guard let (loop, store) = GovernanceRig.shared(scratch) else { return "no rig" }
        let writer = TraceWriter(store: store)
        let summary = loop.blockingWait {
            await Orchestrator.run(
                project, inputs: ["q": "fuzz"], trace: writer, transport: provider, recordedTransport: nil,
                tools: NoTools(), recordedTools: nil, origin: .fresh, budget: run, loop: loop,
                maxParallel: 1 + provider.items, progress: RunProgress(), runID: Orchestrator.newRunID())
        }
        writer.close()
        guard let calls = try? store.modelCalls(ofRun: summary.runID) else { return "unreadable trace" }
        func check(_ budget: Budget, _ scope: String, _ calls: [ModelCallRecord]) {
            let made = calls.filter { !$0.url.hasPrefix("replay:") }
            let spentMicro = calls.reduce(0.0) { $0 + $1.cost } * 1_000_000
            let tokens = calls.reduce(0) { $0 + $1.tokensIn + $1.tokensOut }
            if let cap = budget.microUSD, spentMicro > Double(cap) + 0.001 {
                fatalError("governance: \(scope) spent \(spentMicro) µ$ of a \(cap) µ$ budget")
            }
            if let cap = budget.tokens, tokens > cap { fatalError("governance: \(scope) used \(tokens) tokens of \(cap)") }
            if let cap = budget.calls, made.count > cap { fatalError("governance: \(scope) made \(made.count) calls of \(cap)") }
        }
        check(run, "the run", calls)
        check(node, "node work", calls.filter { $0.stepPath.hasPrefix("work") })
        check(smallBudget, "model small", calls.filter { $0.model == "small" })
        if summary.status == .succeeded && (summary.errorCode != nil) { fatalError("governance: a succeeded run with an error code") }
        return summary.errorCode.map { "\($0)" } ?? summary.status.rawValue
    }
}

/// One event loop and one SQLite trace for the whole fuzzing session (a new database every
/// 500 runs keeps it small).
private final class GovernanceRig: @unchecked Sendable {
    static let lock = Mutex<(rig: GovernanceRig?, uses: Int)>((nil, 0))
    let loop: EventLoop
    let store: TraceStore

    init(loop: EventLoop, store: TraceStore) {
        self.loop = loop
        self.store = store
    }

    static func shared(_ scratch: String) -> (EventLoop, TraceStore)? {
        lock.withLock { state in
            state.uses += 1
            if state.rig == nil || state.uses % 500 == 0 {
                let path = scratch + "/governance.db"
                for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
                guard let loop = state.rig?.loop ?? (try? EventLoop(name: "fuzz-governance")),
                    let store = try? TraceStore(path: path)
                else { return nil }
                state.rig = GovernanceRig(loop: loop, store: store)
            }
            return state.rig.map { ($0.loop, $0.store) }
        }
    }
}

/// Bytes read as choices: each `next(n)` is in 0..<n (0 once the bytes run out).
private struct ByteChoices {
    private let bytes: [UInt8]
    private var index = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func next(_ n: Int) -> Int {
        guard n > 1 else { return 0 }
        var value = 0
        for _ in 0..<2 {
            value = value << 8 | Int(index < bytes.count ? bytes[index] : 0)
            index += 1
        }
        return value % n
    }

    /// What is left, as the provider's script.
    var rest: [UInt8] { index < bytes.count ? Array(bytes[index...]) : [0] }
}

/// A provider that answers as its script says, call by call (the script repeats).
private final class LyingProvider: ModelTransport {
    let items: Int
    let script: [UInt8]
    private let calls = Atomic<Int>(0)

    init(items: Int, script: [UInt8]) {
        self.items = items
        self.script = script.isEmpty ? [0] : script
    }

    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        if endpoint.spec.name == "plan" {
            let subtasks = JSONValue.array((0..<items).map { .string("subtask \($0)") })
            return Self.answer(JSONValue.object(["subtasks": subtasks]).text, tokensIn: 1, tokensOut: 1)
        }
        let n = calls.wrappingAdd(1, ordering: .relaxed).newValue
        let choice = Int(script[n % script.count])
        let maxTokens = (try? JSONValue(parsing: body))?["max_tokens"]?.intValue ?? 16
        switch choice % 9 {
        case 0, 1: return Self.answer("a finding", tokensIn: body.count / 5, tokensOut: min(maxTokens, 3))
        case 2: return Self.answer("fine", tokensIn: 10, tokensOut: maxTokens * (1 + choice % 64))  // usage over max_tokens
        case 3: return Self.answer("fine", tokensIn: body.count * (2 + choice % 30), tokensOut: 1)  // input past the request
        case 4: return Self.answer(String(repeating: "flood ", count: maxTokens * 4), tokensIn: 0, tokensOut: 0)  // no usage, too long
        case 5 where choice % 2 == 0: return .response(status: 200, body: Array("{\"choices\": [".utf8), firstTokenMs: nil)  // malformed
        case 5: return Self.answer(String(repeating: "under ", count: maxTokens * 5), tokensIn: 1, tokensOut: 1)  // usage understated
        case 6: return .failure(.status(400, body: Array("{\"error\": {\"message\": \"prompt too long\"}}".utf8), retryAfter: nil))
        case 7:
            try? await Task.sleep(for: .milliseconds(choice % 4))  // a slow answer, honest
            return Self.answer("late", tokensIn: body.count / 5, tokensOut: min(maxTokens, 2))
        default: return Self.answer("", tokensIn: Int(Int32.max), tokensOut: Int(Int32.max))  // absurd usage
        }
    }

    private static func answer(_ text: String, tokensIn: Int, tokensOut: Int) -> ModelExchange {
        let body: JSONValue = [
            "choices": [["index": 0, "message": ["role": "assistant", "content": .string(text)], "finish_reason": "stop"]],
            "usage": ["prompt_tokens": .number(Double(tokensIn)), "completion_tokens": .number(Double(tokensOut))],
        ]
        return .response(status: 200, body: body.serialized(), firstTokenMs: nil)
    }
}

/// No tools: the fuzzed agents have none.
private struct NoTools: ToolTransport {
    func offer(_ agent: AgentSpec, tools: [String: ToolSpec]) async -> Result<[OfferedTool], ToolFailure> { .success([]) }
    func run(_ tool: OfferedTool, input: JSONValue, step: String, attempt: Int, index: Int) async -> ToolOutcome { .failure("no tools") }
    func finish() async {}
}
