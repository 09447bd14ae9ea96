@testable import Chorus
import ChorusIO
import Testing

/// A gate on the loop with the simplest rule: `room` admissions, or a refusal for everyone.
private actor Gate: LoopWaiting {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    var waiters = WaiterQueue<String, String>()
    var room = 0
    var refusing = false
    /// Who was decided, in the order the rule decided them.
    var decided: [String] = []

    init(loop: EventLoop) { self.loop = loop }

    func enter(_ name: String) async -> String {
        if let outcome = decideAtOnce(name) { return outcome }
        return await wait(name, cancelled: "cancelled")
    }

    func admission(_ name: String, first: Bool) -> Admission<String> {
        if refusing { decided.append(name); return .decided("refused") }
        guard first, room > 0 else { return .blocks }
        room -= 1
        decided.append(name)
        return .decided("admitted")
    }

    func open(_ more: Int) { room += more; wakeWaiters() }
    func refuseAll() { refusing = true; wakeWaiters() }
}

/// Waits until `owner` has `count` waiters queued: the signal that a task is parked, so a
/// test knows the order of arrival without sleeping. Polled from the loop, as the tests'
/// waiting tasks run there: the shared pool may be held for seconds by the CLI tests' blocking
/// waits. Records an issue after 60 s without it (hung, not slow).
func untilWaiting(_ owner: some LoopWaiting, _ count: Int, sourceLocation: SourceLocation = #_sourceLocation) async {
    await withTaskExecutorPreference(owner.loop) {
        let deadline = ContinuousClock.now + .seconds(60)
        while await owner.waitingCount != count {
            guard ContinuousClock.now < deadline else {
                Issue.record("\(count) waiters never queued (\(await owner.waitingCount) did)", sourceLocation: sourceLocation)
                return
            }
            await Task.yield()
        }
    }
}

@Suite struct WaiterQueueTests {
    @Test func waitersAreAdmittedFirstComeFirstServed() async throws {
        let loop = try EventLoop()
        let gate = Gate(loop: loop)
        var tasks: [Task<String, Never>] = []
        for (index, name) in ["a", "b", "c", "d"].enumerated() {
            tasks.append(Task(executorPreference: loop) { await gate.enter(name) })
            await untilWaiting(gate, index + 1)
        }
        await gate.open(2)
        #expect(await gate.decided == ["a", "b"])
        #expect(await gate.waitingCount == 2)
        await gate.open(5)
        #expect(await gate.decided == ["a", "b", "c", "d"])
        for task in tasks { #expect(await task.value == "admitted") }
        #expect(await gate.room == 3, "four of seven places taken")
        // With room and nobody waiting, a caller is admitted at once.
        #expect(await gate.enter("e") == "admitted")
        loop.shutdown()
    }

    @Test func aCancelledWaiterLeavesItsPlaceAndTakesNothing() async throws {
        let loop = try EventLoop()
        let gate = Gate(loop: loop)
        let first = Task(executorPreference: loop) { await gate.enter("first") }
        await untilWaiting(gate, 1)
        let second = Task(executorPreference: loop) { await gate.enter("second") }
        await untilWaiting(gate, 2)
        first.cancel()
        #expect(await first.value == "cancelled")
        #expect(await gate.waitingCount == 1)
        await gate.open(1)
        #expect(await second.value == "admitted", "the one behind moved up")
        #expect(await gate.decided == ["second"])
        #expect(await gate.room == 0)
        // A task cancelled before it asks is never queued.
        let early = Task(executorPreference: loop) {
            withUnsafeCurrentTask { $0?.cancel() }; return await gate.enter("early")
        }
        #expect(await early.value == "cancelled")
        #expect(await gate.waitingCount == 0)
        loop.shutdown()
    }

    @Test func aRefusalDecidesEveryWaiter() async throws {
        let loop = try EventLoop()
        let gate = Gate(loop: loop)
        var tasks: [Task<String, Never>] = []
        for index in 0..<5 {
            tasks.append(Task(executorPreference: loop) { await gate.enter("w\(index)") })
            await untilWaiting(gate, index + 1)
        }
        await gate.refuseAll()
        for task in tasks { #expect(await task.value == "refused") }
        #expect(await gate.decided == ["w0", "w1", "w2", "w3", "w4"])
        #expect(await gate.waitingCount == 0)
        loop.shutdown()
    }

    /// A semaphore's permits are never lost to cancellation: a cancelled waiter takes none,
    /// and a waiter given one just before its cancellation keeps it for its caller to return.
    @Test func aSemaphoreNeverLeaksAPermitToCancellation() async throws {
        let loop = try EventLoop()
        let semaphore = LoopSemaphore(permits: 1, loop: loop)
        try await semaphore.acquire()
        let cancelled = Task(executorPreference: loop) { () async -> Bool in (try? await semaphore.acquire()) != nil }
        await untilWaiting(semaphore, 1)
        let next = Task(executorPreference: loop) { () async -> Bool in (try? await semaphore.acquire()) != nil }
        await untilWaiting(semaphore, 2)
        cancelled.cancel()
        #expect(await cancelled.value == false)
        await semaphore.release()
        #expect(await next.value, "the permit went to the waiter behind the cancelled one")
        // Given the permit and then cancelled: the cancellation finds no wait to end.
        let late = Task(executorPreference: loop) { () async -> Bool in (try? await semaphore.acquire()) != nil }
        await untilWaiting(semaphore, 1)
        await semaphore.release()
        late.cancel()
        #expect(await late.value, "admitted before the cancellation: it holds the permit")
        await semaphore.release()
        try await semaphore.acquire()
        #expect(await semaphore.waitingCount == 0, "exactly one permit, free again")
        loop.shutdown()
    }
}

extension WaiterQueueTests {
    /// Hundreds waiting, decided a few at a time and some withdrawn from the middle: each is
    /// resumed once, in order (the queue drops decided waiters in bulk, not one by one).
    @Test func aLongQueueIsDecidedInOrderAcrossItsCompactions() async throws {
        let loop = try EventLoop()
        let gate = Gate(loop: loop)
        // Queued from the loop: 300 round trips through a shared pool the CLI tests keep busy took seconds.
        let tasks = await withTaskExecutorPreference(loop) {
            var tasks: [Task<String, Never>] = []
            for index in 0..<300 {
                tasks.append(Task(executorPreference: loop) { await gate.enter("w\(index)") })
                await untilWaiting(gate, index + 1)
            }
            return tasks
        }
        for index in stride(from: 150, to: 160, by: 1) { tasks[index].cancel() }
        await untilWaiting(gate, 290)
        for _ in 0..<29 { await gate.open(10) }
        let expected = (0..<300).filter { !(150..<160).contains($0) }.map { "w\($0)" }
        #expect(await gate.decided == expected)
        for (index, task) in tasks.enumerated() { #expect(await task.value == ((150..<160).contains(index) ? "cancelled" : "admitted")) }
        #expect(await gate.waitingCount == 0)
        loop.shutdown()
    }
}
