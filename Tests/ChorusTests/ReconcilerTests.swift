import Chorus
import ChorusJSON
import Testing

@Suite struct ReconcilerTests {
    private func spec(_ strategy: ReconcileStrategy, _ extra: [String: JSONValue] = [:]) -> ReconcileSpec {
        var spec = ReconcileSpec.collect
        spec.strategy = strategy
        if let conflict = extra["conflict"]?.stringValue { spec.conflict = MergeConflictRule(rawValue: conflict)! }
        spec.voteField = extra["vote_field"]?.stringValue
        if let separator = extra["separator"]?.stringValue { spec.separator = separator }
        return spec
    }

    private let findings = [Finding(step: "n/0", value: "alpha"), Finding(step: "n/1", value: "beta"), Finding(step: "n/2", value: "gamma")]

    @Test func collectKeepsStepOrderAndProvenance() throws {
        let result = try Reconciler.reconcile(findings, spec(.collect))
        #expect(result.value == ["alpha", "beta", "gamma"])
        #expect(result.provenance.arrayValue?.map { $0["step"] } == ["n/0", "n/1", "n/2"])
    }

    @Test func concatJoinsWithTheSeparator() throws {
        #expect(try Reconciler.reconcile(findings, spec(.concat, ["separator": " | "])).value == "alpha | beta | gamma")
    }

    @Test func mergeAppliesTheConflictRule() throws {
        let parts = [Finding(step: "a", value: ["x": 1, "y": 1]), Finding(step: "b", value: ["y": 2, "z": 3])]
        #expect(try Reconciler.reconcile(parts, spec(.merge, ["conflict": "first"])).value == ["x": 1, "y": 1, "z": 3])
        let last = try Reconciler.reconcile(parts, spec(.merge, ["conflict": "last"]))
        #expect(last.value == ["x": 1, "y": 2, "z": 3])
        #expect(last.provenance.arrayValue?.first { $0["part"] == "y" }?["step"] == "b", "provenance names the winning step")
        #expect(throws: ReconcileError(description: "merge: steps a and b disagree on 'y'")) {
            try Reconciler.reconcile(parts, spec(.merge, ["conflict": "error"]))
        }
        #expect(throws: ReconcileError.self) { try Reconciler.reconcile([Finding(step: "s", value: "text")], spec(.merge)) }
    }

    @Test func voteNormalisesAnswersAndReportsTies() throws {
        let votes = ["Paris.", " paris", "Lyon", "PARIS!"].enumerated().map { Finding(step: "v/\($0.offset)", value: .string($0.element)) }
        let result = try Reconciler.reconcile(votes, spec(.vote))
        #expect(result.value["answer"] == "Paris.")
        #expect(result.value["votes"] == 3)
        #expect(result.value["tie"] == false)
        #expect(result.provenance.arrayValue?.count == 3)
        let tied = try Reconciler.reconcile(
            [Finding(step: "a", value: ["answer": "yes"]), Finding(step: "b", value: ["answer": "no"])],
            spec(.vote, ["vote_field": "answer"]))
        #expect(tied.value["tie"] == true)
        #expect(tied.value["tied"] == ["yes", "no"])
        #expect(tied.value["answer"] == "yes", "ties break towards the first answer in step order")
    }

    @Test func firstSuccessTakesTheEarliestStep() throws {
        let result = try Reconciler.reconcile(findings, spec(.firstSuccess))
        #expect(result.value == "alpha")
        #expect(result.provenance == [["part": 0, "step": "n/0"]])
        #expect(throws: ReconcileError.self) { try Reconciler.reconcile([], spec(.firstSuccess)) }
    }
}

@Suite struct RetryPolicyTests {
    @Test func backoffStaysUnderTheCeilingAndHonoursRetryAfter() {
        let policy = RetryPolicy()
        var rng = SystemRandomNumberGenerator()
        for retry in 1...10 {
            let delay = policy.delay(retry: retry, retryAfter: nil, using: &rng)
            #expect(delay >= .zero && delay <= min(policy.cap, policy.base * (1 << (retry - 1))))
        }
        #expect(policy.delay(retry: 1, retryAfter: .seconds(3), using: &rng) == .seconds(3))
    }
}
