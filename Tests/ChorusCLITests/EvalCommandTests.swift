import ChorusJSON
import Foundation
import Glibc
import Testing
import TestSupport

/// `chorus eval` as a user runs it: against a `chorus sim` process, on the eval-tasks
/// project, with the report as a table, JSON and HTML opened in headless chromium.
extension CLI {
    @Suite(.serialized) struct EvalCommandTests {
        /// Adds `small` (sim-small) and `large` (sim-large) with the shipped prices, the solver
        /// agent and workflow, and `count` generated cases, to a CLI project.
        private func tasksProject(cases count: Int, simArguments: [String] = []) throws -> (CLIProject, [String]) {
            let project = try CLIProject(simArguments: simArguments)
            let base = JSONValue.string("http://127.0.0.1:\(project.port)/v1")
            try project.write(
                "chorus.json",
                [
                    "models": [
                        "small": ["provider": "openai", "base_url": base, "model": "sim-small", "price": ["input_per_mtok": 0.02, "output_per_mtok": 0.04]],
                        "large": ["provider": "anthropic", "base_url": base, "model": "sim-large", "price": ["input_per_mtok": 3, "output_per_mtok": 15]],
                    ]
                ])
            try project.write(
                "agents/solver.json",
                [
                    "name": "solver", "model": ["small", "large"], "prompt": "{{inputs.task}}", "retries": 1,
                    "output_schema": [
                        "type": "object", "required": ["answer", "confidence"],
                        "properties": [
                            "answer": ["type": "string"], "confidence": ["type": "number", "minimum": 0.7],
                        ],
                    ],
                ])
            try project.write(
                "workflows/tasks.json",
                [
                    "name": "tasks", "inputs": ["task": ["type": "string"]],
                    "nodes": ["solve": ["kind": "agent", "agent": "solver"]], "output": "solve",
                ])
            let generated = try runChorus(["sim", "--write-eval-cases", String(count), "--seed", "3"])
            #expect(generated.status == 0)
            try generated.stdout.write(to: project.directory.appendingPathComponent("cases.jsonl"), atomically: true, encoding: .utf8)
            let arguments =
                [
                    "eval", project.directory.appendingPathComponent("workflows/tasks.json").path,
                    "--cases", project.directory.appendingPathComponent("cases.jsonl").path,
                ] + project.trace
            return (project, arguments)
        }

        @Test func anEvalPrintsATableJSONAndAnHTMLReportThatOpensInABrowser() throws {
            let chromium = "/usr/bin/chromium"
            try #require(FileManager.default.isExecutableFile(atPath: chromium), "chromium is not installed (scripts/test installs it)")
            let (project, arguments) = try tasksProject(cases: 40)
            defer { project.stop() }
            let html = project.directory.appendingPathComponent("eval.html").path
            let result = try runChorus(arguments + ["--variant", "all-small:large=small", "--variant", "all-large:small=large", "--html", html])
            #expect(result.status == 0, "\(result.stderr)")
            for row in ["as-configured", "all-small", "all-large", "95% CI", "cases where the variants disagree"] {
                #expect(result.stdout.contains(row), "\(row) in\n\(result.stdout)")
            }
            let evalID = try #require(result.stdout.split(separator: " ").dropFirst().first.map(String.init))

            let shown = try runChorus(["eval", "--show", evalID, "--json"] + project.trace)
            #expect(shown.status == 0, "\(shown.stderr)")
            let report = try JSONValue(parsing: shown.stdout)
            #expect(report["variants"]?.arrayValue?.map { $0["name"]?.stringValue ?? "" } == ["as-configured", "all-small", "all-large"])
            #expect(report["per_case"]?.arrayValue?.count == 40)
            let small = try #require(report["variants"]?.arrayValue?[1])
            let ci = (small["ci95"]?.arrayValue ?? []).compactMap { $0.numberValue }
            let rate = try #require(small["pass_rate"]?.numberValue)
            #expect(ci.count == 2 && ci[0] <= rate && rate <= ci[1])

            let profile = project.directory.appendingPathComponent("chromium-profile").path
            let browser = try execute(
                chromium,
                [
                    "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)",
                    "--enable-logging=stderr", "--v=0", "--dump-dom", "file://\(html)",
                ], scratch: project.directory)
            #expect(browser.status == 0, "\(browser.stderr.suffix(2000))")
            #expect(browser.stdout.contains("data-ready=\"1\""), "the page's script ran to the end")
            #expect(browser.stdout.components(separatedBy: "class=\"point\"").count - 1 == 3, "one point per variant")
            #expect(browser.stdout.components(separatedBy: "class=\"variant-row").count - 1 == 3)
            #expect(
                browser.stdout.components(separatedBy: "class=\"cell pass\"").count + browser.stdout.components(separatedBy: "class=\"cell fail\"").count - 2
                    == 120,
                "a cell per case and variant")
            let console = browser.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") }
            #expect(console.isEmpty, "console messages: \(console)")
        }

        @Test func aPassRateUnderTheGateExitsOneAndBadInputExitsTwo() throws {
            let (project, arguments) = try tasksProject(cases: 12, simArguments: ["--accuracy", "sim-small=0.2", "--accuracy", "sim-large=0.2"])
            defer { project.stop() }
            let gated = try runChorus(arguments + ["--min-pass-rate", "0.9", "--json"])
            #expect(gated.status == 1, "\(gated.stderr)")
            #expect(gated.stderr.contains("under --min-pass-rate 90.0%"), "\(gated.stderr)")
            #expect(try JSONValue(parsing: gated.stdout)["variants"]?.arrayValue?.first?["cases"] == 12, "the report is printed all the same")

            let unknown = try runChorus(arguments + ["--variant", "big:small=huge"])
            #expect(unknown.status == 2)
            #expect(unknown.stderr.contains("--variant big: small=huge: both must be models in"), "\(unknown.stderr)")
            let noPlan = try runChorus(arguments + ["--reuse-plan"])
            #expect(noPlan.status == 2 && noPlan.stderr.contains("no lead or foreach node"), "\(noPlan.stderr)")
            try "{\"id\": \"x\", \"inputs\": {\"task\": \"t\"}, \"expect\": {\"regex\": \"(\"}}\n".write(
                to: project.directory.appendingPathComponent("cases.jsonl"), atomically: true, encoding: .utf8)
            let bad = try runChorus(arguments)
            #expect(bad.status == 2)
            #expect(bad.stderr.contains("cases.jsonl:1: $.expect.regex: not a valid regular expression"), "\(bad.stderr)")
        }

        @Test func ctrlCStopsTheEvalKeepsWhatFinishedAndCountsNoInterruptedRun() throws {
            let (project, arguments) = try tasksProject(cases: 40, simArguments: ["--latency-ms", "300"])
            defer { project.stop() }
            let eval = try RunningChorus(arguments + ["--parallel-cases", "2", "--json"])
            usleep(1_500_000)
            kill(eval.process.processIdentifier, SIGINT)
            let out = eval.readStdout()
            let (status, stderr) = eval.finish()
            #expect(status == 1, "\(stderr)")
            let report = try JSONValue(parsing: Array(out))
            #expect(report["status"] == "interrupted")
            let cases = try #require(report["per_case"]?.arrayValue)
            #expect(!cases.isEmpty && cases.count < 40, "what finished is kept, the rest never started")
            let rows = cases.flatMap { ($0["results"]?.objectValue ?? [:]).values }
            #expect(rows.allSatisfy { !($0["reason"]?.stringValue ?? "").contains("interrupted") }, "no interrupted run counts as a failure")
        }
    }
}
