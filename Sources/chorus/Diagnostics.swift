import ArgumentParser
import Chorus
import Foundation
import Glibc
import Logging
import Synchronization

/// The CLI's diagnostics go through swift-log: progress lines are `info`, what Chorus and
/// its libraries log at `debug` (the MCP client's messages, say) shows with
/// `--log-level debug`, and `--log-level warning` keeps stderr to the run's last lines.
/// Every line passes a redactor for the secrets the environment holds (API keys, tokens,
/// OTLP headers), so no diagnostic prints one, whatever a provider or a library said.
enum Diagnostics {
    /// The level lines must reach; set once the command's options are parsed.
    static let level = Mutex<Logger.Level>(.info)
    static let started = ContinuousClock.now
    static let redactors = SecretRedactor.fromEnvironment(ProcessInfo.processInfo.environment)

    /// Installs the handler; called once, before any command runs.
    static func bootstrap() {
        if let text = ProcessInfo.processInfo.environment["CHORUS_LOG_LEVEL"], let parsed = Logger.Level(rawValue: text.lowercased()) {
            level.withLock { $0 = parsed }
        }
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label) }
    }

    static func redact(_ line: String) -> String { redactors.reduce(line) { $1.redact($0) } }

    static let logger = Logger(label: "chorus")
}

/// `[1.2s] message key=value`, one unbuffered line on stderr.
struct StderrLogHandler: LogHandler {
    let label: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level {
        get { Diagnostics.level.withLock { $0 } }
        set { Diagnostics.level.withLock { $0 = newValue } }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let (level, message) = (event.level, event.message)
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let prefix = label == "chorus" ? "" : "\(label): "
        let marker = level >= .warning ? "\(level): " : ""
        writeLine(
            Diagnostics.redact("[\(ProgressDisplay.format(ContinuousClock.now - Diagnostics.started))] \(marker)\(prefix)\(message)\(fields)"),
            to: STDERR_FILENO)
    }
}

/// `--log-level` for the commands that run workflows.
struct LogOptions: ParsableArguments {
    @Option(
        name: .customLong("log-level"),
        help: "Diagnostics on stderr from this level up: trace, debug, info (default), notice, warning, error, critical. Also $CHORUS_LOG_LEVEL.")
    var logLevel: String?

    func validate() throws {
        guard let logLevel else { return }
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError("--log-level \(logLevel): expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        Diagnostics.level.withLock { $0 = level }
    }
}
