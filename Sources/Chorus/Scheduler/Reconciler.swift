import ChorusJSON

/// One result going into reconciliation, with the step that produced it.
package struct Finding: Sendable, Equatable {
    /// The producing step's path.
    package var step: String
    /// Its output.
    package var value: JSONValue

    /// A finding `value` from `step`.
    package init(step: String, value: JSONValue) {
        self.step = step
        self.value = value
    }
}

/// A reconciled output and which steps produced which part of it.
package struct Reconciled: Sendable, Equatable {
    /// The combined value downstream nodes see.
    package var value: JSONValue
    /// `[{"part": …, "step": …}]`: where each part came from.
    package var provenance: JSONValue
}

/// Why findings could not be reconciled.
package struct ReconcileError: Error, Sendable, CustomStringConvertible, Equatable {
    package var description: String

    /// An error saying `description`.
    package init(description: String) { self.description = description }
}

/// The deterministic reconcile strategies (the `agent` strategy calls a model and lives in
/// the runner). Pure functions of findings in step order, so a replay reproduces them.
package enum Reconciler {
    /// Combines `findings` (already in deterministic step order) with `spec`'s strategy.
    package static func reconcile(_ findings: [Finding], _ spec: ReconcileSpec) throws(ReconcileError) -> Reconciled {
        switch spec.strategy {
        case .collect:
            return Reconciled(value: .array(findings.map(\.value)), provenance: provenance(findings.enumerated().map { ($0.offset, $0.element.step) }))
        case .concat:
            let text = findings.map { $0.value.stringValue ?? $0.value.text }.joined(separator: spec.separator)
            return Reconciled(value: .string(text), provenance: provenance(findings.enumerated().map { ($0.offset, $0.element.step) }))
        case .merge:
            return try merge(findings, rule: spec.conflict)
        case .vote:
            return try vote(findings, field: spec.voteField)
        case .firstSuccess:
            guard let first = findings.first else { throw ReconcileError(description: "first_success: no step succeeded") }
            return Reconciled(value: first.value, provenance: provenance([(0, first.step)]))
        case .agent:
            throw ReconcileError(description: "the agent strategy is run by the scheduler, not reconciled in place")
        }
    }

    private static func provenance(_ parts: [(part: some Sendable, step: String)]) -> JSONValue {
        .array(
            parts.map { part in
                let key: JSONValue = (part.part as? Int).map { .number(Double($0)) } ?? .string("\(part.part)")
                return .object(["part": key, "step": .string(part.step)])
            })
    }

    private static func merge(_ findings: [Finding], rule: MergeConflictRule) throws(ReconcileError) -> Reconciled {
        var merged: [String: JSONValue] = [:]
        var owner: [String: String] = [:]
        for finding in findings {
            guard let object = finding.value.objectValue else {
                throw ReconcileError(description: "merge: step \(finding.step) produced \(finding.value.typeName), expected an object")
            }
            for key in object.keys.sorted() {
                let value = object[key]!
                if let existing = merged[key], existing != value {
                    switch rule {
                    case .first: continue
                    case .last: break
                    case .error:
                        throw ReconcileError(description: "merge: steps \(owner[key]!) and \(finding.step) disagree on '\(key)'")
                    }
                }
                merged[key] = value
                owner[key] = finding.step
            }
        }
        return Reconciled(value: .object(merged), provenance: provenance(owner.keys.sorted().map { ($0, owner[$0]!) }))
    }

    /// Lowercased, whitespace collapsed, trailing punctuation dropped: "Paris." and
    /// " paris" are the same vote.
    static func normalise(_ value: JSONValue, field: String?) -> String {
        let answer = field.flatMap { value[$0] } ?? value
        let text = answer.stringValue ?? answer.text
        var words = text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        while let last = words.last, ".!?;,".contains(last) { words.removeLast() }
        return words
    }

    private static func vote(_ findings: [Finding], field: String?) throws(ReconcileError) -> Reconciled {
        guard !findings.isEmpty else { throw ReconcileError(description: "vote: no step succeeded") }
        var tally: [String: (count: Int, first: Int)] = [:]
        for (i, finding) in findings.enumerated() {
            let key = normalise(finding.value, field: field)
            tally[key, default: (0, i)].count += 1
        }
        let best = tally.values.map(\.count).max()!
        // Ties break towards the answer seen first, so the result is deterministic.
        let leaders = tally.filter { $0.value.count == best }.sorted { $0.value.first < $1.value.first }
        let winner = leaders[0]
        let winningValue = findings[winner.value.first].value
        var value: [String: JSONValue] = [
            "answer": field.flatMap { winningValue[$0] } ?? winningValue,
            "votes": .number(Double(best)),
            "total": .number(Double(findings.count)),
            "tie": .bool(leaders.count > 1),
        ]
        if leaders.count > 1 { value["tied"] = .array(leaders.map { .string($0.key) }) }
        let voters = findings.filter { normalise($0.value, field: field) == winner.key }
        return Reconciled(value: .object(value), provenance: provenance(voters.enumerated().map { ($0.offset, $0.element.step) }))
    }
}
