import ArgumentParser

/// The `chorus` command: a multi-agent orchestration runtime.
@main
struct Chorus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus",
        abstract: "Run multi-agent workflows on one event loop, with every step traced to SQLite.",
        subcommands: [RunCommand.self, ValidateCommand.self, RunsCommand.self, SimCommand.self]
    )
}
