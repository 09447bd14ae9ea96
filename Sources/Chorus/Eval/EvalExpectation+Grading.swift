import ChorusJSON

/// One expectation's verdict on one output.
public struct Grade: Sendable, Equatable {
    /// The expectation, one line.
    public var expectation: String
    /// The expectation held.
    public var passed: Bool
    /// A judge's score (0…1); 1 or 0 for the other checks.
    public var score: Double
    /// Why it failed, or a judge's reason.
    public var reason: String?
    /// The run in which a judge graded it.
    public var judgeRunID: String?
    /// For an `expect_route` grade, the route node it checked: what route accuracy counts.
    public var route: String?

    /// A verdict; `score` defaults to 1 when it passed and 0 when it did not.
    public init(
        expectation: String, passed: Bool, score: Double? = nil, reason: String? = nil, judgeRunID: String? = nil, route: String? = nil
    ) {
        self.expectation = expectation
        self.passed = passed
        self.score = score ?? (passed ? 1 : 0)
        self.reason = reason
        self.judgeRunID = judgeRunID
        self.route = route
    }

    var json: JSONValue {
        var object: [String: JSONValue] = ["expectation": .string(expectation), "passed": .bool(passed), "score": .number(score)]
        if let reason { object["reason"] = .string(reason) }
        if let judgeRunID { object["judge_run_id"] = .string(judgeRunID) }
        if let route { object["route"] = .string(route) }
        return .object(object)
    }

    init?(json: JSONValue) {
        guard let expectation = json["expectation"]?.stringValue, let passed = json["passed"]?.boolValue else { return nil }
        self.init(
            expectation: expectation, passed: passed, score: json["score"]?.numberValue, reason: json["reason"]?.stringValue,
            judgeRunID: json["judge_run_id"]?.stringValue, route: json["route"]?.stringValue)
    }
}

extension EvalExpectation {
    /// The grade of `output` (nil when the run gave none), for every check but `judge`,
    /// which needs a model call (`EvalJudge`): nil for those.
    func grade(_ output: JSONValue?) -> Grade? {
        if case .judge = check { return nil }
        guard let output else { return Grade(expectation: summary, passed: false, reason: "no output") }
        guard let value = select(from: output) else {
            return Grade(expectation: summary, passed: false, reason: "\(jsonPath ?? "$") selects nothing in the output")
        }
        let text = value.stringValue ?? value.text
        let shown = Self.clip(value.stringValue.map { JSONValue.string($0).text } ?? value.text)
        switch check {
        case .equals(let expected):
            let same =
                ignoreCase
                ? value.stringValue?.lowercased() == expected.stringValue?.lowercased() && expected.stringValue != nil
                : value == expected
            return same ? pass : fail("\(jsonPath ?? "output") is \(shown)")
        case .contains(let needle):
            let found = ignoreCase ? text.lowercased().contains(needle.lowercased()) : text.contains(needle)
            return found ? pass : fail("\(jsonPath ?? "output") is \(shown)")
        case .regex(let pattern):
            guard let regex = try? BoundedRegex(pattern) else { return fail("not a valid regular expression") }
            do { return try regex.hasMatch(in: text) ? pass : fail("\(jsonPath ?? "output") is \(shown)") } catch {
                return fail("\(error)")
            }
        case .jsonSchema(let schema):
            let violations = JSONSchemaValidator(schema: schema).validate(value)
            guard let first = violations.first else { return pass }
            return fail("\(first.path): \(first.message)" + (violations.count > 1 ? " (and \(violations.count - 1) more)" : ""))
        case .number(let expected, let tolerance):
            guard let number = value.numberValue ?? value.stringValue.flatMap({ Double($0.trimmingWhitespace) }), number.isFinite else {
                return fail("\(jsonPath ?? "output") is \(shown), not a number")
            }
            return abs(number - expected) <= tolerance ? pass : fail("\(jsonPath ?? "output") is \(Self.format(number))")
        case .judge:
            return nil
        }
    }

    /// `grade` on a thread of its own: a regex may take its whole time budget, and the loop
    /// runs the other cases meanwhile. Nil for `judge`, as `grade`.
    func gradeOffLoop(_ output: JSONValue?) async -> Grade? {
        if case .judge = check { return nil }
        do { return try await OffLoop.compute { grade(output) } } catch {
            return Grade(expectation: summary, passed: false, reason: "cancelled")
        }
    }

    /// The value the expectation looks at. A JSONPath into a string output reads the
    /// string as JSON (a text agent that answers in JSON).
    func select(from output: JSONValue) -> JSONValue? {
        guard let jsonPath, jsonPath != "$" else { return output }
        if let found = JSONPath.select(jsonPath, in: output) { return found }
        if let text = output.stringValue, let parsed = try? ModelAnswerParser.json(from: text) { return JSONPath.select(jsonPath, in: parsed) }
        return nil
    }

    private var pass: Grade { Grade(expectation: summary, passed: true) }
    private func fail(_ reason: String) -> Grade { Grade(expectation: summary, passed: false, reason: reason) }

    static func clip(_ text: String) -> String { text.count <= 80 ? text : String(text.prefix(80)) + "…" }
}

extension String {
    var trimmingWhitespace: String {
        var slice = Substring(self)
        while slice.first?.isWhitespace == true { slice.removeFirst() }
        while slice.last?.isWhitespace == true { slice.removeLast() }
        return String(slice)
    }
}
