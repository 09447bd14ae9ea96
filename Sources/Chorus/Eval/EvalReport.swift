import ChorusJSON
import ChorusTrace
import Foundation

/// An eval's figures: per variant, pass rate with its 95% interval, cost, tokens, latency
/// and escalation; per case, which variants passed. Computed from the result rows alone,
/// so a report can be rebuilt from the trace at any time.
public struct EvalReport: Sendable {
    /// The eval as recorded.
    public var eval: EvalRecord
    /// Its variants, `as-configured` first.
    public var variants: [EvalVariant]
    /// One row per case per variant.
    public var results: [EvalResultRecord]
    /// Case ids in dataset order.
    public var caseOrder: [String]

    /// A report over these rows (what the evaluator builds as it finishes).
    public init(eval: EvalRecord, variants: [EvalVariant], results: [EvalResultRecord], caseOrder: [String]) {
        self.eval = eval
        self.variants = variants
        self.results = results
        self.caseOrder = caseOrder
    }

    /// A recorded eval's report, from the trace.
    public init(recorded eval: EvalRecord, store: any TraceBackend) throws {
        let results = try store.evalResults(of: eval.id)
        let variants = ((try? JSONValue(parsing: eval.variantsJSON))?.arrayValue ?? []).compactMap(EvalVariant.init(json:))
        var order: [String] = []
        var seen = Set<String>()
        for result in results.sorted(by: { $0.caseIndex < $1.caseIndex }) where seen.insert(result.caseID).inserted { order.append(result.caseID) }
        self.init(eval: eval, variants: variants, results: results, caseOrder: order)
    }

    /// One variant's figures.
    public struct VariantFigures: Sendable {
        /// The variant.
        public var variant: EvalVariant
        /// Cases run under it.
        public var cases: Int
        /// Cases that passed.
        public var passed: Int
        /// Passed over run, 0 when none ran.
        public var passRate: Double { cases == 0 ? 0 : Double(passed) / Double(cases) }
        /// The pass rate's 95% Wilson interval: with few cases it is wide, and two variants whose
        /// intervals overlap are not told apart by this dataset.
        public var interval: (low: Double, high: Double)
        /// US dollars over its cases' runs, judges excluded.
        public var cost: Double
        /// `cost` per case.
        public var costPerCase: Double { cases == 0 ? 0 : cost / Double(cases) }
        /// Tokens read over its cases' runs.
        public var tokensIn: Int
        /// Tokens written over its cases' runs.
        public var tokensOut: Int
        /// Model calls over its cases' runs.
        public var calls: Int
        /// Median wall time of a case's run.
        public var latencyP50Ms: Double
        /// 95th percentile wall time of a case's run.
        public var latencyP95Ms: Double
        /// Escalated steps over steps that called a model.
        public var escalationRate: Double
        /// This variant's cost over the best-passing variant's; nil when that one cost nothing.
        public var costRelativeToBest: Double?
        /// `expect_route` grades: how many were graded, how many chose the expected label.
        public var routesGraded = 0
        /// Of `routesGraded`, those that chose the expected label.
        public var routesRight = 0
        /// Right routes over graded ones; nil when the cases expect no route.
        public var routeAccuracy: Double? { routesGraded == 0 ? nil : Double(routesRight) / Double(routesGraded) }
    }

    /// Figures per variant, in variant order.
    public var figures: [VariantFigures] {
        var figures = variants.map { variant -> VariantFigures in
            let mine = results.filter { $0.variant == variant.name }
            let passed = mine.filter(\.passed).count
            let steps = mine.map(\.modelSteps).reduce(0, +)
            let latencies = mine.map(\.latencyMs)
            let routes = mine.flatMap { ((try? JSONValue(parsing: $0.gradesJSON))?.arrayValue ?? []).compactMap(Grade.init(json:)) }.filter { $0.route != nil }
            var figures = VariantFigures(
                variant: variant, cases: mine.count, passed: passed,
                interval: EvalStatistics.wilson95(passed: passed, total: mine.count),
                cost: mine.map(\.cost).reduce(0, +), tokensIn: mine.map(\.tokensIn).reduce(0, +),
                tokensOut: mine.map(\.tokensOut).reduce(0, +), calls: mine.map(\.calls).reduce(0, +),
                latencyP50Ms: EvalStatistics.percentile(latencies, 0.5), latencyP95Ms: EvalStatistics.percentile(latencies, 0.95),
                escalationRate: steps == 0 ? 0 : Double(mine.map(\.escalatedSteps).reduce(0, +)) / Double(steps))
            figures.routesGraded = routes.count
            figures.routesRight = routes.filter(\.passed).count
            return figures
        }
        if let best = bestIndex(figures), figures[best].cost > 0 {
            for i in figures.indices { figures[i].costRelativeToBest = figures[i].cost / figures[best].cost }
        }
        return figures
    }

    /// The best-passing variant: the highest pass rate, the cheaper on a tie.
    public var bestVariant: String? { bestIndex(figures).map { variants[$0].name } }

    private func bestIndex(_ figures: [VariantFigures]) -> Int? {
        figures.indices.filter { figures[$0].cases > 0 }.max { a, b in
            (figures[a].passRate, -figures[a].cost) < (figures[b].passRate, -figures[b].cost)
        }
    }

    /// Case id → variant → result.
    public var byCase: [String: [String: EvalResultRecord]] {
        results.reduce(into: [:]) { $0[$1.caseID, default: [:]][$1.variant] = $1 }
    }

