import ArgumentParser
import ChorusIO
import Glibc

/// This build's version, for `chorus --version`.
let chorusVersion = "0.24.0"

/// The `chorus` command: a multi-agent orchestration runtime.
@main
struct Chorus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus",
        abstract: "Run multi-agent workflows on one event loop, with every step traced to SQLite.",
        version: chorusVersion,
        subcommands: [
            RunCommand.self, ResumeCommand.self, ReplayCommand.self, ApproveCommand.self, DenyCommand.self, ValidateCommand.self,
            EvalCommand.self, RunsCommand.self, SubmitCommand.self, WorkerCommand.self, StepsCommand.self, QueueCommand.self, SimCommand.self,
        ]
    )

    /// Parses and runs, mapping usage errors to exit status 2 (ArgumentParser's default
    /// is 64) so that every usage or validation error exits the same way.
    static func main() {
        SignalWatcher.prepareProcess()
        Diagnostics.bootstrap()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                // One line, as every other error: the problem, then where help is.
                let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid usage"
                printError("chorus: \(message) (see chorus help)")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}
