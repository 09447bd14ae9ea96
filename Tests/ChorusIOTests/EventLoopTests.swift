import ChorusIO
import Foundation
import Testing

/// An actor whose jobs run on a given loop, as Chorus's scheduler and client do.
private actor LoopCounter {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    var count = 0
    var order: [Int] = []

    init(loop: EventLoop) { self.loop = loop }

    func increment() { count += 1 }
    func record(_ value: Int) { order.append(value) }
    func isOnLoopThread() -> Bool { loop.inEventLoop }
}

@Suite struct EventLoopTests {
    /// The kernel knows the loop thread by the loop's name (cut to 15 bytes), so /proc, top
    /// and perf can tell it from the process's other threads.
    @Test func theLoopThreadCarriesTheLoopsNameInTheKernel() async throws {
        let loop = try EventLoop(name: "chorus-a-very-long-loop-name")
        defer { loop.shutdown() }
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").map { tid in
            ((try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
        }
        #expect(names.filter { $0 == "chorus-a-very-l" }.count == 1, "\(names)")
    }

    @Test func jobsOfAnActorOnTheLoopRunOnTheLoopThread() async throws {
        try await withLoop { loop in
            let counter = LoopCounter(loop: loop)
            #expect(await counter.isOnLoopThread())
            #expect(!loop.inEventLoop)
        }
    }

    @Test func tasksPreferringTheLoopRunOnTheLoopThread() async throws {
        try await withLoop { loop in
            let onLoop = await Task(executorPreference: loop) { loop.inEventLoop }.value
            #expect(onLoop)
        }
    }

    @Test func assumeIsolatedSucceedsInsideALibuvCallback() async throws {
        try await withLoop { loop in
            let counter = LoopCounter(loop: loop)
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                loop.execute {
                    Timer.schedule(on: loop, after: .milliseconds(1)) {
                        // A C callback (uv_timer) on the loop thread: the runtime must see
                        // the actor's executor as current, or this traps.
                        counter.assumeIsolated { $0.increment() }
                        continuation.resume()
                    }
                }
            }
            #expect(await counter.count == 1)
        }
    }

    @Test func thousandsOfSleepingTasksCompleteInOrderOfReadiness() async throws {
        try await withLoop { loop in
            let counter = LoopCounter(loop: loop)
            let delays = (0..<3000).map { ($0 * 7919) % 10 }  // ten groups, interleaved
            // Deadlines from one start, 100 ms apart, taken once all 3,000 tasks are running:
            // starting them took over 10 s on a loaded machine, and a task that began after
            // its deadline then rightly finished after a later group (the test's flake, not
            // the loop's). The gate holds every task until the last one arrives.
            let gate = StartGate(expected: delays.count)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for delay in delays {
                    group.addTask(executorPreference: loop) {
                        let start = await gate.start()
                        let remaining = start + .milliseconds(delay * 100) - ContinuousClock.now
                        try await loop.sleep(for: max(remaining, .zero))
                        await counter.record(delay)
                    }
                }
                try await group.waitForAll()
            }
            let order = await counter.order
            #expect(order.count == 3000)
            #expect(order == order.sorted(), "tasks finished out of deadline order")
        }
    }

    @Test func closuresSubmittedFromManyThreadsAllRunOnTheLoop() async throws {
        try await withLoop { loop in
            let counter = LoopCounter(loop: loop)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                for _ in 0..<1000 {
                    loop.execute { counter.assumeIsolated { $0.increment() } }
                }
            }
            let allRan = try await eventually(loop) { loop.runBlocking { counter.assumeIsolated { $0.count } } == 8000 }
            #expect(allRan)
        }
    }

    @Test func cancellingASleepThrowsCancellationError() async throws {
        try await withLoop { loop in
            let task = Task(executorPreference: loop) {
                try await loop.sleep(for: .seconds(30))
            }
            try await loop.sleep(for: .milliseconds(10))
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
        }
    }

    @Test func cancelledTimerNeverFires() async throws {
        try await withLoop { loop in
            let counter = LoopCounter(loop: loop)
            // The signal is a timer due after the cancelled one: libuv runs timers in order of
            // their due time, so once it has fired, the cancelled one would have too.
            await withCheckedContinuation { (later: CheckedContinuation<Void, Never>) in
                loop.execute {
                    let timer = Timer.schedule(on: loop, after: .milliseconds(5)) { counter.assumeIsolated { $0.increment() } }
                    timer.cancel()
                    Timer.schedule(on: loop, after: .milliseconds(6)) { later.resume() }
                }
            }
            #expect(await counter.count == 0)
        }
    }
}

/// Holds tasks until `expected` of them wait, then gives them all one start instant, a
/// little after the last arrived.
private actor StartGate {
    private let expected: Int
    private var waiters: [CheckedContinuation<ContinuousClock.Instant, Never>] = []

    init(expected: Int) { self.expected = expected }

    func start() async -> ContinuousClock.Instant {
        await withCheckedContinuation { continuation in
            waiters.append(continuation)
            guard waiters.count == expected else { return }
            let instant = ContinuousClock.now + .milliseconds(200)
            for waiter in waiters { waiter.resume(returning: instant) }
            waiters.removeAll()
        }
    }
}
