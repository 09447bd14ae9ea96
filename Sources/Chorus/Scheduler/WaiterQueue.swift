import ChorusIO

/// What a waiter gets when its owner looks at it: decided (admitted or refused, the owner's
/// state already updated for it), or still waiting. `blocks` also keeps everyone behind it
/// waiting, which is first come, first served for a semaphore or a limiter; `waits` lets the
/// owner look further (a budget refuses a later waiter that can never fit).
enum Admission<Outcome> {
    case decided(Outcome)
    case waits
    case blocks
}

/// Tasks waiting for room on an actor of the event loop, first come first served: the
/// semaphores, the model limiters and the budgets all queue their callers here.
///
/// Each waiter holds a continuation, resumed exactly once: by `wake` when its owner decides
/// it, or by `withdraw` when its task is cancelled. The owner's rule (`LoopWaiting.admission`)
/// is the only thing that differs between them.
struct WaiterQueue<Request, Outcome: Sendable> {
    /// Waiters from `head` on, in arrival order; those before it were decided and are dropped
    /// in bulk, so taking the first is O(1) (a fan-out of 10,000 items queues 9,000 at once).
    private var waiters: [(id: Int, request: Request, continuation: CheckedContinuation<Outcome, Never>)] = []
    private var head = 0
    private var lastID = 0

    var isEmpty: Bool { head == waiters.count }
    /// How many wait (for tests and progress).
    var count: Int { waiters.count - head }

    /// The identity of the next waiter, known before it queues (its cancellation handler needs it).
    mutating func nextID() -> Int {
        lastID += 1
        return lastID
    }

    mutating func append(_ id: Int, _ request: Request, _ continuation: CheckedContinuation<Outcome, Never>) {
        waiters.append((id, request, continuation))
    }

    /// Asks `admission` about each waiter in order (`first` when none is ahead of it), resumes
    /// those it decides and stops at the first that blocks.
    mutating func wake(_ admission: (Request, _ first: Bool) -> Admission<Outcome>) {
        var index = head
        while index < waiters.count {
            switch admission(waiters[index].request, index == head) {
            case .decided(let outcome):
                let wasFirst = index == head
                remove(at: index).resume(returning: outcome)
                // The next waiter: the new head (which may have moved to 0), or the one that slid into `index`.
                if wasFirst { index = head }
            case .waits: index += 1
            case .blocks: return
            }
        }
    }

    /// Ends waiter `id`'s wait with `outcome`; false when it is no longer waiting (decided
    /// already: whatever it was given is its caller's to give back).
    mutating func withdraw(_ id: Int, with outcome: Outcome) -> Bool {
        guard let index = waiters[head...].firstIndex(where: { $0.id == id }) else { return false }
        remove(at: index).resume(returning: outcome)
        return true
    }

    private mutating func remove(at index: Int) -> CheckedContinuation<Outcome, Never> {
        guard index == head else { return waiters.remove(at: index).continuation }
        let continuation = waiters[head].continuation
        head += 1
        if head == waiters.count {
            waiters.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= waiters.count {
            waiters.removeFirst(head)
            head = 0
        }
        return continuation
    }
}

/// An actor on the event loop whose callers wait in a `WaiterQueue` under one rule.
protocol LoopWaiting: Actor {
    associatedtype Request
    associatedtype Outcome: Sendable
    nonisolated var loop: EventLoop { get }
    var waiters: WaiterQueue<Request, Outcome> { get set }
    /// The rule: what `request` gets now, `first` when no waiter is ahead of it. A decided
    /// admission has already taken what it admits.
    func admission(_ request: Request, first: Bool) -> Admission<Outcome>
    /// Called after the queue changed: a waiter queued, decided or withdrawn (a limiter
    /// schedules the wake of a per-minute window here).
    func waitersChanged()
}

extension LoopWaiting {
    func waitersChanged() {}

    /// How many callers wait (for tests and progress).
    var waitingCount: Int { waiters.count }

    /// `request` decided in one synchronous step, without a continuation or a job on the loop,
    /// when no wait is needed: every model call comes through here. Nil when it must wait (or
    /// its task is cancelled: `wait` says so).
    func decideAtOnce(_ request: Request) -> Outcome? {
        guard !Task.isCancelled, case .decided(let outcome) = admission(request, first: waiters.isEmpty) else { return nil }
        return outcome
    }

    /// Waits until `request` is decided; `cancelled` when its task is cancelled first.
    func wait(_ request: Request, cancelled: Outcome) async -> Outcome {
        let id = waiters.nextID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Decided and queued in one step. Checked before this closure, a release on the
                // loop could run between the check and the wait (an actor hop is a job of its own
                // on a custom executor) and leave a waiter nothing would ever wake: a 600-item
                // fan-out under a call budget hung that way (issue 23).
                if Task.isCancelled { return continuation.resume(returning: cancelled) }
                if case .decided(let outcome) = admission(request, first: waiters.isEmpty) {
                    return continuation.resume(returning: outcome)
                }
                waiters.append(id, request, continuation)
                waitersChanged()
            }
        } onCancel: {
            loop.execute { [self] in assumeIsolated { $0.withdraw(id, cancelled) } }
        }
    }

    /// Decides the waiters the owner now has room for (after a release or a settle).
    func wakeWaiters() {
        waiters.wake { admission($0, first: $1) }
        waitersChanged()
    }

    private func withdraw(_ id: Int, _ cancelled: Outcome) {
        guard waiters.withdraw(id, with: cancelled) else { return }
        // The withdrawn waiter may have been the one blocking those behind it.
        wakeWaiters()
    }
}
