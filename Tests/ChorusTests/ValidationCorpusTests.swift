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
        let result = SpecLoader.loadProject(
            workflow: Self.directory.appendingPathComponent(file).path,
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
        try Data(#"{"name": "w", "nodes": {"a": {"kind": "agent", "agent": "worker", "retry": 1, "max_parallel": 0}}, "output": "zzz", "extra": true}"#.utf8)
            .write(to: file)
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: file.path, config: Self.directory.appendingPathComponent("chorus.json").path) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.issues.count >= 3, "\(failure.issues)")
    }

    @Test func anAbsoluteAgentsDirIsTakenAsIs() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("abs-\(UUID().uuidString).json")
        let agents = Self.directory.deletingLastPathComponent().appendingPathComponent("agents").path
        try Data(
            #"{"name": "w", "inputs": {"question": {"type": "string"}}, "agents_dir": "\#(agents)", "nodes": {"a": {"kind": "agent", "agent": "worker"}}, "output": "a"}"#
                .utf8
        ).write(to: file)
        let result = SpecLoader.loadProject(workflow: file.path, config: Self.directory.appendingPathComponent("chorus.json").path)
        if case .failure(let failure) = result { Issue.record("\(failure.issues)") }
    }

    @Test func theShippedExamplesAreValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let workflows = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("workflows").path).filter { $0.hasSuffix(".json") }
        #expect(!workflows.isEmpty)
        for name in workflows {
            for config in ["chorus.json", "chorus.example.json"] {
                let result = SpecLoader.loadProject(
                    workflow: root.appendingPathComponent("workflows/\(name)").path,
                    config: root.appendingPathComponent(config).path)
                if case .failure(let failure) = result { Issue.record("workflows/\(name) with \(config): \(failure)") }
            }
        }
    }

    @Test func theEmbeddedSchemasMatchTheFilesInSchemas() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for (name, embedded) in [
            ("chorus", SpecSchemas.chorus), ("agent", SpecSchemas.agent), ("workflow", SpecSchemas.workflow), ("tool", SpecSchemas.tool),
            ("eval-case", SpecSchemas.evalCase),
        ] {
            let file = try JSONValue(parsing: Array(try Data(contentsOf: root.appendingPathComponent("schemas/\(name).schema.json"))))
            #expect(file == (try JSONValue(parsing: embedded)), "schemas/\(name).schema.json differs from SpecSchemas.\(name)")
        }
    }

    /// Templates that are valid must stay valid under the field checks (issue 24's review):
    /// inverted sections, transforms, `{{.}}`, booleans, maps, combined schemas, blocks.
    @Test func validTemplatesPassTheFieldChecks() throws {
        let base = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/mistakes/base")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("valid-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: base, to: directory)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prompt = """
            {{^research}}nothing yet{{/research}}{{#first(research)}}First: {{finding}}{{/first(research)}}
            {{#research}}{{#confidence}}({{confidence}}){{/confidence}}{{^sources}}no sources{{/sources}}{{inputs.question}}{{/research}}
            {{#plan.subtasks}}- {{.}} ({{inputs.question}}){{/plan.subtasks}}{{#inputs.question}}{{.}}{{/inputs.question}}
            {{#research}}{{#sources}}{{url}} {{finding}}{{/sources}}{{/research}}
            """
        var writer = try JSONValue(parsing: Array(try Data(contentsOf: directory.appendingPathComponent("agents/writer.json")))).objectValue ?? [:]
        writer["prompt"] = .string(prompt)
        try Data(JSONValue.object(writer).serialized()).write(to: directory.appendingPathComponent("agents/writer.json"))
        let plain = SpecLoader.loadProject(
            workflow: directory.appendingPathComponent("workflows/brief.json").path,
            config: directory.appendingPathComponent("chorus.json").path)
        if case .failure(let failure) = plain { Issue.record("\(failure)") }
        // A map (additionalProperties a schema): any field may come, none is refused.
        writer["prompt"] = "{{#research}}{{whatever_key}}{{/research}}"
        try Data(JSONValue.object(writer).serialized()).write(to: directory.appendingPathComponent("agents/writer.json"))
        var researcher = try JSONValue(parsing: Array(try Data(contentsOf: directory.appendingPathComponent("agents/researcher.json")))).objectValue ?? [:]
        var schema = researcher["output_schema"]?.objectValue ?? [:]
        schema["additionalProperties"] = ["type": "string"]  // a map: any field may come
        researcher["output_schema"] = .object(schema)
        try Data(JSONValue.object(researcher).serialized()).write(to: directory.appendingPathComponent("agents/researcher.json"))
        let result = SpecLoader.loadProject(
            workflow: directory.appendingPathComponent("workflows/brief.json").path,
            config: directory.appendingPathComponent("chorus.json").path)
        if case .failure(let failure) = result { Issue.record("\(failure)") }
    }
}
