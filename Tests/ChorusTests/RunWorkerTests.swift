import Chorus
import ChorusCoordination
import ChorusIO
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// The worker loop as a library: leases from a real PostgreSQL run queue and runs real
/// children (a small script standing in for the chorus executable), recording how each
/// ended. `chorus worker` end to end is in WorkerCommandTests.
@Suite(.enabled(if: postgresURL != nil, "CHORUS_TEST_POSTGRES_URL is unset: scripts/test starts a PostgreSQL server"))
struct RunWorkerTests {
    /// A stand-in for `chorus`: `run` reads the inputs from its standard input and succeeds,
    /// or fails with an error when they say so.
    private func fakeChorus() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("chorus").path
        try """
        #!/bin/sh
        inputs=$(cat)
        case "$inputs" in
          *fail*) echo '{"status":"failed","error":"the step failed"}'; exit 1 ;;
          *) echo '{"status":"succeeded","run_id":"run-of-it"}' ;;
        esac
        """.write(toFile: path, atomically: true, encoding: .utf8)
        guard chmod(path, 0o755) == 0 else { throw CocoaError(.fileWriteNoPermission) }
        return path
    }

    @Test func leasedRunsAreRunAndFinishedAsTheirChildrenEnded() async throws {
        let url = try newPostgresDatabase()
        let queue = try #require(TraceLocation.postgres(url: url).openCoordination()).runQueue()
        try queue.submit(id: "s-ok", workflowPath: "/w.json", configPath: "/chorus.json", inputsJSON: #"{"q":"fine"}"#)
        try queue.submit(id: "s-bad", workflowPath: "/w.json", configPath: "/chorus.json", inputsJSON: #"{"q":"fail"}"#)
        let lines = LogLines()
        let worker = RunWorker(
            queue: queue, steps: nil,
            options: .init(
                owner: "test-worker", maxRuns: 2, leaseSeconds: 30, maxParallel: 4, shareSteps: false,
                exitWhenIdle: true, executable: try fakeChorus(), location: url),
            log: { lines.append($0) })
        let loop = try EventLoop(name: "worker-test")
        defer { loop.shutdown() }
        // The loop polls the database and blocks its thread: not one of the test's.
        let ending = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: worker.run(on: loop)) }.start()
        }
        #expect(ending == .idle(finished: 2))
        let rows = Dictionary(uniqueKeysWithValues: try queue.all().map { ($0.id, $0) })
        #expect(rows["s-ok"]?.status == "succeeded" && rows["s-ok"]?.error == nil && rows["s-ok"]?.runIDs == ["s-ok"])
        #expect(rows["s-bad"]?.status == "failed" && rows["s-bad"]?.error == "the step failed", "\(String(describing: rows["s-bad"]))")
        #expect(lines.all.contains("chorus worker: s-ok succeeded (run run-of-it)"), "\(lines.all)")
    }

    @Test func aStoppedWorkerHandsItsRunsBack() async throws {
        let url = try newPostgresDatabase()
        let queue = try #require(TraceLocation.postgres(url: url).openCoordination()).runQueue()
        try queue.submit(id: "s-long", workflowPath: "/w.json", configPath: "/chorus.json", inputsJSON: "{}")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let slow = directory.appendingPathComponent("chorus").path
        try "#!/bin/sh\ncat > /dev/null\nexec sleep 60\n".write(toFile: slow, atomically: true, encoding: .utf8)
        #expect(chmod(slow, 0o755) == 0)
        let lines = LogLines()
        let toStop = WorkerBox()
        let worker = RunWorker(
            queue: queue, steps: nil,
            options: .init(
                owner: "test-worker", maxRuns: 1, leaseSeconds: 30, maxParallel: 4, shareSteps: false,
                exitWhenIdle: true, executable: slow, location: url),
            log: { line in
                lines.append(line)
                if line.hasPrefix("chorus worker: starting s-long") { toStop.value?.stop() }
            })
        toStop.value = worker
        let loop = try EventLoop(name: "worker-test")
        defer { loop.shutdown() }
        let ending = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: worker.run(on: loop)) }.start()
        }
        #expect(ending == .stopped(runsHandedBack: 1, helpersStopped: 0), "\(lines.all)")
        #expect(
            try queue.lease(owner: "another", seconds: 30, now: Date().timeIntervalSince1970)?.id == "s-long",
            "a run handed back is leased again at once")
    }
}

/// The worker a log line stops (set before it runs).
private final class WorkerBox: @unchecked Sendable {
    private let lock = NSLock()
    private var worker: RunWorker?
    var value: RunWorker? {
        get { lock.withLock { worker } }
        set { lock.withLock { worker = newValue } }
    }
}

private final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
