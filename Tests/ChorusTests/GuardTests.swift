@testable import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Guards: input guards before any request, output guards before an answer is accepted,
/// every verdict in the trace.
@Suite struct GuardTests {
    /// The PII detector on positives and near-misses; prints its precision and recall.
    @Test func thePIIDetectorFindsPersonalDataAndNotItsLookalikes() {
        let positives = [
            "write to jane.doe@example.com today", "bob+tag@mail.co.uk", "call +44 20 7946 0958", "phone 415-555-0132 please",
            "card 4111 1111 1111 1111", "5500-0000-0000-0004 expires", "IBAN DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
            "key sk-proj-abcdefghijklmnopqrstuvwxyz123456", "aws AKIAIOSFODNN7EXAMPLE", "token ghp_" + String(repeating: "a", count: 36),
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        ]
        let nearMisses = [
            "version 1.2.3.4", "order 4111 1111 1111 1112", "IBAN DE89 3704 0044 0532 0130 01", "the year 2024-2025",
            "call extension 4521", "user@localhost", "sk-short", "ratio 12:34:56", "ISBN 978-3-16-148410-0", "1234 5678",
        ]
        let found = positives.filter { !PIIDetector.findings(in: $0).isEmpty }.count
        let falseAlarms = nearMisses.filter { !PIIDetector.findings(in: $0).isEmpty }
        let precision = Double(found) / Double(found + falseAlarms.count)
        let recall = Double(found) / Double(positives.count)
        print("PII detector: precision \(precision), recall \(recall) (\(found)/\(positives.count) found, false alarms: \(falseAlarms))")
        #expect(recall == 1, "missed: \(positives.filter { PIIDetector.findings(in: $0).isEmpty })")
        #expect(falseAlarms.isEmpty)
        #expect(PIIDetector.redact("mail jane@example.com or call +1 415 555 0132").text == "mail [redacted:email] or call [redacted:phone]")
    }

    private func project(_ h: RunHarness, guards: JSONValue, prompt: String = "{{inputs.question}}") throws -> String {
        try h.writeConfig(["small": ["model": "sim-small"], "large": ["model": "sim-large"]])
        try h.agent("asker", model: ["small", "large"], prompt: prompt, extra: ["guards": guards, "retries": 0])
        return try h.workflow("ask", nodes: ["ask": ["kind": "agent", "agent": "asker"]], output: "ask")
    }

