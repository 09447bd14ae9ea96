import ChorusJSON
import Foundation
import Testing
import TestSupport

/// Every mistake of Tests/Fixtures/mistakes (issue 24: eleven ordinary mistakes in a correct
/// project, one caught): each is one change to a valid project, and each must end in
/// `chorus validate` and in `chorus run` — before its first request — with exit 2 and a line
/// naming the file, the JSON path and what was expected, at most 400 characters.
extension CLI {
    @Suite struct MistakeCorpusTests {
        static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/mistakes")

        /// A copy of base/ with one mistake made, its chorus.json pointing at `port`.
        private func project(with mistake: JSONValue, port: Int) throws -> URL {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-mistake-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: Self.corpus.appendingPathComponent("base"), to: directory)
            let config = directory.appendingPathComponent("chorus.json")
            let pointed = try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "127.0.0.1:1/", with: "127.0.0.1:\(port)/")
            try pointed.write(to: config, atomically: true, encoding: .utf8)
            let file = directory.appendingPathComponent(try #require(mistake["file"]?.stringValue))
            if let text = mistake["text"]?.stringValue {
                try text.write(to: file, atomically: true, encoding: .utf8)
                return directory
            }
            var document = try JSONValue(parsing: Array(try Data(contentsOf: file)))
            for change in mistake["set"]?.arrayValue ?? [] {
                document = Self.setting(document, path: change["path"]?.arrayValue ?? [], to: change["value"])
            }
            for path in mistake["remove"]?.arrayValue ?? [] {
                document = Self.setting(document, path: path.arrayValue ?? [], to: nil)
            }
            try Data(document.serialized()).write(to: file)
            return directory
        }

        /// `document` with the value at `path` (keys and indexes) replaced, or removed for nil.
        static func setting(_ document: JSONValue, path: [JSONValue], to value: JSONValue?) -> JSONValue {
            guard let first = path.first else { return value ?? .null }
            let rest = Array(path.dropFirst())
            if let index = first.intValue, var items = document.arrayValue, index < items.count {
                if rest.isEmpty, value == nil { items.remove(at: index) } else { items[index] = setting(items[index], path: rest, to: value) }
                return .array(items)
            }
            var object = document.objectValue ?? [:]
            let key = first.stringValue ?? ""
            if rest.isEmpty && value == nil { object.removeValue(forKey: key) } else { object[key] = setting(object[key] ?? [:], path: rest, to: value) }
            return .object(object)
        }

        @Test func everyMistakeIsCaughtBeforeACallWithItsFileAndPath() throws {
            let manifest = try JSONValue(parsing: Array(try Data(contentsOf: Self.corpus.appendingPathComponent("mistakes.json"))))
            let mistakes = manifest["mistakes"]?.arrayValue ?? []
            #expect(mistakes.count >= 40)
            let sim = try RunningChorus(["sim", "--max-seconds", "600"])
            defer { sim.process.terminate(); _ = sim.finish() }
            let port = Int(sim.firstLine().replacingOccurrences(of: "listening on ", with: ""))!
            for mistake in mistakes {
                let name = mistake["name"]?.stringValue ?? "?"
                let expected = mistake["expect"]?.stringValue ?? "?"
                let directory = try project(with: mistake, port: port)
                defer { try? FileManager.default.removeItem(at: directory) }
                let workflow = directory.appendingPathComponent("workflows/brief.json").path
                let config = directory.appendingPathComponent("chorus.json").path
                for command in [
                    ["validate", workflow, "--config", config],
                    ["run", workflow, "--config", config, "--input", "question=why", "--db", directory.appendingPathComponent("t.db").path],
                ] {
                    let result = try runChorus(command)
                    let lines = result.stderr.split(separator: "\n").map(String.init)
                    #expect(result.status == 2, "\(name): \(command[0]) exited \(result.status): \(result.stderr)")
                    #expect(lines.contains { $0.contains(expected) }, "\(name): \(command[0]) said \(lines)")
                    #expect(lines.allSatisfy { $0.count <= 400 }, "\(name): a line over 400 characters")
                    #expect(
                        lines.filter { !$0.hasSuffix("found") }.allSatisfy { $0.contains(".json") || $0.contains("chorus.json") },
                        "\(name): every problem names its file: \(lines)")
                }
            }
            let stats = try httpRequest(port: port, "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let body = stats.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
            #expect(try JSONValue(parsing: body)["requests"]?.intValue == 0, "no mistake reached a model")
        }
    }
}
