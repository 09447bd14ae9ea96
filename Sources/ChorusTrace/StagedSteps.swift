import Foundation
import Synchronization

/// What one shared step recorded, as its executor hands it to the coordinator.
package struct StepBundle: Codable, Sendable {
    /// The step's record and its sub-steps' (an input guard's judge), final.
    package var steps: [StepRecord] = []
    package var calls: [ModelCallRecord] = []
    package var tools: [ToolCallRecord] = []
    package var events: [StagedEvent] = []
    /// How the step ended beyond its record: the executor's stop switch opened (a
    /// configuration error, the budget, an unwritable trace), its answer was cut.
    package var halted = false
    package var truncated = false
    package var cancelled = false
    /// Set when a call was refused for the budget: why (the run stops as it would in one process).
    package var budgetRefusal: String?
    /// How the step ended (`failed`, `held`, `cancelled`, `not_run`) and why, without the
    /// step's path; nil from an executor older than this field (its record's error is used).
    package var end: String?
    package var reason: String?

    package init() {}
}

package struct StagedEvent: Codable, Sendable {
    package var kind: String
    package var stepPath: String?
    package var detailJSON: String?
    package var at: Double
}

/// The records of shared steps in progress, by step, until their executor completes them.
public final class StagedSteps: Sendable {
    private let bundles = Mutex<[String: (steps: [String: StepRecord], bundle: StepBundle)]>([:])

    package init() {}

    /// The step a path belongs to: `P#guard-input` (a judge) is part of `P`.
    static func owner(of path: String) -> String {
        path.firstIndex(of: "#").map { String(path[..<$0]) } ?? path
    }

    func add(_ change: TraceChange) {
        bundles.withLock { all in
            switch change {
            case .step(let step):
                all[Self.owner(of: step.path), default: ([:], StepBundle())].steps[step.path] = step
            case .modelCall(let call, _, _), .copiedModelCall(let call):
                all[Self.owner(of: call.stepPath), default: ([:], StepBundle())].bundle.calls.append(call)
            case .toolCall(let call, _, _), .copiedToolCall(let call):
                all[Self.owner(of: call.stepPath), default: ([:], StepBundle())].bundle.tools.append(call)
            case .event(_, let kind, let stepPath, let detail, let at):
                guard let stepPath else { return }  // run-level events belong to the coordinator
                all[Self.owner(of: stepPath), default: ([:], StepBundle())].bundle.events.append(
                    StagedEvent(kind: kind, stepPath: stepPath, detailJSON: detail, at: at))
            case .run, .eval, .evalResult:
                return
            }
        }
    }

    /// Takes what `path` recorded (once its trace was flushed).
    package func take(_ path: String) -> StepBundle {
        bundles.withLock { all in
            guard let entry = all.removeValue(forKey: path) else { return StepBundle() }
            var bundle = entry.bundle
            bundle.steps = entry.steps.values.sorted { $0.path < $1.path }
            return bundle
        }
    }
}