    /// Cases on which the variants did not all agree, in dataset order.
    public var disagreements: [String] {
        let grid = byCase
        return caseOrder.filter { Set((grid[$0] ?? [:]).values.map(\.passed)).count > 1 }
    }

    // MARK: output

    /// The `--json` form.
    public var json: JSONValue {
        let grid = byCase
        let rounded = { (value: Double, places: Double) in JSONValue.number((value * places).rounded() / places) }
        return [
            "eval_id": .string(eval.id), "workflow": .string(eval.workflow), "cases_path": .string(eval.casesPath),
            "cases_digest": .string(eval.casesDigest), "status": .string(eval.status),
            "source_eval_id": eval.sourceEvalID.map { .string($0) } ?? .null,
            "cases": .number(Double(caseOrder.count)), "best_variant": bestVariant.map { .string($0) } ?? .null,
            "variants": .array(
                figures.map { f in
                    [
                        "name": .string(f.variant.name), "swaps": .object(f.variant.swaps.mapValues { .string($0) }),
                        "cases": .number(Double(f.cases)), "passed": .number(Double(f.passed)), "pass_rate": rounded(f.passRate, 1e4),
                        "ci95": [rounded(f.interval.low, 1e4), rounded(f.interval.high, 1e4)],
                        "cost_usd": rounded(f.cost, 1e8), "cost_per_case_usd": rounded(f.costPerCase, 1e8),
                        "tokens_in": .number(Double(f.tokensIn)), "tokens_out": .number(Double(f.tokensOut)), "calls": .number(Double(f.calls)),
                        "latency_p50_ms": rounded(f.latencyP50Ms, 1), "latency_p95_ms": rounded(f.latencyP95Ms, 1),
                        "escalation_rate": rounded(f.escalationRate, 1e4),
                        "route_accuracy": f.routeAccuracy.map { rounded($0, 1e4) } ?? .null,
                        "routes_graded": .number(Double(f.routesGraded)), "routes_right": .number(Double(f.routesRight)),
                        "cost_relative_to_best": f.costRelativeToBest.map { rounded($0, 1e4) } ?? .null,
                    ]
                }),
            "per_case": .array(
                caseOrder.map { id in
                    [
                        "id": .string(id),
                        "results": .object(
                            (grid[id] ?? [:]).mapValues { r in
                                var object: [String: JSONValue] = [
                                    "passed": .bool(r.passed), "score": rounded(r.score, 1e4),
                                    "run_id": r.runID.map { .string($0) } ?? .null, "cost_usd": rounded(r.cost, 1e8),
                                ]
                                let failedGrades = ((try? JSONValue(parsing: r.gradesJSON))?.arrayValue ?? []).compactMap(Grade.init(json:)).filter {
                                    !$0.passed
                                }
                                if let reason = r.runStatus != RunStatus.succeeded.rawValue
                                    ? (r.error ?? r.runStatus) : failedGrades.first.map({ "\($0.expectation): \($0.reason ?? "failed")" })
                                {
                                    object["reason"] = .string(reason)
                                }
                                return .object(object)
                            }),
                    ]
                }),
        ]
    }

    /// The terminal table.
    public var table: String {
        let figures = self.figures
        let best = bestVariant
        var lines = [
            "eval \(eval.id) of \(eval.workflow) on \(eval.casesPath): \(caseOrder.count) cases × \(variants.count) variants"
                + (eval.status == "finished" ? "" : " (\(eval.status))")
        ]
        // Route accuracy is a column only when the cases expect routes.
        let routed = figures.contains { $0.routesGraded > 0 }
        let header =
            ["variant", "pass rate", "95% CI"] + (routed ? ["route acc."] : [])
            + ["cost", "$/case", "vs best", "tokens in/out", "p50", "p95", "escalated"]
        var rows = [header]
        for f in figures {
            let route = f.routeAccuracy.map { String(format: "%.1f%% (%d/%d)", $0 * 100, f.routesRight, f.routesGraded) } ?? "-"
            rows.append(
                [
                    f.variant.name + (f.variant.name == best ? " ★" : ""),
                    String(format: "%.1f%% (%d/%d)", f.passRate * 100, f.passed, f.cases),
                    String(format: "%.1f–%.1f%%", f.interval.low * 100, f.interval.high * 100),
                ] + (routed ? [route] : []) + [
                    Self.dollars(f.cost), Self.dollars(f.costPerCase),
                    f.costRelativeToBest.map { String(format: "%.2f×", $0) } ?? "-",
                    "\(f.tokensIn)/\(f.tokensOut)", Self.seconds(f.latencyP50Ms), Self.seconds(f.latencyP95Ms),
                    String(format: "%.1f%%", f.escalationRate * 100),
                ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            lines.append(
                row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").trimmingWhitespace)
        }
        for f in figures where !f.variant.swaps.isEmpty { lines.append("  \(f.variant.name): \(f.variant.swapText)") }
        let split = disagreements
        lines.append(
            "★ best-passing variant (highest pass rate, cheaper on a tie); cases where the variants disagree: \(split.count)"
                + (split.isEmpty ? "" : " (e.g. " + split.prefix(5).joined(separator: ", ") + ")"))
        return lines.joined(separator: "\n")
    }

    static func dollars(_ value: Double) -> String {
        value >= 0.01 ? String(format: "$%.4f", value) : value == 0 ? "$0" : String(format: "$%.6f", value)
    }

    static func seconds(_ ms: Double) -> String { ms >= 1000 ? String(format: "%.2fs", ms / 1000) : String(format: "%.0fms", ms) }
}
