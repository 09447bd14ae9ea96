import Chorus
import ChorusJSON
import Foundation
import Testing

/// One bad workflow file per mistake (Fixtures/invalid), each with the message it must
/// produce: file, JSON path and what was expected.
@Suite struct ValidationCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/invalid")
    static let expected: [String: String] = {
        let json = try! JSONValue(parsing: Array(try! Data(contentsOf: directory.appendingPathComponent("expected.json"))))
        return json.objectValue!.mapValues { $0.stringValue! }
    }()

    @Test(arguments: expected.keys.sorted())
    func eachMistakeIsReportedWithFilePathAndExpectation(_ file: String) throws {
        let result = SpecLoader.loadProject(workflow: Self.directory.appendingPathComponent(file).path,
                                            config: Self.directory.appendingPathComponent("chorus.json").path)
        guard case .failure(let failure) = result else {
            Issue.record("\(file) was accepted")
            return
        }
        let messages = failure.issues.map(\.description)
        #expect(messages.contains { $0.contains(Self.expected[file]!) }, "\(file): got \(messages)")
        #expect(failure.issues.allSatisfy { $0.file.hasSuffix(".json") }, "every issue names its file")
        #expect(messages.allSatisfy { $0.count <= 400 }, "a message quotes at most a short excerpt")
    }

    @Test func everyMistakeInOneFileIsReportedAtOnce() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("many-\(UUID().uuidString).json")
        try Data(#"{"name": "w", "nodes": {"a": {"kind": "agent", "agent": "worker", "retry": 1, "max_parallel": 0}}, "output": "zzz", "extra": true}"#.utf8).write(to: file)
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: file.path, config: Self.directory.appendingPathComponent("chorus.json").path) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.issues.count >= 3, "\(failure.issues)")
    }

    @Test func anAbsoluteAgentsDirIsTakenAsIs() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("abs-\(UUID().uuidString).json")
        let agents = Self.directory.deletingLastPathComponent().appendingPathComponent("agents").path
        try Data(#"{"name": "w", "inputs": {"question": {"type": "string"}}, "agents_dir": "\#(agents)", "nodes": {"a": {"kind": "agent", "agent": "worker"}}, "output": "a"}"#.utf8).write(to: file)
        let result = SpecLoader.loadProject(workflow: file.path, config: Self.directory.appendingPathComponent("chorus.json").path)
        if case .failure(let failure) = result { Issue.record("\(failure.issues)") }
    }

    @Test func theShippedExamplesAreValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let workflows = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("workflows").path).filter { $0.hasSuffix(".json") }
        #expect(!workflows.isEmpty)
        for name in workflows {
            for config in ["chorus.json", "chorus.example.json"] {
                let result = SpecLoader.loadProject(workflow: root.appendingPathComponent("workflows/\(name)").path,
                                                    config: root.appendingPathComponent(config).path)
                if case .failure(let failure) = result { Issue.record("workflows/\(name) with \(config): \(failure)") }
            }
        }
    }

    @Test func theEmbeddedSchemasMatchTheFilesInSchemas() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for (name, embedded) in [("chorus", SpecSchemas.chorus), ("agent", SpecSchemas.agent), ("workflow", SpecSchemas.workflow), ("tool", SpecSchemas.tool), ("eval-case", SpecSchemas.evalCase)] {
            let file = try JSONValue(parsing: Array(try Data(contentsOf: root.appendingPathComponent("schemas/\(name).schema.json"))))
            #expect(file == (try JSONValue(parsing: embedded)), "schemas/\(name).schema.json differs from SpecSchemas.\(name)")
        }
    }
}
