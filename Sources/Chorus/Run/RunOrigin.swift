import ChorusJSON
import ChorusTrace

/// A step a resumed run takes from the run it resumes instead of executing it again: the
/// finished step record and the model calls that produced it.
struct ReusedStep: Sendable {
    var step: StepRecord
    var calls: [ModelCallRecord]
    var toolCalls: [ToolCallRecord] = []
}

/// A tool call the run being resumed finished in a step it did not finish: when the step,
/// run again, asks the same tool for the same input, the recorded output is used.
struct FinishedToolCall: Sendable {
    var call: ToolCallRecord
    var output: String
}

/// How a run relates to a recorded one. A fresh run has no parent. A replay serves every
/// call from the parent's trace; a fork serves the calls upstream of its live point and
/// makes the rest live (with models swapped if asked); a resume reuses the parent's
/// finished steps and executes the others.
struct RunOrigin: Sendable {
    var parent: String?
    var relation: RunRelation?
    /// Which steps' calls are served from the parent's trace.
    var recorded: StepSelection = .none
    /// Finished steps taken from the parent (resume), by path.
    var reuse: [String: ReusedStep] = [:]
    /// What the parent run (and its ancestors, through its totals) spent, which a resumed
    /// run's budget starts from.
    var spent: (microUSD: Int64, tokens: Int, calls: Int) = (0, 0, 0)
    /// People's decisions on nodes that require approval, from the parent's lineage (resume)
    /// or the recording (replay), by node.
    var approvals: [String: ApprovalDecision] = [:]
    /// Finished tool calls of the parent's unfinished steps (resume), by step path.
    var finishedToolCalls: [String: [FinishedToolCall]] = [:]
    /// Model name → model name, for the live part of a fork or a whole eval variant.
    var modelSwaps: [String: String] = [:]
    /// The eval, case and variant this run belongs to, recorded in its `run_started` event.
    var evalContext: JSONValue?
    /// Set when the run acts on a recording whose audit chain did not verify and someone
    /// chose to go on (`--force-unverified`): the first break, recorded in `run_started`.
    var unverified: String?

    /// What each recorded lead call of an as_completed lead saw, by the call's step path:
    /// the finding steps its prompt held, in order (from the recording's or the reused
    /// steps' records).
    var leadViews: [String: [String]] = [:]
    /// Each recorded step's status, by path (replay and fork): a replayed as_completed lead
    /// with `on_done: cancel` cancels what was cancelled then.
    var recordedStatus: [String: StepStatus] = [:]

    static let fresh = RunOrigin()

    /// The views recorded on `steps` (the `saw` of lead calls' records), by path.
    static func leadViews(of steps: some Sequence<StepRecord>) -> [String: [String]] {
        var views: [String: [String]] = [:]
        for step in steps where step.kind == StepKind.plan.rawValue {
            guard let text = step.provenanceJSON, let saw = (try? JSONValue(parsing: text))?["saw"]?.arrayValue else { continue }
            views[step.path] = saw.compactMap(\.stringValue)
        }
        return views
    }

    /// Whether a fork turns live exactly at the step `path` (its first live stage).
    func startsLive(at path: String) -> Bool {
        guard case .upstreamOf(let point) = recorded else { return false }
        return StepPath.node(of: path) == point.node && LivePoint.stage(of: path) == point.from
    }

    /// Whether `path`'s calls come from the trace (no network, no cost, no backoff).
    func isRecorded(_ path: String) -> Bool {
        switch recorded {
        case .none: false
        case .all: true
        case .upstreamOf(let point): !point.isLive(path)
        }
    }
}

/// A set of steps, by path.
enum StepSelection: Sendable {
    case none
    case all
    /// Every step before `point` (in the workflow's order).
    case upstreamOf(LivePoint)
}

/// Where a fork turns live: a node (all its steps, and every node downstream of it), or a
/// stage within a node: `NODE/round-R/plan`, `NODE/round-R` (that round's workers),
/// `NODE/items` (a foreach's items) or `NODE/synthesis` — and everything after it.
struct LivePoint: Sendable {
    let node: String
    /// Position of the first live stage within `node` (see `stage(of:)`).
    let from: Stage
    /// Nodes that depend on `node`, directly or not: live throughout.
    let downstream: Set<String>

    /// A step's place within its node: (round, 0) plans a round, (round, 1) is its workers;
    /// a foreach's items are (0, 1); an agent or reconcile node's own step is (0, 0); a
    /// synthesis comes last.
    struct Stage: Comparable, Sendable {
        var round: Int
        var part: Int
        static func < (a: Stage, b: Stage) -> Bool { (a.round, a.part) < (b.round, b.part) }
        static let whole = Stage(round: Int.min, part: 0)
        static let synthesis = Stage(round: Int.max, part: 0)
    }

