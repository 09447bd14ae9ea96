import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// Which recorded answers become examples, on a real trace database (SQLite, and PostgreSQL
/// when scripts/test runs one): the accepted answer of each step, escalations alone on
/// request, and each reason a record is left out counted.
@Suite struct FineTuneExportTests {
    private static let openAI = "http://127.0.0.1:1/v1/chat/completions"
    private static let anthropic = "http://127.0.0.1:1/v1/messages"

    private static func request(_ question: String) -> [UInt8] {
        OpenAIChatRequestBody.encode(ChatRequest(model: "m", messages: [ChatMessage(role: .user, content: question)]))
    }
    private static func anthropicRequest(_ question: String) -> [UInt8] {
        AnthropicRequestBody.encode(
            ChatRequest(model: "m", messages: [ChatMessage(role: .system, content: "S"), ChatMessage(role: .user, content: question)]))
    }
    private static let openAIAnswer = Array(#"{"choices":[{"message":{"role":"assistant","content":"small says"}}]}"#.utf8)
    private static let anthropicAnswer = Array(#"{"content":[{"type":"text","text":"large says"}],"stop_reason":"end_turn"}"#.utf8)

    /// One step's calls: (model, url, request, response, outcome).
    private typealias Call = (model: String, url: String, request: [UInt8], response: [UInt8], outcome: CallOutcome)

    /// A run with `steps` (node = path), each ending `status`; `labels` is the run_started
    /// `data_labels` (nil: a run recorded before labels were kept), every step's node added
    /// with no label unless `listed` is false.
    private static func run(
        _ id: String, workflowPath: String = "w.json", labels: JSONValue?, listed: Bool = true,
        steps: [(path: String, status: StepStatus, escalated: Bool, calls: [Call])]
    ) -> [TraceChange] {
        var changes: [TraceChange] = [.run(RunRecord(id: id, workflow: "w", workflowPath: workflowPath, inputsJSON: "{}", startedAt: 1, ownerPID: nil))]
        var detail: [String: JSONValue] = ["workflow": "w"]
        if var nodes = labels?.objectValue, listed {
            for step in steps where nodes[step.path] == nil { nodes[step.path] = [] }
            detail[FineTuneExport.labelsKey] = .object(nodes)
        } else if let labels {
            detail[FineTuneExport.labelsKey] = labels
        }
        changes.append(.event(runID: id, .runStarted(.object(detail)), stepPath: nil, at: 1))
        for (index, step) in steps.enumerated() {
            let at = Double(2 + index)
            var record = StepRecord(runID: id, path: step.path, node: step.path, kind: .agent, agent: step.path == "plain" ? "writer" : "solver", startedAt: at)
            for (attempt, call) in step.calls.enumerated() {
                changes.append(
                    .modelCall(
                        ModelCallRecord(
                            runID: id, stepPath: step.path, attempt: attempt + 1, model: call.model, providerModel: call.model, url: call.url,
                            requestHash: "", responseHash: nil, httpStatus: 200, error: call.outcome == .answered ? nil : "fails the schema",
                            tokensIn: 1, tokensOut: 1, cost: 0, latencyMs: 1, startedAt: at + Double(attempt) / 10, finishReason: "stop",
                            firstTokenMs: nil, outcome: call.outcome), request: call.request, response: call.response))
            }
            if step.escalated {
                changes.append(.event(runID: id, .escalated(from: "small", to: "large", reason: "small: fails the schema"), stepPath: step.path, at: at))
            }
            record.status = step.status
            record.endedAt = at + 0.5
            changes.append(.step(record))
        }
        return changes
    }

    /// Every kind of record an export meets, across six runs.
    private static var trace: [TraceChange] {
        let escalation: [Call] = [
            ("small", openAI, request("Q1"), openAIAnswer, .invalid), ("large", anthropic, anthropicRequest("Q1"), anthropicAnswer, .answered),
        ]
        let plain: [Call] = [("small", openAI, request("Q2"), openAIAnswer, .answered)]
        var changes = run(
            "r1", labels: ["ask": ["pii"]],
            steps: [
                ("answer", .succeeded, true, escalation), ("plain", .succeeded, false, plain),
                ("ask", .succeeded, false, [("small", openAI, request("my SSN"), openAIAnswer, .answered)]),
                ("broken", .succeeded, false, [("small", openAI, Array("not json".utf8), openAIAnswer, .answered)]),
                ("forged", .succeeded, false, [("small", openAI, request("Q3"), Array("<html>".utf8), .answered)]),
                ("failed", .failed, true, [("small", openAI, request("Q4"), openAIAnswer, .invalid)]),
            ])
        // A fork's upstream, served from r1's recording: not new data.
        changes += run(
            "r2", labels: [:], steps: [("answer", .succeeded, true, escalation.map { ($0.model, "replay:r1", $0.request, $0.response, $0.outcome) })])
        // Recorded before labels were kept: labelled unknown, never guessed clean.
        changes += run("r3", labels: nil, steps: [("plain", .succeeded, false, [("small", openAI, request("Q5"), openAIAnswer, .answered)])])
        // The same requests again.
        changes += run("r4", labels: [:], steps: [("answer", .succeeded, true, escalation), ("plain", .succeeded, false, plain)])
        changes += run(
            "j", workflowPath: "judge:grader", labels: [:], steps: [("plain", .succeeded, false, [("small", openAI, request("J"), openAIAnswer, .answered)])])
        // A damaged labels entry counts as an unknown label.
        changes += run("r5", labels: ["plain": "pii"], steps: [("plain", .succeeded, false, [("small", openAI, request("Q6"), openAIAnswer, .answered)])])
        // A node the run's labels do not list is not taken for clean either.
        changes += run("r6", labels: [:], listed: false, steps: [("stray", .succeeded, false, [("small", openAI, request("Q7"), openAIAnswer, .answered)])])
        return changes
    }

    private static func stores() throws -> [any TraceBackend] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)/chorus.db").path
        var stores: [any TraceBackend] = [try TraceStore(path: path)]
        if postgresURL != nil { stores.append(try TraceLocation(try newPostgresDatabase()).open()) }
        for store in stores { try store.makeWriteSession().commit(trace) }
        return stores
    }

