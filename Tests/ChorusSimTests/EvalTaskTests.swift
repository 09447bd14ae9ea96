import ChorusIO
import ChorusJSON
@testable import ChorusSim
import Testing

/// The simulator's ground truth: the tasks it writes, solves and grades, and how a model
/// with an accuracy answers them over the wire.
@Suite struct EvalTaskTests {
    @Test func everyGeneratedTaskIsRecognisedWithTheAnswerItsCaseExpects() throws {
        let cases = EvalTaskGenerator.cases(count: 400, seed: 9)
        #expect(Set(cases.compactMap { $0["id"]?.stringValue }).count == 400)
        for value in cases {
            let text = try #require(value["inputs"]?["task"]?.stringValue)
            let task = try #require(EvalTask.recognise(text), "\(value.text)")
            let expect = try #require(value["expect"]?.arrayValue?.first)
            if let number = expect["number"]?.numberValue { #expect(task.kind == .arithmetic && Double(task.answer) == number) }
            if let equals = expect["equals"]?.stringValue { #expect(task.answer == equals, "\(value.text)") }
            if let regex = expect["regex"]?.stringValue { #expect(regex.contains(task.answer)) }
            var rng = SplitMix64(seed: 1)
            #expect(task.wrongAnswer(&rng) != task.answer, "a wrong answer is wrong: \(value.text)")
        }
        #expect(EvalTaskGenerator.cases(count: 8, seed: 9).map(\.text) == cases.prefix(8).map(\.text), "the same seed writes the same cases")
    }

    /// Each generated ticket is triaged to the label its case expects, and its specialist's
    /// task (the order number, the account email, the sentiment) is recognised in it with
    /// the answer the case expects.
    @Test func everyGeneratedTicketIsTriagedAsItsCaseExpectsAndItsSpecialistCanSolveIt() throws {
        let cases = EvalTaskGenerator.triageCases(count: 200, seed: 9)
        #expect(Set(cases.compactMap { $0["id"]?.stringValue }).count == 200)
        for value in cases {
            let ticket = try #require(value["inputs"]?["ticket"]?.stringValue)
            let triaged = try #require(EvalTask.recognise("\(EvalTask.ticketMarker) \"\(ticket)\""))
            #expect(triaged.kind == .ticket && triaged.answer == value["expect_route"]?.stringValue, "\(value.text)")
            let expect = try #require(value["expect"]?.arrayValue?.first)
            let specialist: String? =
                switch triaged.answer {
                case "billing": "Extract the order number from: \"\(ticket)\""
                case "technical": "Extract the email address from: \"\(ticket)\""
                case "general": "Classify the sentiment of this review as positive, negative or neutral: \"\(ticket)\""
                default: nil
                }
            guard let specialist else { continue }
            let task = try #require(EvalTask.recognise(specialist), "\(value.text)")
            if let equals = expect["equals"]?.stringValue { #expect(task.answer == equals, "\(value.text)") }
            if let regex = expect["regex"]?.stringValue { #expect(regex.contains(task.answer), "\(value.text)") }
        }
    }

    @Test func arithmeticRefusesWhatIsNoTask() {
        #expect(Arithmetic.evaluate("3 * (71 - 13)") == 174)
        #expect(Arithmetic.evaluate("2 + 3 * 4") == 14)
        #expect(Arithmetic.evaluate("99999999999 * 99999999999 * 99999999999") == nil, "overflow")
        #expect(Arithmetic.evaluate(String(repeating: "(", count: 20) + "1" + String(repeating: ")", count: 20)) == nil, "too deep")
        #expect(Arithmetic.evaluate("2 +") == nil && Arithmetic.evaluate("two") == nil && Arithmetic.evaluate("") == nil)
        #expect(EvalTask.recognise("Tell me about small models.") == nil)
    }

    @Test func aJudgingPromptIsGradedByTheReference() {
        #expect(EvalTask.judge("Reference answer: 42\nCandidate answer: {\"answer\": \"42\"}\n")?.pass == true)
        #expect(EvalTask.judge("Reference answer: Positive\nCandidate answer: positive\n")?.pass == true)
        #expect(EvalTask.judge("Reference answer: 41\nCandidate answer: {\"answer\": \"42\"}\n")?.pass == false)
        #expect(EvalTask.judge("Candidate answer: 42") == nil)
    }

    @Test func aModelWithAnAccuracyAnswersTheSameCaseTheSameWayEveryTime() async throws {
        let sim = try SimHarness { $0.accuracy = ["acc-half": 0.5] }
        var right = 0, unparsable = 0
        for value in EvalTaskGenerator.cases(count: 60, seed: 4) {
            let task = value["inputs"]?["task"] ?? ""
            let body: JSONValue = [
                "model": "acc-half", "messages": [["role": "user", "content": task]],
                "response_format": [
                    "type": "json_schema",
                    "json_schema": [
                        "name": "a",
                        "schema": [
                            "type": "object", "properties": ["answer": ["type": "string"], "confidence": ["type": "number"]],
                        ],
                    ],
                ],
            ]
            let first = try JSONValue(parsing: try await sim.chat(body).body)["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
            let again = try JSONValue(parsing: try await sim.chat(body).body)["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
            #expect(first == again)
            guard let answer = try? JSONValue(parsing: first) else { unparsable += 1; continue }
            let solved = EvalTask.recognise(task.stringValue ?? "")?.answer
            if answer["answer"]?.stringValue == solved {
                right += 1
                #expect((answer["confidence"]?.numberValue ?? 0) >= 0.75, "a right answer is confident")
            }
        }
        await sim.shutdown()
        #expect(right > 15 && right < 45, "about half right: \(right)")
        #expect(unparsable > 0, "some wrong answers are not JSON")
    }
}
