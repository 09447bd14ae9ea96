import ArgumentParser
import ChorusJSON
import ChorusTrace

extension RunsCommand {
    /// `chorus runs search`: full-text search over prompts and responses.
    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Full-text search (SQLite FTS5) over every prompt and response: run, step and a snippet per match.",
            discussion: "Every word must appear. With --raw, TEXT is an FTS5 query (\"exact phrase\", OR, NEAR(...), prefix*)."
        )
        @Argument(help: "Words to find.") var text: [String]
        @Flag(help: "Treat TEXT as an FTS5 query.") var raw = false
        @Option(help: "At most this many matches.") var limit: Int = 20
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            // Writable when it can be, to bring the search index up to date; else as it is.
            let store = try (try? TraceLocation(common.databasePath).open()) ?? common.openStore(readOnly: true)
            let hits: [SearchHit]
            do { hits = try store.search(text.joined(separator: " "), raw: raw, limit: limit) } catch {
                printError("chorus runs search: \(raw ? "not a valid FTS5 query" : "search failed"): \(error)")
                throw ExitCode(1)
            }
            if json {
                print(
                    JSONValue.array(
                        hits.map {
                            .object([
                                "run_id": .string($0.runID), "step": .string($0.stepPath), "attempt": .number(Double($0.attempt)),
                                "in": .string($0.role), "snippet": .string($0.snippet),
                            ])
                        }
                    ).text)
                return
            }
            if hits.isEmpty { print("no matches"); return }
            for hit in hits {
                let snippet = hit.snippet.split(whereSeparator: \.isNewline).joined(separator: " ")
                print(pad(hit.runID, 23) + " " + pad("\(hit.stepPath)#\(hit.attempt)", 26) + " " + pad(hit.role, 8) + " " + snippet)
            }
        }
    }
}
