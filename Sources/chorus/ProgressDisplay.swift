import Chorus
import Foundation
import Glibc

/// Shows a run's progress on stderr: on a terminal, one block redrawn in place ten times
/// a second; otherwise plain log lines for notable events only.
final class ProgressDisplay: @unchecked Sendable {
    private let workflow: String
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?
    private var drawnLines = 0
    private let started = ContinuousClock.now
    private var progress: RunProgress?
    private var runID = ""

    init(workflow: String) {
        self.workflow = workflow
    }

    func start(progress: RunProgress, runID: String) {
        self.progress = progress
        self.runID = runID
        guard isTerminal else {
            log("run \(runID) of \(workflow) started")
            return
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now(), repeating: .milliseconds(100))
        timer.setEventHandler { [weak self] in self?.redraw() }
        timer.resume()
        self.timer = timer
    }

    /// A notable event: a line of its own (above the block on a terminal).
    var log: @Sendable (String) -> Void {
        { [weak self] line in
            guard let self else { return }
            if self.isTerminal { return }  // the block shows node state; skip the chatter
            self.lock.withLock { Diagnostics.logger.info("\(line)") }
        }
    }

    private func redraw() {
        guard let snapshot = progress?.snapshot() else { return }
        var lines = [
            "chorus run \(workflow) (\(runID))  \(Self.format(ContinuousClock.now - started))  "
                + "calls \(snapshot.calls)  retries \(snapshot.retries)  tokens \(snapshot.tokensIn)/\(snapshot.tokensOut)  "
                + String(format: "$%.4f", snapshot.cost)
        ]
        for (id, c) in snapshot.nodes {
            let state = c.skipped ? "skipped" : c.finished ? "done" : (c.running > 0 ? "running" : "waiting")
            let bar = Self.bar(done: c.succeeded + c.failed, total: c.total)
            lines.append(
                "  \(id.padding(toLength: 14, withPad: " ", startingAt: 0)) \(bar) \(c.succeeded + c.failed)/\(c.total)  running \(c.running)  failed \(c.failed)  \(state)"
            )
        }
        lock.withLock {
            var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
            for line in lines { text += "\u{1B}[2K" + TerminalText.escaped(line) + "\n" }
            text.removeLast()  // writeLine adds the last newline
            writeLine(text, to: STDERR_FILENO)
            drawnLines = lines.count
        }
    }

    func stop() {
        timer?.cancel()
        timer = nil
        if isTerminal { redraw() }
    }

    func finish(_ summary: RunSummary, command: String = "run", traced: Bool = true) {
        var line =
            "run \(summary.runID) \(summary.status.rawValue) in \(Self.format(summary.elapsed)): \(summary.calls) calls, "
            + "\(summary.tokensIn) tokens in, \(summary.tokensOut) out, " + String(format: "$%.4f", summary.cost)
        // A step paused for a person has not failed: counted apart.
        let waiting = summary.failedItems.filter { $0.reason.hasPrefix("awaiting approval") }.count
        let failed = summary.failedItems.count - waiting
        if failed > 0 {
            let tolerated = summary.status == .succeeded ? ", tolerated by min_success" : ""
            line += "; \(failed) step\(failed == 1 ? "" : "s") failed or not run\(tolerated) (--json lists them with why; chorus runs show too)"
        }
        if waiting > 0 { line += "; \(waiting) step\(waiting == 1 ? " waits" : "s wait") for approval" }
        printError(line)
        if let error = summary.error { printError("chorus \(command): \(error)") }
        if traced { printError("trace: chorus runs show \(summary.runID)") }
    }

    static func format(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return String(format: "%.1fs", Double(ms) / 1000)
    }

    static func bar(done: Int, total: Int, width: Int = 20) -> String {
        let filled = total == 0 ? 0 : min(width, done * width / total)
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}
