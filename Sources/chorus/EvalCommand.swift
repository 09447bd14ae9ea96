import ArgumentParser
import Chorus
import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation
import Glibc

/// `chorus eval`: grades a workflow on a dataset under several model configurations.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Compare model configurations on a dataset: pass rate, cost, tokens, latency and escalation per variant.",
        discussion: """
            Every case of --cases (JSON Lines, schemas/eval-case.schema.json) runs under every variant: as-configured (the \
            files as they are: the cascade) and each --variant NAME:FROM=TO[,FROM=TO], which swaps models as replay --model \
            does (all-large:small=large). Each run is traced and linked to the eval. The report gives per variant the pass \
            rate with its 95% (Wilson) interval, total and per-case cost, tokens, p50/p95 latency per case, the share of \
            model-calling steps that escalated, and cost relative to the best-passing variant; per case, which variants passed.

            --reuse-plan forks every variant from the as-configured run of the same case at the first lead node's round-1 \
            workers (or --live-from POINT), so variants differ in the worker model alone; the reused plan's calls count at \
            their recorded price. --replay EVAL_ID re-grades a recorded eval against the dataset as it is now with no model \
            call (judges are replayed from their recorded runs). --show EVAL_ID prints a recorded eval's report.

            Exit status: 0 when the eval finished (and as-configured reached --min-pass-rate, if given), 1 when it was \
            interrupted or fell short, 2 for invalid files or flags.
            """
    )

    @Argument(help: "The workflow file (with --replay or --show: default, the one the eval recorded).")
    var workflow: String?

    @Option(help: "The dataset: JSON Lines, one case per line (evals/NAME.jsonl).")
    var cases: String?

    @Option(name: .customLong("variant"), help: "NAME:FROM=TO[,FROM=TO...]: a configuration to compare, by model swaps (repeatable).")
    var variants: [String] = []

    @Option(name: .customLong("parallel-cases"), help: "Cases in flight at once (each runs its variants in turn).")
    var parallelCases = 8

    @OptionGroup var otel: OTelOptions

    @OptionGroup var logging: LogOptions

    @OptionGroup var parallel: ParallelOptions

    @Option(help: "Run only the first N cases.")
    var limit: Int?

    @Option(
        name: .customLong("approve"),
        help:
            "A node (or model:NAME, tool:NAME) that waits for a person, approved for every run of the eval (repeatable); an eval of a workflow with approval steps needs one per step."
    )
    var approve: [String] = []

    @Flag(name: .customLong("reuse-plan"), help: "Fork each variant from the as-configured run's recorded plan: differences come from the workers alone.")
    var reusePlan = false

    @Option(
        name: .customLong("live-from"), help: "With --reuse-plan: where the forks turn live (as replay --live-from; default the first lead's NODE/round-1).")
    var liveFrom: String?

    @Option(help: "Re-grade this recorded eval with the dataset as it is now: no model call.")
    var replay: String?

    @Option(help: "Print this recorded eval's report.")
    var show: String?

    @Option(name: .customLong("min-pass-rate"), help: "Exit 1 when as-configured passes fewer than this fraction of the cases (a CI gate).")
    var minPassRate: Double?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Also write the report as one self-contained HTML file.")
    var html: String?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if replay != nil && show != nil { throw ValidationError("--replay and --show: give one") }
        if replay == nil && show == nil {
            if workflow == nil { throw ValidationError("missing the workflow file: chorus eval WORKFLOW --cases evals/NAME.jsonl") }
            if cases == nil { throw ValidationError("missing --cases evals/NAME.jsonl") }
        } else if !variants.isEmpty || reusePlan || liveFrom != nil || limit != nil {
            throw ValidationError("--variant, --reuse-plan, --live-from and --limit apply to a new eval, not to --replay or --show")
        }
        if liveFrom != nil && !reusePlan { throw ValidationError("--live-from needs --reuse-plan") }
        guard (1...4096).contains(parallelCases) else { throw ValidationError("--parallel-cases must be between 1 and 4096, got \(parallelCases)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more, got \(limit)") }
        if let minPassRate, !(0...1).contains(minPassRate) { throw ValidationError("--min-pass-rate must be between 0 and 1, got \(minPassRate)") }
        for variant in variants {
            do { _ = try EvalVariant(parsing: variant) } catch { throw ValidationError(error.description) }
        }
    }

    func run() throws {
        if let show { return try output(try recordedReport(show)) }
        let store = try common.openStore()
        let source = try replay.map { id in try Self.findEval(id, in: store) }
        let workflowPath = workflow ?? source?.workflowPath ?? ""
        let project = try common.loadProject(workflow: workflowPath, recordedConfig: source?.configPath)
        let casesPath = cases ?? source?.casesPath ?? ""
        var dataset: [EvalCase]
        switch EvalCases.load(casesPath, workflow: project.workflow, agents: project.agents) {
        case .success(let loaded): dataset = loaded
        case .failure(let failure): failure.issues.forEach { printError($0.description) }; throw ExitCode(2)
        }
        if let limit { dataset = Array(dataset.prefix(limit)) }
        let plan: EvalPlan
        do {
            plan = try EvalPlan(
                project: project, cases: dataset, casesPath: casesPath, variants: try variants.map(EvalVariant.init(parsing:)),
                parallelCases: parallelCases, maxParallel: parallel.maxParallel, reusePlan: reusePlan, liveFrom: liveFrom,
                approve: approve, regrading: source != nil)
        } catch {
            printError("chorus eval: \(error)")
            throw ExitCode(2)
        }
        _ = try? store.markAbandonedRuns()
        let evalID = Orchestrator.newRunID()
        let session = try LiveSession(store: store, workflow: project.workflow.name, maxParallel: parallel.maxParallel * parallelCases, otel: otel)
        let progress = EvalProgress(total: dataset.count * plan.variants.count)
        let ticker = source == nil ? EvalTicker(progress: progress, variants: plan.variants.map(\.name)) : nil
        ticker?.start()
        let result = session.execute(runID: evalID, showProgress: false) { [store] in
            await Result {
                if let source {
                    return try await Evaluator.regrade(source, plan: plan, evalID: evalID, store: store, trace: session.writer, loop: session.loop)
                }
                return await Evaluator.run(
                    plan, evalID: evalID, store: store, trace: session.writer, client: session.client,
                    loop: session.loop, progress: progress)
            }
        }
        ticker?.stop()
        switch result {
        case .success(let report):
            if let failure = session.writer.failure { printError("chorus eval: the trace could not be written: \(failure)") }
            try output(report)
            if report.eval.status != "finished" { throw ExitCode(1) }
        case .failure(let error):
            printError("chorus eval: \(error)")
            throw ExitCode(1)
        }
    }

    private func recordedReport(_ id: String) throws -> EvalReport {
        let store = try common.openStore(readOnly: true)
        return try EvalReport(recorded: try Self.findEval(id, in: store), store: store)
    }

    /// Prints the report (table or JSON), writes the HTML, and applies --min-pass-rate.
    private func output(_ report: EvalReport) throws {
        if json { print(report.json.text) } else { print(report.table) }
        if let html {
            do { try EvalReportHTML.render(report).write(toFile: html, atomically: true, encoding: .utf8) } catch {
                printError("chorus eval: cannot write \(html): \(error.localizedDescription)")
                throw ExitCode(1)
            }
            printError("chorus eval: report written to \(html)")
        }
        if let minPassRate, let configured = report.figures.first(where: { $0.variant == .asConfigured }), configured.passRate < minPassRate {
            printError(
                String(
                    format: "chorus eval: as-configured passed %.1f%% of the cases, under --min-pass-rate %.1f%%",
                    configured.passRate * 100, minPassRate * 100))
            throw ExitCode(1)
        }
    }

    static func findEval(_ id: String, in store: any TraceBackend) throws -> EvalRecord {
        guard let found = try store.eval(matching: id) else {
            printError("chorus eval: no eval '\(id)' in \(store.path) (or the prefix is not unique)")
            throw ExitCode(1)
        }
        return found
    }
}