    @Test func anInputGuardThatDeniesSendsNothing() async throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["input": [["type": "pii"]]])
        let (summary, store) = try await h.run(workflow, inputs: ["question": "Email jane.doe@example.com the results"])
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("input pii guard: personal data or a secret: email ×1") == true, "\(summary.error ?? "")")
        #expect(h.stats()["requests"] == 0, "not a byte left")
        let verdicts = try store.events(ofRun: summary.runID).filter { $0.kind == "guard_verdict" }
        #expect(verdicts.count == 1 && verdicts[0].detailJSON?.contains("denied") == true)
        #expect(try store.verify(summary.runID).intact)
        await h.shutdown()
    }

    @Test func anInputGuardThatRedactsSendsTheRedactedPrompt() async throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["input": [["type": "pii", "action": "redact"]]])
        let (summary, store) = try await h.run(workflow, inputs: ["question": "Email jane.doe@example.com the results"])
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let call = try #require(try store.modelCalls(ofRun: summary.runID).first)
        let body = String(decoding: try store.blobs([call.requestHash])[call.requestHash] ?? [], as: UTF8.self)
        #expect(body.contains("[redacted:email]") && !body.contains("jane.doe"), "\(body)")
        await h.shutdown()
    }

    /// A failed output guard is an invalid answer: the next model is asked, and the step
    /// fails when none passes.
    @Test func anOutputGuardThatDeniesEscalatesLikeASchemaFailure() async throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["output": [["type": "max_chars", "max": 5]]])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .failed)
        #expect(summary.error?.contains("output max_chars guard:") == true, "\(summary.error ?? "")")
        #expect(try store.modelCalls(ofRun: summary.runID).map(\.model) == ["small", "large"], "escalated")
        #expect(try store.events(ofRun: summary.runID).filter { $0.kind == "guard_verdict" }.count == 2)
        await h.shutdown()
    }

    @Test func anOutputGuardThatRedactsChangesTheAcceptedAnswer() async throws {
        let h = try RunHarness()
        // The simulated model quotes the question: the email comes back in the answer.
        let workflow = try project(h, guards: ["output": [["type": "pii", "action": "redact"]]])
        let (summary, _) = try await h.run(workflow, inputs: ["question": "mail jane@example.com now"])
        let output = try #require(summary.output?.stringValue)
        #expect(output.contains("[redacted:email]") && !output.contains("jane@"), "\(output)")
        await h.shutdown()
    }

    /// An LLM judge (another agent) on the input: its refusal sends nothing to the agent's
    /// own models. The simulated judge answers its schema's constants.
    @Test func aJudgeAgentThatSaysNoStopsTheStepBeforeItsModelIsAsked() async throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["input": [["type": "agent", "agent": "judge"]]])
        try h.agent(
            "judge", model: "small", prompt: "Is this on topic? {{text}}",
            extra: [
                "output_schema": [
                    "type": "object", "required": ["allow", "reason"],
                    "properties": ["allow": ["const": false], "reason": ["const": "off topic"]],
                ]
            ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.error?.contains("input agent guard 'judge': off topic") == true, "\(summary.error ?? "")")
        let calls = try store.modelCalls(ofRun: summary.runID)
        #expect(calls.count == 1 && calls[0].stepPath == "ask#guard-input", "only the judge was asked")
        await h.shutdown()
    }

    @Test func aJudgeAgentThatSaysYesLetsTheAnswerThrough() async throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["input": [["type": "agent", "agent": "judge"]], "output": [["type": "agent", "agent": "judge"]]])
        try h.agent(
            "judge", model: "small", prompt: "Is this answer safe? {{text}}",
            extra: [
                "output_schema": [
                    "type": "object", "required": ["allow"], "properties": ["allow": ["const": true]],
                ]
            ])
        let (summary, store) = try await h.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        #expect(try store.modelCalls(ofRun: summary.runID).map(\.stepPath).sorted() == ["ask", "ask#guard-input", "ask#guard-output-1"])
        // The judges' calls are steps of their own: the steps' costs add up to the run's (issue 25).
        let steps = try store.steps(ofRun: summary.runID).filter { !$0.isNodeResult }
        #expect(steps.filter { $0.kind == "judge" }.map(\.path).sorted() == ["ask#guard-input", "ask#guard-output-1"])
        let run = try #require(try store.run(matching: summary.runID))
        // Exactly: each cost is a whole number of pico-dollars, summed as integers.
        let stepSum = steps.reduce(USD.zero) { $0 + USD(dollars: $1.cost) }
        #expect(stepSum == USD(dollars: run.cost) && run.cost > 0, "steps \(steps.map(\.cost)), run \(run.cost)")
        await h.shutdown()
    }

    @Test func regexGuardsDenyAndRedact() {
        let deny = Guard(kind: .regex("(?i)project (falcon|osprey)"))
        #expect(deny.check("about Project Falcon's budget") == .deny("matches /(?i)project (falcon|osprey)/ (1×)"))
        #expect(deny.check("about the weather") == .allow)
        let redact = Guard(kind: .regex("[0-9]{3}-[0-9]{4}"), action: .redact)
        #expect(redact.check("call 555-0132 or 555-0199") == .redacted("call [redacted] or [redacted]", what: "2 matches of /[0-9]{3}-[0-9]{4}/"))
    }

    @Test func aGuardPatternThatDoesNotCompileIsAValidationError() throws {
        let h = try RunHarness()
        let workflow = try project(h, guards: ["input": [["type": "regex", "pattern": "(unclosed"]]])
        guard case .failure(let failure) = SpecLoader.loadProject(workflow: workflow, config: h.directory.appendingPathComponent("chorus.json").path)
        else { Issue.record("expected an error"); return }
        #expect(failure.issues.map(\.description).joined().contains("$.guards.input[0].pattern"))
    }

    // MARK: bounded regexes

    /// `(a+)+$` on 28 `a`s and a `!` backtracks for minutes; bounded, it stops at its budget
    /// with a verdict that says so (before, Swift's Regex ran it to the end: over 60 s).
    @Test func aCatastrophicPatternStopsAtItsBudget() throws {
        let regex = try BoundedRegex("(a+)+$")
        let hostile = String(repeating: "a", count: 28) + "!"
        let started = ContinuousClock.now
        #expect(throws: BoundedRegex.OutOfTime.self) { try regex.matches(in: hostile, budget: .milliseconds(200)) }
        let took = ContinuousClock.now - started
        #expect(took < .seconds(2), "stopped after \(took)")
        let verdict = Guard(json: ["type": "regex", "pattern": "(a+)+$"])!.check(hostile)
        guard case .deny(let reason) = verdict else { Issue.record("expected a denial, got \(verdict)"); return }
        #expect(reason.contains("regex exceeded its time budget"), "\(reason)")
        // A caller that stops it (a cancelled step) ends it sooner still.
        let stopped = ContinuousClock.now
        #expect(throws: BoundedRegex.OutOfTime.self) { try regex.matches(in: hostile, budget: .seconds(30), stop: { true }) }
        #expect(ContinuousClock.now - stopped < .milliseconds(500))
    }

    /// ICU gives up on `(a|b)+$` over 800 KB (its backtracking stack); Foundation reported
    /// that as "no match", so a deny guard let the text through. It is a denial now.
    @Test func anEngineThatGivesUpIsNotANoMatch() throws {
        let long = String(repeating: "ab", count: 400_000) + "!"
        #expect(throws: BoundedRegex.OutOfTime.self) { try BoundedRegex("(a|b)+$").hasMatch(in: long) }
        let verdict = Guard(json: ["type": "regex", "pattern": "(a|b)+$"])!.check(long)
        guard case .deny(let reason) = verdict else { Issue.record("expected a denial, got \(verdict)"); return }
        #expect(reason.contains("could not be matched to the end"), "\(reason)")
    }

    /// Ordinary patterns match, redact and deny as before.
    @Test func boundedPatternsMatchAndRedact() throws {
        let digits = try BoundedRegex("[0-9]{3}-[0-9]{4}")
        #expect(try digits.matches(in: "call 555-1234 or 555-9876").count == 2)
        #expect(try digits.replacing(in: "call 555-1234 now", with: "[redacted]").text == "call [redacted] now")
        #expect(try digits.replacing(in: "$1 555-1234", with: "$0").text == "$1 $0", "the replacement is literal")
        #expect(try BoundedRegex("(?i)ERROR").hasMatch(in: "an error here"))
        #expect(try !BoundedRegex("^x$").hasMatch(in: "xx"))
        #expect(BoundedRegex.problem(in: "([a-z") != nil && BoundedRegex.problem(in: "[a-z]+") == nil)
        let emoji = "👍🏽 fine 👍🏽"
        #expect(try BoundedRegex("fine").replacing(in: emoji, with: "ok").text == "👍🏽 ok 👍🏽", "ranges map back onto the string")
    }

    /// `chorus validate` warns about nested unbounded quantifiers, and only those.
    @Test func nestedQuantifiersAreFound() {
        for pattern in ["(a+)+$", "(\\w*)*x", "((ab)+c)*", "(x+){2,}", "(?:a|b+)+"] {
            #expect(BoundedRegex.nestedQuantifier(in: pattern) != nil, "\(pattern)")
        }
        for pattern in ["a+b+", "(ab)+", "[(a+)]+", "(a{2,3})+", "\\(a+\\)+", "(a+)?"] {
            #expect(BoundedRegex.nestedQuantifier(in: pattern) == nil, "\(pattern)")
        }
    }
}
