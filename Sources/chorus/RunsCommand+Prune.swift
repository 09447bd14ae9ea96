import ArgumentParser
import ChorusJSON
import ChorusTrace
import Foundation

extension RunsCommand {
    /// `chorus runs prune`: removes old runs and the bodies only they used.
    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove old runs and the bodies only they used, then reclaim the space (VACUUM).",
            discussion: "Runs still running are never removed. With both options, a run goes if either says so."
        )
        @Option(name: .customLong("older-than"), help: "Remove runs started longer ago than this: 90s, 30m, 12h, 7d or 2w.")
        var olderThan: String?
        @Option(help: "Keep only the newest N runs.") var keep: Int?
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if olderThan == nil && keep == nil { throw ValidationError("give --older-than DURATION, --keep N or both") }
            if let olderThan, Self.seconds(olderThan) == nil {
                throw ValidationError("--older-than \(olderThan): expected a number and a unit, like 90s, 30m, 12h, 7d or 2w")
            }
            if let keep, keep < 0 { throw ValidationError("--keep must be 0 or more, got \(keep)") }
        }

        static func seconds(_ text: String) -> Double? {
            let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
            guard let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count >= 0 else { return nil }
            return count * unit
        }

        func run() throws {
            let store = try common.openStore()
            let report = try store.prune(olderThan: olderThan.flatMap(Self.seconds), keep: keep)
            if json {
                print(
                    JSONValue.object([
                        "runs_removed": .array(report.runsRemoved.map { .string($0) }), "bodies_removed": .number(Double(report.blobsRemoved)),
                        "bytes_before": .number(Double(report.bytesBefore)), "bytes_after": .number(Double(report.bytesAfter)),
                    ]).text)
                return
            }
            print(
                "removed \(report.runsRemoved.count) run\(report.runsRemoved.count == 1 ? "" : "s") and \(report.blobsRemoved) bodies; "
                    + "database \(Self.size(report.bytesBefore)) → \(Self.size(report.bytesAfter))")
        }

        static func size(_ bytes: Int64) -> String {
            bytes >= 1 << 20 ? String(format: "%.1f MB", Double(bytes) / 1_048_576) : String(format: "%.1f KB", Double(bytes) / 1024)
        }
    }
}
