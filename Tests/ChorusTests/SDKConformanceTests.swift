import Chorus
import ChorusJSON
import Foundation
import Testing
import TestSupport

/// Every request body shape Chorus sends — each provider, each structured-output mode,
/// streamed or not, with and without a system prompt — checked by the official `openai` and
/// `anthropic` Python SDKs (pinned in scripts/conformance/requirements.txt): against their
/// parameter types and by their own `create(**body)`. scripts/test builds the venv.
@Suite struct SDKConformanceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let python: String? = {
        let path =
            ProcessInfo.processInfo.environment["CHORUS_CONFORMANCE_PYTHON"]
            ?? root.appendingPathComponent(".venvs/conformance/bin/python").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    static var requests: [ChatRequest] {
        var all = OpenAIChatRequestConformanceTests.requests
        for mode in StructuredOutputMode.allCases {
            all.append(
                ChatRequest(
                    model: "m", messages: [.init(role: .system, content: "S"), .init(role: .user, content: "Q")],
                    maxTokens: 10, outputSchema: planSchema, outputSchemaName: "lead", outputMode: mode, stream: true))
        }
        return all
    }

    @Test(.enabled(if: python != nil, "no conformance venv: scripts/test creates it"))
    func everyBodyShapeIsAcceptedByTheOfficialSDKs() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var count = 0
        for (index, request) in Self.requests.enumerated() {
            try Data(OpenAIChatRequestBody.encode(request)).write(to: directory.appendingPathComponent("openai-\(index).json"))
            count += 1
            // Anthropic has no JSON mode; chorus validate refuses json_object for it.
            if request.outputMode != .jsonObject || request.outputSchema == nil {
                try Data(AnthropicRequestBody.encode(request)).write(to: directory.appendingPathComponent("anthropic-\(index).json"))
                count += 1
            }
        }
        try Data(JSONValue.object(["anthropic_version": .string(ModelSpec.defaultAnthropicVersion)]).serialized())
            .write(to: directory.appendingPathComponent("meta.json"))
        let checked = try execute(try #require(Self.python), [Self.root.appendingPathComponent("scripts/conformance/check_bodies.py").path, directory.path])
        let text = checked.stdout + checked.stderr
        #expect(checked.status == 0, "\(text)")
        #expect(text.contains(" bodies") && text.contains("\(count) bodies"), "\(text)")
    }
}
