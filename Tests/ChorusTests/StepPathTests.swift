import ChorusTrace
import Testing

/// A step's path is written and read in one place (`StepPath`): every form round-trips,
/// and text that is not a path is refused rather than guessed at.
@Suite struct StepPathTests {
    @Test(arguments: [
        "research", "research/0", "research/items", "lead/round-2/plan", "lead/round-2", "lead/round-2/17",
        "lead/synthesis", "write#result", "research/3#guard-input", "lead/round-1/4#guard-output-2", "lead/synthesis#guard-input",
    ])
    func everyFormRoundTrips(_ text: String) throws {
        let path = try #require(StepPath(text))
        #expect(path.description == text)
        #expect(StepPath.node(of: text) == path.node)
    }

    @Test func eachPartMeansWhatTheGrammarSays() {
        #expect(StepPath("lead/round-3/7")?.place == .worker(round: 3, item: 7))
        #expect(StepPath("lead/round-3/plan")?.place == .plan(round: 3))
        #expect(StepPath("research/12")?.place == .item(12))
        #expect(StepPath("a/1#guard-output-4")?.suffix == .guardOutput(attempt: 4))
        #expect(StepPath(node: "lead", .round(2)).member(5).description == "lead/round-2/5")
        #expect(StepPath(node: "research", .items).member(5).description == "research/5")
        #expect(StepPath(node: "research", .items).groupText == "research", "a foreach's items are named by the node in messages")
        #expect(StepPath.text("a/1", .guardInput) == "a/1#guard-input")
    }

    @Test(arguments: ["", "/0", "a/b", "a/round-x", "a/round-1/x", "a/1/2", "a/round-1/2/3", "a#what", "a#guard-output-x", "a/1#"])
    func textThatIsNotAPathIsRefused(_ text: String) {
        #expect(StepPath(text) == nil)
    }

    /// A step's kind is stored as it always was: these strings are in every trace.
    @Test func stepKindsAreStoredAsTheyAlwaysWere() {
        #expect(StepKind.allCases.map(\.rawValue) == ["agent", "item", "plan", "reconcile", "judge", "foreach", "lead", "route"])
        let record = StepRecord(runID: "r", path: "research/3", node: "research", kind: .item, startedAt: 0)
        #expect(record.kind == "item" && record.stepKind == .item)
    }
}