/// The eval's progress on stderr: a line redrawn in place on a terminal, a line every
/// five seconds otherwise.
final class EvalTicker: @unchecked Sendable {
    private let progress: EvalProgress
    private let variants: [String]
    private let done = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let started = ContinuousClock.now
    private let terminal = isatty(STDERR_FILENO) == 1

    init(progress: EvalProgress, variants: [String]) {
        self.progress = progress
        self.variants = variants
    }

    func start() {
        let thread = Thread { [self] in
            while done.wait(timeout: .now() + (terminal ? 0.25 : 5)) == .timedOut { draw(final: false) }
            draw(final: true)
            finished.signal()
        }
        thread.name = "chorus-eval-progress"
        thread.start()
    }

    func stop() {
        done.signal()
        finished.wait()
    }

    private func draw(final: Bool) {
        let snapshot = progress.snapshot()
        let elapsed = Double((ContinuousClock.now - started).components.seconds)
        let parts = variants.map { "\($0) \(snapshot.passed[$0] ?? 0)/\(snapshot.finished[$0] ?? 0) passed" }
        let line = String(format: "[%.0fs] eval: %d/%d runs · ", elapsed, snapshot.done, progress.total) + parts.joined(separator: " · ")
        if terminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line + (final ? "\n" : "")).utf8))
        } else if !final || snapshot.done > 0 {
            printError(line)
        }
    }
}
