import ChorusJSON
import ChorusTrace

/// The `"schedule": "as_completed"` lead as a state machine, with no I/O: the lead is called
/// again as soon as enough findings have arrived since its last call, the subtasks it plans
/// start beside those still running (within `max_parallel`), and only one lead call is in
/// flight at a time. `LeadLoop` is its shell: it performs the actions and feeds back what
/// happened. Tests drive it directly, in any arrival order.
///
/// What each lead call saw depends on arrival order, so every call's view (the finding
/// steps its prompt held, in order) is recorded on its step; a replay, resume or fork hands
/// those views back as `script`, and a scripted call waits for exactly its recorded
/// findings and sees them in the recorded order, however the workers arrive this time.
struct AsCompletedLead {
    struct Limits: Equatable {
        var maxRounds: Int
        var maxSubtasks: Int
        var maxParallel: Int
        /// Findings that trigger the next lead call; nil: half of the subtasks outstanding
        /// when the last call answered, at least 1.
        var replanAfter: Int?
        var cancelOnDone: Bool
    }

    struct Subtask: Equatable, Sendable {
        var round: Int
        var index: Int
        var item: JSONValue
    }

    enum Action: Equatable {
        /// Call the lead for `round` with these findings (step paths, in prompt order).
        case callLead(round: Int, seen: [String])
        case start(Subtask)
        /// The lead said done and `on_done` is cancel: cancel every running subtask.
        case cancelRunning
    }

    /// How a subtask ended.
    enum Ending: Equatable {
        case succeeded, failed, cancelled
    }

    let node: String
    let limits: Limits
    /// Recorded views by lead call (round): followed instead of the arrival rule.
    let script: [Int: [String]]
    /// Lead calls whose answers come from the recording (a replay): when such a call says
    /// done with `on_done: cancel`, the shell reproduces which subtasks ended cancelled (it
    /// knows the recorded ones); the machine neither drops nor cancels.
    let reproduced: Set<Int>

    private var queue: [Subtask] = []
    private var queueHead = 0
    private(set) var running: Set<String> = []
    /// Findings (succeeded subtasks' paths) in the order they arrived.
    private(set) var arrived: [String] = []
    private var arrivedSet: Set<String> = []
    /// Every finding some lead call has seen.
    private var seen: Set<String> = []
    private(set) var leadCalls = 0
    private(set) var leadInFlight = false
    /// Subtasks taken from plans (never more than `max_subtasks`).
    private(set) var planned = 0
    /// Subtasks planned beyond `max_subtasks`, and dropped.
    private(set) var truncated = 0
    /// Queued subtasks dropped when the lead said done with `on_done: cancel`.
    private(set) var dropped = 0
    private(set) var leadSaidDone = false
    private var threshold = 1
    /// Subtasks that failed since the last lead call: when everything has ended, the lead
    /// plans again after failures too (as a round would), not only after findings.
    private var failedSinceCall = 0

    init(node: String, limits: Limits, script: [Int: [String]] = [:], reproduced: Set<Int> = []) {
        self.node = node
        self.limits = limits
        self.script = script
        self.reproduced = reproduced
    }

    static func path(node: String, round: Int, index: Int) -> String {
        StepPath(node: node, .worker(round: round, item: index)).description
    }

    func path(of subtask: Subtask) -> String { Self.path(node: node, round: subtask.round, index: subtask.index) }

    private var queued: Int { queue.count - queueHead }

    /// Whether the lead may be called again at all.
    private var mayPlan: Bool {
        !leadSaidDone && leadCalls < limits.maxRounds && planned < limits.maxSubtasks
    }

    /// Done: no lead call in flight, nothing running or queued, and no lead call due.
    var finished: Bool { !leadInFlight && running.isEmpty && queued == 0 }

    /// The first lead call.
    mutating func start() -> [Action] { next() }

    /// The lead call for `round` answered with `subtasks` (as parsed from its plan).
    mutating func leadAnswered(round: Int, subtasks: [JSONValue], done: Bool) -> [Action] {
        leadInFlight = false
        let room = max(0, limits.maxSubtasks - planned)
        let kept = subtasks.prefix(room)
        truncated += subtasks.count - kept.count
        for (index, item) in kept.enumerated() { queue.append(Subtask(round: round, index: index, item: item)) }
        planned += kept.count
        var actions: [Action] = []
        if done {
            leadSaidDone = true
            if limits.cancelOnDone && !reproduced.contains(round) {
                dropped += queued
                queue.removeAll()
                queueHead = 0
                if !running.isEmpty { actions.append(.cancelRunning) }
            }
        }
        threshold = limits.replanAfter ?? max(1, (running.count + queued) / 2)
        return actions + next()
    }

    /// A subtask ended; a succeeded one is a finding.
    mutating func subtaskEnded(_ path: String, _ ending: Ending) -> [Action] {
        guard running.remove(path) != nil else { return [] }
        if ending == .succeeded, arrivedSet.insert(path).inserted { arrived.append(path) }
        if ending == .failed { failedSinceCall += 1 }
        return next()
    }

    private mutating func next() -> [Action] {
        var actions: [Action] = []
        while running.count < limits.maxParallel, queueHead < queue.count {
            let subtask = queue[queueHead]
            queueHead += 1
            running.insert(path(of: subtask))
            actions.append(.start(subtask))
        }
        if queueHead == queue.count, queueHead > 0 {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        }
        guard !leadInFlight, mayPlan else { return actions }
        let round = leadCalls + 1
        let idle = running.isEmpty && queued == 0
        if let view = script[round] {
            if view.allSatisfy(arrivedSet.contains) { return actions + [call(round, view)] }
            // The recording cannot be followed (a finding it names will not come: the run
            // differs from the recorded one); fall back to the arrival rule rather than wait
            // forever. A replay then reports the divergence on this call's request.
            guard idle else { return actions }
        }
        let fresh = arrived.count - seen.count
        if leadCalls == 0 || fresh >= threshold || (idle && (fresh > 0 || failedSinceCall > 0)) {
            return actions + [call(round, arrived)]
        }
        return actions
    }

    private mutating func call(_ round: Int, _ view: [String]) -> Action {
        leadInFlight = true
        leadCalls = round
        failedSinceCall = 0
        seen.formUnion(view)
        return .callLead(round: round, seen: view)
    }
}