    private func runs(_ store: any TraceBackend) throws -> [RunRecord] {
        try ["r1", "r2", "r3", "r4", "j", "r5", "r6"].map { try #require(try store.run(matching: $0)) }
    }

    @Test func acceptedAnswersAreExportedAndEveryOtherRecordIsCountedWithItsReason() throws {
        for store in try Self.stores() {
            let outcome = try FineTuneExport.examples(of: try runs(store), store: store, options: .init())
            #expect(outcome.examples.map { $0.messages.last?["content"] } == ["large says", "small says"], "\(store.path)")
            #expect(outcome.examples[0].messages.first == ["role": "system", "content": "S"], "the Anthropic call converted")
            #expect(
                outcome.excluded == [
                    "labelled pii": 1, "unreadable body": 2, "not accepted": 1, "replayed": 1, "labelled unknown": 3, "duplicate": 2,
                    "judge run": 1,
                ], "\(store.path)")
        }
    }

    @Test func escalatedKeepsOnlyTheLargerModelsAnswersToPromptsASmallOneFailed() throws {
        for store in try Self.stores() {
            let outcome = try FineTuneExport.examples(of: try runs(store), store: store, options: .init(only: .escalated))
            #expect(outcome.examples.count == 1)
            #expect(outcome.examples.first?.messages.last == ["role": "assistant", "content": "large says"])
            #expect(outcome.excluded["not escalated"] == 9 && outcome.excluded["duplicate"] == 1 && outcome.excluded["replayed"] == 1)
        }
    }

    @Test func includedLabelsAndAnAgentChooseWhatIsExported() throws {
        for store in try Self.stores() {
            let included = try FineTuneExport.examples(of: try runs(store), store: store, options: .init(includeLabels: ["pii", "unknown"]))
            #expect(included.examples.count == 6 && included.excluded["labelled pii"] == nil && included.excluded["labelled unknown"] == nil)
            #expect(included.examples.contains { $0.messages.first?["content"] == "my SSN" })
            let writer = try FineTuneExport.examples(of: try runs(store), store: store, options: .init(agent: "writer"))
            #expect(writer.agentSeen && writer.examples.count == 1 && writer.examples.first?.messages.first?["content"] == "Q2")
            let nobody = try FineTuneExport.examples(of: try runs(store), store: store, options: .init(agent: "nobody"))
            #expect(!nobody.agentSeen && nobody.examples.isEmpty)
        }
    }

    /// A secret in a recorded body (a provider echoing a key, a key pasted into an input) is
    /// masked in every string of the example.
    @Test func aSecretTheRedactorsKnowNeverLeaves() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)/chorus.db").path
        let store = try TraceStore(path: path)
        let secret = "sk-test-0123456789"
        let echo = Array(#"{"choices":[{"message":{"role":"assistant","content":"your key is \#(secret)"}}]}"#.utf8)
        try store.makeWriteSession().commit(
            Self.run("s", labels: [:], steps: [("plain", .succeeded, false, [("small", Self.openAI, Self.request("key \(secret)?"), echo, .answered)])]))
        let redactor = try #require(SecretRedactor(secret))
        let outcome = try FineTuneExport.examples(of: [try #require(try store.run(matching: "s"))], store: store, options: .init(redactors: [redactor]))
        let text = outcome.examples.map(\.json.text).joined()
        #expect(!text.contains("0123456789") && text.contains("your key is [redacted]") && text.contains("key [redacted]?"), "\(text)")
    }
}
