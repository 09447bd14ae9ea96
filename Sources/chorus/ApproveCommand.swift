import ArgumentParser
import Chorus
import ChorusJSON
import ChorusTrace
import Foundation

/// `chorus approve` / `chorus deny`: a person's decision on a node a paused run waits for,
/// recorded in that run's audit chain (who, when, the note). `chorus resume` then continues.
struct ApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a node a paused run waits for (then chorus resume RUN).")

    @OptionGroup var decision: DecisionOptions

    func run() throws { try Decision.record(approved: true, decision, command: "approve") }
}

struct DenyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deny",
        abstract: "Deny a node a paused run waits for: resumed, its steps fail with the note.")

    @OptionGroup var decision: DecisionOptions

    func run() throws { try Decision.record(approved: false, decision, command: "deny") }
}

/// What `approve` and `deny` both take.
struct DecisionOptions: ParsableArguments {
    @Argument(help: "The paused run (id or unique prefix).") var runID: String
    @Argument(help: "What waits: a node, tool:NAME or model:NAME.") var node: String
    @Option(help: "Why, for the audit record (and a denied step's error).") var note: String?
    @Flag(
        name: .customLong("force-unverified"),
        help: "Decide even if the run's audit chain (or an ancestor's) does not verify; the decision records the break.")
    var forceUnverified = false
    @OptionGroup var common: CommonOptions
}

enum Decision {
    static func record(approved: Bool, _ options: DecisionOptions, command: String) throws {
        let store = try options.common.openStore()
        let run = try RunsCommand.find(options.runID, in: store, command: command)
        let by = ProcessInfo.processInfo.environment["CHORUS_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        do {
            try ApprovalDecision(node: options.node, approved: approved, by: by, note: options.note)
                .record(onRun: run.id, store: store, forceUnverified: options.forceUnverified)
        } catch let error as UnverifiedRecord {
            printError("chorus \(command): \(error)")
            throw ExitCode(1)
        } catch let error as ApprovalDecisionError {
            printError("chorus \(command): \(error)")
            throw ExitCode(1)
        }
        print("\(approved ? "approved" : "denied") \(options.node) of run \(run.id) (by \(by)); continue it with: chorus resume \(run.id)")
    }
}

extension RunsCommand {
    /// `chorus runs pending`: paused runs and the nodes they wait for.
    struct Pending: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Runs paused for approval, and the nodes each waits for.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let store = try common.openStore(readOnly: true)
            // A paused run that was resumed waits no more once its resume runs, succeeded or is
            // paused itself (then listed on its own); a resume interrupted before it got there
            // leaves the decision to make.
            let paused = try store.runs(limit: 10_000).filter { run in
                run.status == .awaitingApproval
                    && (try? store.runs(parent: run.id))?.contains {
                        $0.relation == .resume && [.running, .succeeded, .awaitingApproval].contains($0.status)
                    } != true
            }
            let rows = try paused.map { run in (run, ApprovalDecision.pending(in: try store.events(ofRun: run.id))) }
            if json {
                print(
                    JSONValue.array(
                        rows.map {
                            [
                                "run_id": .string($0.0.id), "workflow": .string($0.0.workflow),
                                "nodes": .array($0.1.map { .string($0) }),
                            ]
                        }
                    ).text)
                return
            }
            if rows.isEmpty { print("nothing waits for approval"); return }
            for (run, nodes) in rows {
                print(
                    pad(run.id, 23) + " " + pad(run.workflow, 16) + " waits for: "
                        + (nodes.isEmpty ? "(decided; chorus resume \(run.id))" : nodes.joined(separator: ", ")))
            }
        }
    }
}