    /// Parses `text` against `project`'s workflow; the error says which forms are accepted.
    init(_ text: String, project: Project) throws(ReplayError) {
        let point = StepPath(text)
        let node = point?.node ?? StepPath.node(of: text)
        guard let spec = project.workflow.nodes[node] else {
            throw ReplayError(
                description: "--live-from \(text): no node '\(node)' in \(project.workflow.path); nodes: "
                    + project.workflow.nodes.keys.sorted().joined(separator: ", "))
        }
        self.node = node
        // Each stage exists only on a node of the kind that has it: a point that names a stage
        // no run can have would fork nothing live, silently.
        func refuse(_ why: String) -> ReplayError { ReplayError(description: "--live-from \(text): \(why)") }
        switch (point?.place, point?.suffix) {
        case (.node?, StepPath.Suffix.none?):
            from = .whole
        case (.synthesis?, StepPath.Suffix.none?):
            if spec.kind == .reconcile { throw refuse("node '\(node)' is a reconcile node: its one step is the node itself (--live-from \(node))") }
            guard spec.reconcile.strategy == .agent else {
                throw refuse("node '\(node)' has no synthesis (its reconcile strategy is not agent)")
            }
            from = .synthesis
        case (.items?, StepPath.Suffix.none?):
            guard spec.kind == .foreach else { throw refuse("node '\(node)' is \(spec.kind.rawValue), not foreach: it has no items") }
            from = Stage(round: 0, part: 1)
        case (.plan(let round)?, StepPath.Suffix.none?), (.round(let round)?, StepPath.Suffix.none?):
            guard spec.kind == .lead else { throw refuse("node '\(node)' is \(spec.kind.rawValue), not lead: it has no rounds") }
            let rounds = spec.leadSpec?.maxRounds ?? 1
            guard round >= 1 && round <= rounds else {
                throw refuse("node '\(node)' runs rounds 1 to \(rounds) (max_rounds)")
            }
            if case .plan? = point?.place { from = Stage(round: round, part: 0) } else { from = Stage(round: round, part: 1) }
        default:
            throw ReplayError(description: "--live-from \(text): expected NODE, NODE/round-R/plan, NODE/round-R, NODE/items or NODE/synthesis")
        }
        var downstream = Set<String>()
        var changed = true
        while changed {
            changed = false
            for (id, dependencies) in project.dependencies where !downstream.contains(id) && id != node {
                if dependencies.contains(node) || !dependencies.isDisjoint(with: downstream) {
                    downstream.insert(id)
                    changed = true
                }
            }
        }
        self.downstream = downstream
    }

    /// Whether the step at `path` runs live.
    func isLive(_ path: String) -> Bool {
        let stepNode = StepPath.node(of: path)
        if stepNode == node { return Self.stage(of: path) >= from }
        return downstream.contains(stepNode)
    }

    static func stage(of path: String) -> Stage {
        switch StepPath(path)?.place {
        case .node?, nil: Stage(round: 0, part: 0)
        case .item?, .items?: Stage(round: 0, part: 1)
        case .plan(let round)?: Stage(round: round, part: 0)
        case .round(let round)?, .worker(let round, _)?: Stage(round: round, part: 1)
        case .synthesis?: .synthesis
        }
    }
}

extension ApprovalDecision {
    /// The decisions recorded on `runID` and its ancestors (the nearest run's win).
    static func lineage(of runID: String, store: any TraceBackend) throws -> [String: ApprovalDecision] {
        var result: [String: ApprovalDecision] = [:]
        var current: String? = runID
        var depth = 0
        while let id = current, depth < 64, let run = try store.run(matching: id) {
            for (node, decision) in decisions(in: try store.events(ofRun: run.id)) where result[node] == nil { result[node] = decision }
            current = run.parentRunID
            depth += 1
        }
        return result
    }
}

/// Records that act must verify: a resume reuses its ancestors' steps and decisions, a replay
/// serves their calls, an approval continues a paused run. Each checks the audit chains
/// of the run it acts on and its ancestors first, so an edited record (an approval turned
/// from deny to approve in the database, say) is refused rather than honoured.
package enum AuditGate {
    /// The first break in the audit chain of `runID` or any run it descends from (at most 64
    /// deep), as one line naming the run; nil when every chain verifies.
    package static func firstBreak(inLineageOf runID: String, store: any TraceBackend) throws -> String? {
        var current: String? = runID
        var depth = 0
        while let id = current, depth < 64, let run = try store.run(matching: id) {
            let report = try store.verify(run.id)
            if let problem = report.problem { return "run \(run.id): \(problem)" }
            current = run.parentRunID
            depth += 1
        }
        return nil
    }

    /// Throws `UnverifiedRecord` when the lineage of `runID` does not verify, unless `force`;
    /// forced, returns the break (for the new run's record) or nil.
    static func check(_ runID: String, store: any TraceBackend, force: Bool) throws -> String? {
        guard let problem = try firstBreak(inLineageOf: runID, store: store) else { return nil }
        if force { return problem }
        throw UnverifiedRecord(problem: problem)
    }
}

/// A recorded run was refused because its audit chain (or an ancestor's) does not verify.
public struct UnverifiedRecord: Error, Sendable, CustomStringConvertible {
    /// The first break, naming the run.
    public var problem: String
    /// A refusal naming the break.
    public init(problem: String) { self.problem = problem }
    public var description: String {
        "the audit chain is not intact: \(problem) (chorus runs verify shows it; --force-unverified acts on it anyway, recorded as such)"
    }
}
