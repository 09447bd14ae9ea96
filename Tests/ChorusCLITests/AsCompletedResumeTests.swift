import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// An as_completed lead killed with SIGKILL mid-run: `chorus resume` makes a call only for
/// the steps no run finished (no finished worker or lead call runs again), each reused lead
/// call keeps what it saw, and the resumed run replays byte for byte.
extension CLI {
    @Suite(.serialized) struct AsCompletedResumeTests {
        @Test func aKilledAsCompletedRunResumesWithoutRepeatingAWorkerOrALeadCall() throws {
            // Calls of 150 ms and more: the window between the third lead call and the last (the fifth)
            // outlasts the polling below under a full suite's load (at 60 ms, the run once got to its
            // fifth before the kill landed).
            let project = try CLIProject(simArguments: ["--latency-ms", "150", "--jitter-ms", "300", "--seed", "5"], subtasks: 6)
            defer { project.stop() }
            try project.write(
                "agents/lead.json",
                [
                    "name": "lead", "model": "planner", "prompt": "{{inputs.question}} (call {{round}}; {{#findings}}{{.}} {{/findings}})",
                    "output_schema": ["type": "object", "required": ["subtasks"], "properties": ["subtasks": ["type": "array"]]],
                ])
            try project.write(
                "workflows/live.json",
                [
                    "name": "live", "inputs": ["question": ["type": "string"]],
                    "nodes": [
                        "research": [
                            "kind": "lead", "lead": "lead", "worker": "worker", "schedule": "as_completed", "replan_after": 2,
                            "max_rounds": 5, "max_subtasks": 30, "max_parallel": 6,
                        ],
                        "answer": ["kind": "reconcile", "from": "research", "strategy": "agent", "agent": "synth"],
                    ], "output": "answer",
                ])
            let run = try RunningChorus(project.arguments(workflow: "live"))
            var store: TraceStore?
            var reached = false
            for _ in 0..<3000 where !reached {
                if store == nil, FileManager.default.fileExists(atPath: project.db) { store = try? TraceStore(path: project.db) }
                if let store, let id = try? store.runs().first?.id, let steps = try? store.steps(ofRun: id) {
                    let plans = steps.filter { $0.kind == "plan" && $0.status == .succeeded }.count
                    reached = plans >= 3 && steps.contains { $0.kind == "item" && $0.status == .running }
                }
                usleep(10_000)
            }
            kill(run.process.processIdentifier, SIGKILL)
            _ = run.finish()
            #expect(reached, "the run never got to its third lead call with workers running")

            let trace = try TraceStore(path: project.db)
            let killed = try #require(try trace.runs().first)
            let before = try trace.steps(ofRun: killed.id)
            let finished = before.filter { $0.status == .succeeded && !$0.isNodeResult }
            try project.resetStats()
            let resumed = try runChorus(["resume", killed.id, "--json"] + project.trace)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let summary = try JSONValue(parsing: resumed.stdout)
            let newID = try #require(summary["run_id"]?.stringValue)
            #expect(summary["reused_steps"]?.intValue == finished.count)
            let after = try trace.steps(ofRun: newID).filter { !$0.isNodeResult }
            // One call a step (the simulator fails nothing here): the calls made are the steps
            // that were not reused.
            #expect(try project.simRequests() == after.count - finished.count, "no finished worker or lead call ran again")
            let views = Dictionary(uniqueKeysWithValues: before.filter { $0.kind == "plan" && $0.status == .succeeded }.map { ($0.path, $0.provenanceJSON) })
            for plan in after where views[plan.path] != nil {
                #expect(plan.provenanceJSON == views[plan.path] ?? nil, "\(plan.path) keeps what it saw")
            }
            #expect(after.filter { $0.kind == "plan" }.count > views.count, "the resumed run went on planning")

            let replay = try runChorus(["replay", newID, "--json"] + project.trace)
            #expect(replay.status == 0, "\(replay.stderr)")
            #expect(try JSONValue(parsing: replay.stdout)["reproduced"] == true)
            #expect(try trace.verify(newID).intact)
        }
    }
}
