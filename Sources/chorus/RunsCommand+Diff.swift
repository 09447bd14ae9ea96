import ArgumentParser
import ChorusJSON
import ChorusTrace
import Foundation

extension RunsCommand {
    /// `chorus runs diff`: two runs step by step.
    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare two runs step by step: which outputs differ; tokens, cost and latency side by side.",
            discussion: "Exit status as diff(1): 0 when the final outputs are identical, 1 when they differ."
        )
        @Argument(help: "The first run (id or unique prefix).") var runA: String
        @Argument(help: "The second run.") var runB: String
        @Flag(help: "List every step, not only those that differ.") var all = false
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON.") var json = false

        private struct Row {
            var path: String
            var a: StepRecord?
            var b: StepRecord?
            var outputDiffers: Bool { a?.outputJSON != b?.outputJSON }
            var differs: Bool { outputDiffers || a?.status != b?.status || a?.model != b?.model }
        }

        func run() throws {
            let store = try common.openStore(readOnly: true)
            let a = try RunsCommand.find(runA, in: store, command: "runs diff")
            let b = try RunsCommand.find(runB, in: store, command: "runs diff")
            let stepsA = try store.steps(ofRun: a.id).filter { !$0.isNodeResult }
            let stepsB = try store.steps(ofRun: b.id).filter { !$0.isNodeResult }
            let byPathB = Dictionary(stepsB.map { ($0.path, $0) }, uniquingKeysWith: { $1 })
            let pathsA = Set(stepsA.map(\.path))
            var rows = stepsA.map { Row(path: $0.path, a: $0, b: byPathB[$0.path]) }
            rows += stepsB.filter { !pathsA.contains($0.path) }.map { Row(path: $0.path, a: nil, b: $0) }
            let outputsDiffer = a.outputJSON != b.outputJSON
            let callsA = try store.modelCalls(ofRun: a.id).count
            let callsB = try store.modelCalls(ofRun: b.id).count
            if json {
                func side(_ s: StepRecord?) -> JSONValue { s.map { RunsCommand.stepJSON($0) } ?? .null }
                print(
                    JSONValue.object([
                        "a": RunsCommand.summary(a), "b": RunsCommand.summary(b), "output_differs": .bool(outputsDiffer),
                        "calls": [.number(Double(callsA)), .number(Double(callsB))],
                        "steps": .array(
                            rows.filter { all || $0.differs }.map { row in
                                .object(["path": .string(row.path), "output_differs": .bool(row.outputDiffers), "a": side(row.a), "b": side(row.b)])
                            }),
                        "identical_steps": .number(Double(rows.filter { !$0.differs }.count)),
                    ]).text)
            } else {
                print("A \(a.id)  \(a.workflow)  \(a.status)" + (a.relation.map { "  (\($0.rawValue) of \(a.parentRunID ?? "?"))" } ?? ""))
                print("B \(b.id)  \(b.workflow)  \(b.status)" + (b.relation.map { "  (\($0.rawValue) of \(b.parentRunID ?? "?"))" } ?? ""))
                print("output: " + (outputsDiffer ? "DIFFERS" : "identical"))
                print(
                    "totals:  tokens \(a.tokensIn)/\(a.tokensOut) → \(b.tokensIn)/\(b.tokensOut)   " + String(format: "cost $%.5f → $%.5f   ", a.cost, b.cost)
                        + "wall \(Self.wall(a)) → \(Self.wall(b))   calls \(callsA) → \(callsB)")
                let shown = rows.filter { all || $0.differs }
                print(
                    "steps: \(rows.count - rows.filter(\.differs).count) identical, \(rows.filter(\.differs).count) differ"
                        + (all ? "" : (shown.isEmpty ? "" : " (listed; --all lists every step)")))
                if !shown.isEmpty {
                    print(
                        pad("STEP", 28) + " " + pad("OUTPUT", 9) + " " + pad("STATUS A → B", 24) + " " + pad("MODEL A → B", 18) + " " + pad("TOKENS A → B", 22)
                            + " " + pad("COST A → B", 22) + " LATENCY A → B")
                }
                for row in shown {
                    let output = row.a == nil ? "only B" : row.b == nil ? "only A" : row.outputDiffers ? "differs" : "same"
                    print(
                        pad(row.path, 28) + " " + pad(output, 9) + " " + pad("\(row.a?.status.rawValue ?? "-") → \(row.b?.status.rawValue ?? "-")", 24) + " "
                            + pad("\(row.a?.model ?? "-") → \(row.b?.model ?? "-")", 18) + " " + pad("\(Self.tokens(row.a)) → \(Self.tokens(row.b))", 22) + " "
                            + pad("\(Self.cost(row.a)) → \(Self.cost(row.b))", 22) + " " + "\(Self.latency(row.a)) → \(Self.latency(row.b))")
                }
            }
            if outputsDiffer { throw ExitCode(1) }
        }

        private static func wall(_ run: RunRecord) -> String {
            run.endedAt.map { String(format: "%.2fs", $0 - run.startedAt) } ?? "-"
        }
        private static func tokens(_ step: StepRecord?) -> String { step.map { "\($0.tokensIn)/\($0.tokensOut)" } ?? "-" }
        private static func cost(_ step: StepRecord?) -> String { step.map { String(format: "$%.5f", $0.cost) } ?? "-" }
        private static func latency(_ step: StepRecord?) -> String {
            step.flatMap { s in s.endedAt.map { String(format: "%.0fms", ($0 - s.startedAt) * 1000) } } ?? "-"
        }
    }
}
