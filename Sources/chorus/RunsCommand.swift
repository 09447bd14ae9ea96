import ArgumentParser
import Chorus
import ChorusJSON
import ChorusTrace
import Foundation

/// `chorus runs`: looks at recorded runs.
struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List and inspect runs recorded in the trace database.",
        subcommands: [List.self, Show.self, Pending.self, Diff.self, Export.self, Search.self, Verify.self, Prune.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Recorded runs, newest first.")
        @OptionGroup var common: CommonOptions
        @Option(help: "How many runs to list.") var limit: Int = 20
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let store = try common.openStore(readOnly: true)
            let runs = try store.runs(limit: limit)
            if json {
                print(JSONValue.array(runs.map(RunsCommand.summary)).text)
                return
            }
            if runs.isEmpty { print("no runs in \(store.path)"); return }
            print("RUN                     WORKFLOW         STATUS       TOKENS IN/OUT       COST       STARTED")
            for run in runs {
                let started = Date(timeIntervalSince1970: run.startedAt)
                print(
                    pad(run.id, 23) + " " + pad(run.workflow, 16) + " " + pad(run.status.rawValue, 12) + " " + pad("\(run.tokensIn)/\(run.tokensOut)", 19) + " "
                        + pad(String(format: "$%.4f", run.cost), 10) + " " + ISO8601DateFormatter().string(from: started))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A run as a tree of steps with status, model, latency, tokens and cost.")
        @Argument(help: "The run id (or a unique prefix).") var runID: String
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON: the run, its steps and its model calls.") var json = false
        @Flag(help: "List every fan-out item (by default long fan-outs are summarised).") var all = false

        func run() throws {
            let store = try common.openStore(readOnly: true)
            let record = try RunsCommand.find(runID, in: store, command: "runs show")
            let steps = try store.steps(ofRun: record.id).filter { !$0.isNodeResult }
            let truncations = PlanTruncation.byStep(try store.events(ofRun: record.id))
            if json {
                let calls = try store.modelCalls(ofRun: record.id)
                let tools = try store.toolCalls(ofRun: record.id)
                let estimate = try RunsCommand.counterfactual(record, steps: steps, calls: calls, store: store)
                print(
                    JSONValue.object([
                        "counterfactual": estimate.map {
                            .object([
                                "cost": .number($0.actual), "cost_on_most_expensive_models": .number($0.ceiling),
                                "models": .array($0.ceilingModels.map { .string($0) }),
                            ])
                        } ?? .null,
                        "governance": try RunsCommand.governanceJSON(record, store: store),
                        "tool_calls": .array(
                            tools.map {
                                .object([
                                    "step": .string($0.stepPath), "attempt": .number(Double($0.attempt)), "index": .number(Double($0.callIndex)),
                                    "tool": .string($0.tool), "kind": .string($0.kind), "is_error": .bool($0.isError),
                                    "exit_status": $0.exitStatus.map { .number(Double($0)) } ?? .null, "error": $0.error.map { .string($0) } ?? .null,
                                    "latency_ms": .number($0.latencyMs.rounded()),
                                ])
                            }),
                        "run": RunsCommand.summary(record),
                        "workers": .array(
                            try RunsCommand.workers(record, store: store).map {
                                .object([
                                    "worker": .string($0.worker), "steps": .number(Double($0.steps)), "leased_again": .number(Double($0.leasedAgain)),
                                ])
                            }),
                        "steps": .array(steps.map { RunsCommand.stepJSON($0, truncation: truncations[$0.path]) }),
                        "calls": .array(
                            calls.map {
                                .object([
                                    "step": .string($0.stepPath), "attempt": .number(Double($0.attempt)), "model": .string($0.model),
                                    "status": $0.httpStatus.map { .number(Double($0)) } ?? .null, "error": $0.error.map { .string($0) } ?? .null,
                                    "tokens_in": .number(Double($0.tokensIn)), "tokens_out": .number(Double($0.tokensOut)),
                                    "cost": .number($0.cost), "latency_ms": .number($0.latencyMs.rounded()),
                                    "finish_reason": $0.finishReason.map { .string($0) } ?? .null, "truncated": .bool($0.truncated),
                                    "first_token_ms": $0.firstTokenMs.map { .number($0.rounded()) } ?? .null,
                                ])
                            }),
                    ]).text)
                return
            }
            print(
                "run \(record.id)  \(record.workflow)  \(record.status)  tokens \(record.tokensIn)/\(record.tokensOut)  " + String(format: "$%.4f", record.cost)
                    + (record.endedAt.map { String(format: "  %.2fs", $0 - record.startedAt) } ?? ""))
            if let error = record.error { print("  error: \(error)") }
            if let line = try RunsCommand.budgetLine(record, store: store) { print("  " + line) }
            for line in try RunsCommand.scopedBudgetLines(record, store: store) { print("  " + line) }
            let calls = try store.modelCalls(ofRun: record.id)
            if let line = try RunsCommand.counterfactualLine(record, steps: steps, calls: calls, store: store) { print("  " + line) }
            let callsByStep = Dictionary(grouping: calls, by: \.stepPath)
            let tools = try store.toolCalls(ofRun: record.id)
            let toolsByStep = Dictionary(grouping: tools, by: \.stepPath)
            var byNode: [(String, [StepRecord])] = []
            for step in steps {
                if let index = byNode.firstIndex(where: { $0.0 == step.node }) { byNode[index].1.append(step) } else { byNode.append((step.node, [step])) }
            }
            for (node, nodeSteps) in byNode {
                // A skipped node did not run: never counted as not succeeded.
                if nodeSteps.allSatisfy({ $0.status == .skipped }) {
                    print("├─ \(node)  skipped")
                    for step in nodeSteps { print("│   " + stepLine(step)) }
                    continue
                }
                let failed = nodeSteps.filter { $0.status != .succeeded && $0.status != .skipped }.count
                print(
                    "├─ \(node)  \(nodeSteps.count) step\(nodeSteps.count == 1 ? "" : "s")" + (failed > 0 ? ", \(failed) not succeeded" : "")
                        + "  tok \(nodeSteps.map(\.tokensIn).reduce(0, +))/\(nodeSteps.map(\.tokensOut).reduce(0, +))"
                        + String(format: "  $%.5f", nodeSteps.map(\.cost).reduce(0, +)))
                // A long node shows its first and last five steps, and every lead call in
                // between where it started, so what each call saw reads against the workers.
                let summarised = !all && nodeSteps.count > 12
                var hidden = 0
                for (i, step) in nodeSteps.enumerated() {
                    guard !summarised || i < 5 || i >= nodeSteps.count - 5 || step.kind == StepKind.plan.rawValue else {
                        hidden += 1
                        continue
                    }
                    if hidden > 0 { print("│   ⋮  \(hidden) more (--all lists them)") }
                    hidden = 0
                    print(
                        "│   "
                            + RunsCommand.stepLine(
                                step, calls: callsByStep[step.path] ?? [], tools: toolsByStep[step.path] ?? [], truncation: truncations[step.path]))
                }
            }
            print("by model (every attempt):")
            for (model, group) in Dictionary(grouping: calls, by: \.model).sorted(by: { $0.key < $1.key }) {
                let failures = group.filter { $0.error != nil }.count
                let truncated = group.filter(\.truncated).count
                let firstTokens = group.compactMap(\.firstTokenMs).sorted()
                print(
                    "   " + pad(model, 12) + " calls \(group.count)" + (failures > 0 ? " (\(failures) failed)" : "")
                        + (truncated > 0 ? " (\(truncated) truncated at max_tokens)" : "")
                        + (firstTokens.isEmpty ? "" : String(format: "  first token p50 %.0fms", firstTokens[firstTokens.count / 2]))
                        + "  tok \(group.map(\.tokensIn).reduce(0, +))/\(group.map(\.tokensOut).reduce(0, +))"
                        + String(format: "  $%.5f  mean %.0fms", group.map(\.cost).reduce(0, +), group.map(\.latencyMs).reduce(0, +) / Double(group.count)))
            }
            for line in try RunsCommand.governanceLines(record, store: store) { print(line) }
            if !tools.isEmpty {
                print("by tool:")
                for (tool, group) in Dictionary(grouping: tools, by: \.tool).sorted(by: { $0.key < $1.key }) {
                    let errors = group.filter(\.isError).count
                    print(
                        "   " + pad(tool, 12) + " calls \(group.count)" + (errors > 0 ? " (\(errors) errors)" : "")
                            + String(format: "  mean %.0fms", group.map(\.latencyMs).reduce(0, +) / Double(group.count)) + "  (\(group[0].kind))")
                }
            }
            let workers = try RunsCommand.workers(record, store: store)
            if !workers.isEmpty {
                print("by worker (a shared run's steps):")
                for worker in workers {
                    print(
                        "   " + pad(worker.worker, 40) + " steps \(worker.steps)"
                            + (worker.leasedAgain > 0 ? " (\(worker.leasedAgain) after a lapsed lease)" : ""))
                }
            }
            print("by agent:")
            for (agent, group) in Dictionary(grouping: steps.filter { $0.agent != nil }, by: { $0.agent! }).sorted(by: { $0.key < $1.key }) {
                print(
                    "   " + pad(agent, 12) + " steps \(group.count)  tok \(group.map(\.tokensIn).reduce(0, +))/\(group.map(\.tokensOut).reduce(0, +))"
                        + String(format: "  $%.5f", group.map(\.cost).reduce(0, +)))
            }
        }
    }

    /// Which worker ran how many of a shared run's steps (its executors are named
    /// `WORKER/PID`), from the coordinator's `step_shared` events; empty for other runs.
    static func workers(_ run: RunRecord, store: any TraceBackend) throws -> [(worker: String, steps: Int, leasedAgain: Int)] {
        var counts: [String: (steps: Int, again: Int)] = [:]
        for event in try store.events(ofRun: run.id) where event.isKind(.stepShared) {
            guard case .stepShared(let name, let leases)? = event.event else { continue }
            let worker = name.split(separator: "/").first.map(String.init) ?? name
            counts[worker, default: (0, 0)].steps += 1
            if leases > 1 { counts[worker, default: (0, 0)].again += 1 }
        }
        return counts.map { ($0.key, $0.value.steps, $0.value.again) }.sorted { $0.steps > $1.steps || ($0.steps == $1.steps && $0.worker < $1.worker) }
    }

    /// What the run would have cost on the most expensive model configured for each step.
    static func counterfactual(_ run: RunRecord, steps: [StepRecord], calls: [ModelCallRecord], store: any TraceBackend) throws -> Counterfactual.Estimate? {
        let pricing = try runStarted(run, store: store)?["pricing"]
        return Counterfactual.estimate(pricing: pricing, steps: steps, calls: calls)
    }

    /// `cost $0.0057 · on the most expensive configured models (large) $0.1290, 22.6× more`.
    static func counterfactualLine(_ run: RunRecord, steps: [StepRecord], calls: [ModelCallRecord], store: any TraceBackend) throws -> String? {
        guard let estimate = try counterfactual(run, steps: steps, calls: calls, store: store), estimate.actual > 0 || estimate.ceiling > 0 else { return nil }
        let ratio = estimate.actual > 0 ? String(format: ", %.1f× what it cost", estimate.ceiling / estimate.actual) : ""
        return String(
            format: "counterfactual: $%.6f spent; every call on the most expensive model configured for its step (%@) would have cost $%.6f%@",
            estimate.actual, estimate.ceilingModels.joined(separator: ", "), estimate.ceiling, ratio)
    }

    /// The run's configuration as it started (its `run_started` event), or nil.
    static func runStarted(_ run: RunRecord, store: any TraceBackend) throws -> JSONValue? {
        guard case .runStarted(let detail)? = try store.events(ofRun: run.id).first(where: { $0.isKind(.runStarted) })?.event else { return nil }
        return detail
    }

    /// Policy events of a run: guard verdicts and data-boundary refusals.
    private static func policyEvents(_ run: RunRecord, store: any TraceBackend) throws -> [(event: TraceEvent, step: String)] {
        try store.events(ofRun: run.id).compactMap { record in
            guard record.isKind(.guardVerdict) || record.isKind(.boundaryRefused), let event = record.event else { return nil }
            return (event, record.stepPath ?? "-")
        }
    }

    /// What the run's policies decided, for `runs show --json`.
    static func governanceJSON(_ run: RunRecord, store: any TraceBackend) throws -> JSONValue {
        let events = try policyEvents(run, store: store)
        var object: [String: JSONValue] = [
            "guard_verdicts": .array(
                events.filter { $0.event.kind == .guardVerdict }.map {
                    .object(($0.event.detail?.objectValue ?? [:]).merging(["step": .string($0.step)]) { $1 })
                }),
            "boundary_refusals": .array(
                events.filter { $0.event.kind == .boundaryRefused }.map {
                    .object(($0.event.detail?.objectValue ?? [:]).merging(["step": .string($0.step)]) { $1 })
                }),
        ]
        if let line = try budgetLine(run, store: store) { object["budget"] = .string(line) }
        if let error = run.error, error.contains("budget exhausted") { object["budget_refusal"] = .string(error) }
        return .object(object)
    }

    /// What the run's policies decided, as lines for `runs show`: counts, then the first few.
    static func governanceLines(_ run: RunRecord, store: any TraceBackend) throws -> [String] {
        let events = try policyEvents(run, store: store)
        guard !events.isEmpty else { return [] }
        var lines = ["policy verdicts:"]
        // What each event was, and why, in words.
        let described = events.map { item -> (what: String, why: String, step: String) in
            switch item.event {
            case .guardVerdict(let stage, let name, .redacted(let what)): ("\(stage) \(name) guard redacted", what, item.step)
            case .guardVerdict(let stage, let name, .denied(let reason)): ("\(stage) \(name) guard denied", reason, item.step)
            case .boundaryRefused(let model, let label, let from): ("data boundary: model '\(model)' refused label '\(label)'", "from \(from)", item.step)
            default: ("?", "", item.step)
            }
        }
        for (what, group) in Dictionary(grouping: described, by: \.what).sorted(by: { $0.key < $1.key }) {
            let example = group[0]
            lines.append("   \(what) ×\(group.count)  e.g. \(example.step)" + (example.why.isEmpty ? "" : ": \(example.why)"))
        }
        return lines
    }

    /// Spend against the run's budget (from its `run_started` event), or nil without one.
    static func budgetLine(_ run: RunRecord, store: any TraceBackend) throws -> String? {
        guard let budget = try runStarted(run, store: store)?["budget"] else { return nil }
        var parts: [String] = []
        if let usd = budget["usd"]?.numberValue { parts.append(String(format: "$%.6f of $%.6f", run.cost, usd)) }
        if let tokens = budget["tokens"]?.intValue { parts.append("\(run.tokensIn + run.tokensOut) of \(tokens) tokens") }
        if let calls = budget["calls"]?.intValue {
            parts.append("\(try store.modelCalls(ofRun: run.id).count) of \(calls) calls")
        }
        return "budget: " + parts.joined(separator: ", ")
    }

    /// Spend against each node's and each model's budget, from the `run_started` event.
    static func scopedBudgetLines(_ run: RunRecord, store: any TraceBackend) throws -> [String] {
        guard let detail = try runStarted(run, store: store) else { return [] }
        let nodeBudgets = detail["node_budgets"]?.objectValue ?? [:]
        let modelBudgets = detail["model_budgets"]?.objectValue ?? [:]
        guard !nodeBudgets.isEmpty || !modelBudgets.isEmpty else { return [] }
        let steps = try store.steps(ofRun: run.id)
        let calls = try store.modelCalls(ofRun: run.id)
        func line(_ scope: String, _ budget: JSONValue, cost: Double, tokens: Int, calls: Int) -> String {
            var parts: [String] = []
            if let usd = budget["usd"]?.numberValue { parts.append(String(format: "$%.6f of $%.6f", cost, usd)) }
            if let limit = budget["tokens"]?.intValue { parts.append("\(tokens) of \(limit) tokens") }
            if let limit = budget["calls"]?.intValue { parts.append("\(calls) of \(limit) calls") }
            return "budget of \(scope): " + parts.joined(separator: ", ")
        }
        var lines: [String] = []
        for (node, budget) in nodeBudgets.sorted(by: { $0.key < $1.key }) {
            let mine = steps.filter { $0.node == node && !$0.isNodeResult }
            let paths = Set(mine.map(\.path))
            lines.append(
                line(
                    "node \(node)", budget, cost: mine.map(\.cost).reduce(0, +), tokens: mine.map { $0.tokensIn + $0.tokensOut }.reduce(0, +),
                    calls: calls.filter { paths.contains($0.stepPath) }.count))
        }
        for (model, budget) in modelBudgets.sorted(by: { $0.key < $1.key }) {
            let mine = calls.filter { $0.model == model }
            lines.append(
                line(
                    "model \(model)", budget, cost: mine.map(\.cost).reduce(0, +), tokens: mine.map { $0.tokensIn + $0.tokensOut }.reduce(0, +),
                    calls: mine.count))
        }
        return lines
    }

    /// One step: status, model, latency, tokens, cost; attempts, answers cut at max_tokens,
    /// escalations and the error when there are any.
    static func stepLine(_ step: StepRecord, calls: [ModelCallRecord] = [], tools: [ToolCallRecord] = [], truncation: PlanTruncation? = nil) -> String {
        let latency = step.endedAt.map { String(format: "%6.0fms", ($0 - step.startedAt) * 1000) } ?? "     …  "
        var line =
            pad(step.path, 28) + " " + pad(step.status.rawValue, 10) + " " + pad(step.model ?? "-", 10) + " " + latency + "  tok "
            + pad("\(step.tokensIn)/\(step.tokensOut)", 11) + String(format: " $%.5f", step.cost)
        if step.attempts > 1 { line += "  attempts \(step.attempts)" }
        let truncated = calls.filter(\.truncated).count
        if truncated > 0 { line += "  truncated ×\(truncated)" }
        var models: [String] = []
        for call in calls.sorted(by: { $0.attempt < $1.attempt }) where models.last != call.model { models.append(call.model) }
        if models.count > 1 { line += "  escalated " + models.joined(separator: "→") }
        if !tools.isEmpty {
            let errors = tools.filter(\.isError).count
            line += "  tools ×\(tools.count)" + (errors > 0 ? " (\(errors) failed)" : "")
        }
        if let saw = step.leadSaw { line += "  " + sawPhrase(saw) }
        if let truncation { line += "  planned \(truncation.planned), kept \(truncation.kept): \(truncation.dropped) dropped" }
        if let why = step.skippedBecause { line += "  (\(why))" }
        if let error = step.error { line += "  ! \(error)" }
        return line
    }

    /// `saw 7 findings (research/round-1/0, research/round-1/2, research/round-1/1, … 4 more)`:
    /// what an as_completed lead call's prompt held, the first few by name.
    static func sawPhrase(_ saw: [String]) -> String {
        guard !saw.isEmpty else { return "saw no findings" }
        let named = saw.count <= 4 ? saw : Array(saw.prefix(3)) + ["… \(saw.count - 3) more"]
        return "saw \(saw.count) finding\(saw.count == 1 ? "" : "s") (" + named.joined(separator: ", ") + ")"
    }

    static func summary(_ run: RunRecord) -> JSONValue {
        .object([
            "id": .string(run.id), "workflow": .string(run.workflow), "status": .string(run.status.rawValue),
            "started_at": .number(run.startedAt), "ended_at": run.endedAt.map { .number($0) } ?? .null,
            "tokens_in": .number(Double(run.tokensIn)), "tokens_out": .number(Double(run.tokensOut)), "cost": .number(run.cost),
            "inputs": (try? JSONValue(parsing: run.inputsJSON)) ?? .null,
            "output": run.outputJSON.flatMap { try? JSONValue(parsing: $0) } ?? .null,
            "error": run.error.map { .string($0) } ?? .null,
            "parent": run.parentRunID.map { .string($0) } ?? .null, "relation": run.relation.map { .string($0.rawValue) } ?? .null,
        ])
    }

    /// The run `id` names, or a one-line error and exit 1.
    static func find(_ id: String, in store: any TraceBackend, command: String) throws -> RunRecord {
        guard let record = try store.run(matching: id) else {
            let matches = ((try? store.runs(limit: 100_000)) ?? []).map(\.id).filter { $0.hasPrefix(id) }.sorted()
            if matches.count > 1 {
                printError(
                    "chorus \(command): '\(id)' matches \(matches.count) runs (\(matches.prefix(5).joined(separator: ", "))"
                        + (matches.count > 5 ? ", …" : "") + "); give more of the id")
            } else {
                printError("chorus \(command): no run '\(id)' in \(store.path)")
            }
            throw ExitCode(1)
        }
        return record
    }

    /// A step for `--json` and the export; an as_completed lead call adds what it saw
    /// (`saw`, `saw_count`), a cut plan `plan_truncated`.
    static func stepJSON(_ step: StepRecord, truncation: PlanTruncation? = nil) -> JSONValue {
        var object: [String: JSONValue] = [
            "path": .string(step.path), "node": .string(step.node), "kind": .string(step.kind), "status": .string(step.status.rawValue),
            "agent": step.agent.map { .string($0) } ?? .null, "model": step.model.map { .string($0) } ?? .null,
            "attempts": .number(Double(step.attempts)), "tokens_in": .number(Double(step.tokensIn)),
            "tokens_out": .number(Double(step.tokensOut)), "cost": .number(step.cost),
            "latency_ms": step.endedAt.map { .number((($0 - step.startedAt) * 1000).rounded()) } ?? .null,
            "error": step.error.map { .string($0) } ?? .null,
        ]
        if let why = step.skippedBecause { object["skipped"] = .string(why) }
        if let saw = step.leadSaw {
            object["saw"] = .array(saw.map { .string($0) })
            object["saw_count"] = .number(Double(saw.count))
        }
        if let truncation {
            object["plan_truncated"] = .object([
                "planned": .number(Double(truncation.planned)), "kept": .number(Double(truncation.kept)), "dropped": .number(Double(truncation.dropped)),
            ])
        }
        return .object(object)
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
