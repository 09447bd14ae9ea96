import Foundation
import Synchronization

/// What one shared step recorded, as its executor hands it to the coordinator.
public struct StepBundle: Codable, Sendable {
    /// The step's record and its sub-steps' (an input guard's judge), final.
    public var steps: [StepRecord] = []
    public var calls: [ModelCallRecord] = []
    public var tools: [ToolCallRecord] = []
    public var events: [StagedEvent] = []
    /// How the step ended beyond its record: the executor's stop switch opened (a
    /// configuration error, the budget, an unwritable trace), its answer was cut.
    public var halted = false
    public var truncated = false
    public var cancelled = false
    /// Set when a call was refused for the budget: why (the run stops as it would in one process).
    public var budgetRefusal: String?
    /// How the step ended (`failed`, `held`, `cancelled`, `not_run`) and why, without the
    /// step's path; nil from an executor older than this field (its record's error is used).
    public var end: String?
    public var reason: String?

    public init() {}
}

public struct StagedEvent: Codable, Sendable {
    public var kind: String
    public var stepPath: String?
    public var detailJSON: String?
    public var at: Double
}

/// The records of shared steps in progress, by step, until their executor completes them.
public final class StagedSteps: Sendable {
    private let bundles = Mutex<[String: (steps: [String: StepRecord], bundle: StepBundle)]>([:])

    public init() {}

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
    public func take(_ path: String) -> StepBundle {
        bundles.withLock { all in
            guard let entry = all.removeValue(forKey: path) else { return StepBundle() }
            var bundle = entry.bundle
            bundle.steps = entry.steps.values.sorted { $0.path < $1.path }
            return bundle
        }
    }
}
