import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// The shipped triage example (issue 28): workflows/triage.json with the shipped agents
/// and models, against `chorus sim`. A route skips the branches it did not choose, and
/// nowhere — exit status, `--json`, `runs show`, the HTML timeline, spans — is a skipped
/// branch a failure; the run replays with zero calls; the eval reports route accuracy.
extension CLI {
    @Suite struct TriageExampleTests {
        static let root = ShippedToolExampleTests.root

        @Test func theTriageExampleRoutesReplaysAndShowsSkippedBranchesAsSkippedEverywhere() throws {
            let chromium = "/usr/bin/chromium"
            try #require(FileManager.default.isExecutableFile(atPath: chromium), "chromium is not installed (scripts/test installs it)")
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db]
            let workflow = Self.root.appendingPathComponent("workflows/triage.json").path
            let run = try runChorus(
                ["run", workflow, "--input", "ticket=I was charged twice for order KX-48213; please refund the second payment.", "--json"] + trace)
            #expect(run.status == 0, "\(run.stderr)")
            let summary = try JSONValue(parsing: Array(run.stdout.utf8))
            #expect(summary["status"] == "succeeded")
            let id = try #require(summary["run_id"]?.stringValue)

            let shown = try runChorus(["runs", "show", id, "--json"] + trace)
            #expect(shown.status == 0, "\(shown.stderr)")
            let steps = try JSONValue(parsing: Array(shown.stdout.utf8))["steps"]?.arrayValue ?? []
            let skipped = steps.filter { $0["status"] == "skipped" }
            #expect(Set(skipped.compactMap { $0["node"]?.stringValue }) == ["technical", "general", "expert"], "\(shown.stdout)")
            #expect(skipped.allSatisfy { $0["skipped"] == "route triage chose 'billing'" }, "\(skipped)")
            #expect(!steps.contains { $0["status"] == "failed" })
            let text = try runChorus(["runs", "show", id] + trace)
            #expect(text.stdout.contains("├─ technical  skipped"), "\(text.stdout)")
            let stepLines = text.stdout.split(separator: "\n").filter { $0.hasPrefix("│") }
            #expect(stepLines.count == 5 && !stepLines.contains { $0.contains(" failed ") }, "no step reads as failed:\n\(text.stdout)")

            let replay = try runChorus(["replay", id] + trace)
            #expect(replay.status == 0 && replay.stdout.contains("0 made"), "\(replay.stdout)\(replay.stderr)")
            #expect(replay.stdout.contains("output reproduced byte for byte"), "\(replay.stdout)")

            // Spans: the skipped nodes say why and carry no error status.
            let spans = try runChorus(["runs", "export", id, "--format", "otlp", "--otlp-json"] + trace)
            #expect(spans.status == 0, "\(spans.stderr)")
            let document = try JSONValue(parsing: Array(spans.stdout.utf8))
            let all = document["resourceSpans"]?.arrayValue?.first?["scopeSpans"]?.arrayValue?.first?["spans"]?.arrayValue ?? []
            let skippedSpans = all.filter { (span: JSONValue) -> Bool in
                (span["attributes"]?.arrayValue ?? []).contains { (attribute: JSONValue) in attribute["key"]?.stringValue == "chorus.skipped" }
            }
            #expect(skippedSpans.count == 3, "\(all.count) spans")
            #expect(skippedSpans.allSatisfy { $0["status"]?["code"]?.intValue != 2 }, "no skipped span is an error")

            // The HTML timeline: three rows drawn as skipped, the route labelled with its choice.
            let html = project.directory.appendingPathComponent("triage.html").path
            #expect(try runChorus(["runs", "export", id, "--format", "html", "-o", html] + trace).status == 0)
            let profile = project.directory.appendingPathComponent("chromium-profile").path
            let browser = try execute(
                chromium,
                [
                    "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)", "--enable-logging=stderr", "--v=0", "--dump-dom",
                    "file://\(html)",
                ],
                scratch: project.directory)
            #expect(browser.status == 0, "\(browser.stderr.suffix(2000))")
            #expect(browser.stdout.contains("data-ready=\"1\""), "the page's script ran to the end")
            #expect(browser.stdout.components(separatedBy: "data-skipped=\"route triage chose 'billing'\"").count - 1 == 3, "\(browser.stdout.suffix(3000))")
            #expect(browser.stdout.contains("triage · chose billing") && browser.stdout.contains("step skipped"))
            let console = browser.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") }
            #expect(console.isEmpty, "console messages: \(console)")
        }

        @Test func theTriageEvalReportsRouteAccuracyForASmallAndALargeRouter() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db]
            let cases = project.directory.appendingPathComponent("triage.jsonl")
            let lines = try String(contentsOf: Self.root.appendingPathComponent("evals/triage.jsonl"), encoding: .utf8).split(separator: "\n").prefix(12)
            try lines.joined(separator: "\n").write(to: cases, atomically: true, encoding: .utf8)
            let result = try runChorus(
                [
                    "eval", Self.root.appendingPathComponent("workflows/triage.json").path, "--cases", cases.path, "--variant", "large-router:router=large",
                    "--json",
                ]
                    + trace)
            #expect(result.status == 0, "\(result.stderr)")
            let variants = try JSONValue(parsing: Array(result.stdout.utf8))["variants"]?.arrayValue ?? []
            #expect(variants.map { $0["routes_graded"] } == [12, 12], "\(result.stdout)")
            #expect(variants.allSatisfy { ($0["route_accuracy"]?.numberValue ?? 0) > 0.5 }, "\(result.stdout)")
        }
    }
}
