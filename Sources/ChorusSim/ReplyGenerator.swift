import ChorusJSON

/// Deterministic answer content: the same request and seed always give the same text.
///
/// A model named `planner-N` answers `{"subtasks": [N strings]}` (`planner-N-until-K` adds
/// `"done": true` once its prompt holds K findings); a model whose name starts
/// with `prose-` ignores format instructions and always answers in prose (a small model that
/// cannot follow a schema: what escalation is for); otherwise a request asking for a JSON
/// object (or a JSON schema) gets one back, and everything else gets prose.
struct ReplyGenerator {
    private static let vocabulary = [
        "evidence", "suggests", "the", "primary", "factor", "is", "latency", "while", "cost", "scales",
        "with", "tokens", "small", "models", "handle", "most", "subtasks", "and", "a", "larger", "one",
        "resolves", "disagreements", "between", "sources", "measured", "results", "indicate", "steady",
        "throughput", "under", "load", "reconciliation", "merges", "findings", "from", "parallel", "workers",
        "trace", "records", "every", "step", "for", "audit", "replay", "confirms", "outcome",
    ]

    private static let vocabularyBytes = vocabulary.map { Array($0.utf8) }

    var seed: UInt64
    /// Model → how often it answers a task it recognises (`EvalTask`) right.
    var accuracy: [String: Double] = [:]

    /// The assistant's message content for `request`.
    func content(for request: ModelRequest) -> String {
        var rng = SplitMix64(seed: request.contentHash(seed: seed))
        if let verdict = EvalTask.judge(request.subject) {
            let value: JSONValue = ["pass": .bool(verdict.pass), "score": .number(verdict.pass ? 1 : 0), "reason": .string(verdict.reason)]
            return request.format == .text ? "\(verdict.pass ? "PASS" : "FAIL"): \(verdict.reason)" : value.text
        }
        if let accuracy = accuracy[request.model], request.toolResults.isEmpty, let task = EvalTask.recognise(request.subject) {
            return graded(task, accuracy: accuracy, request: request)
        }
        if var count = Self.plannerCount(request.model) {
            // A model under structured output keeps to the schema's maxItems.
            if let limit = request.format.schema?["properties"]?["subtasks"]?["maxItems"]?.intValue { count = min(count, max(0, limit)) }
            var plan: [String: JSONValue] = ["subtasks": .array(subtasks(count, about: request.subject).map { .string($0) })]
            // `planner-N-until-K`: done once its prompt holds K findings (counted as the
            // `"finding"` keys of the findings_json it was shown), as a lead that has learnt
            // enough says; an answer still depends only on its request.
            if let enough = Self.plannerUntil(request.model) {
                plan["done"] = .bool(request.subject.components(separatedBy: #""finding""#).count - 1 >= enough)
            }
            return JSONValue.object(plan).text
        }
        if request.model.hasPrefix("runaway-") { return runaway(request, rng: &rng) }
        let format =
            request.toolResults.isEmpty || request.answerTool == nil
            ? request.format
            : .tool(
                name: request.answerTool!.name,
                schema: request.answerTool!.schema)
        switch request.model.hasPrefix("prose-") ? .text : format {
        case .text where !request.toolResults.isEmpty:
            // Answers from what the tools returned, so a test can see the results arrived.
            let results = request.toolResults.map { Self.clip($0, to: 120) }.joined(separator: "; ")
            return "From the tools: " + results + ". " + prose(about: request.subject, maxTokens: request.maxTokens, rng: &rng)
        case .text:
            return prose(about: request.subject, maxTokens: request.maxTokens, rng: &rng)
        case .jsonObject(nil):
            let answer = prose(about: request.subject, maxTokens: request.maxTokens, rng: &rng)
            let confidence = Double(50 + Int(rng.next() % 50)) / 100
            return JSONValue.object(["answer": .string(answer), "confidence": .number(confidence)]).text
        case .jsonObject(let schema?), .jsonSchema(let schema), .tool(_, let schema):
            var generator = SchemaInstanceGenerator(root: schema, rng: rng, subject: request.subject)
            return generator.instance(of: schema).text
        }
    }

    /// A model with ground truth: right with probability `accuracy`, drawn per model, task
    /// and seed (the same case always gets the same answer from the same model, so a retry
    /// does not help and escalation does). A right answer comes with confidence 0.75–0.99.
    /// Of the wrong ones, 35% are not JSON (validation catches them), 55% are well-formed
    /// with confidence under 0.55 (a confidence floor in the schema catches them), and 10%
    /// are well-formed and confident: only a grader can tell.
    private func graded(_ task: EvalTask, accuracy: Double, request: ModelRequest) -> String {
        var rng = SplitMix64(seed: fnv1a64(request.subject.utf8, seed: fnv1a64(request.model.utf8, seed: seed ^ 0xACC)))
        let right = rng.nextUnit() < accuracy
        let kind = rng.nextUnit()
        let answer: String
        let confidence: Double
        if right {
            answer = task.answer
            confidence = 0.75 + 0.24 * rng.nextUnit()
        } else if kind < 0.35 {
            return "I am not sure, but I think it might be \(task.wrongAnswer(&rng))."
        } else {
            answer = task.wrongAnswer(&rng)
            confidence = kind < 0.90 ? 0.2 + 0.35 * rng.nextUnit() : 0.75 + 0.2 * rng.nextUnit()
        }
        let schema: JSONValue
        switch request.format {
        case .text: return answer
        case .jsonObject(nil): return JSONValue.object(["answer": .string(answer), "confidence": .number((confidence * 100).rounded() / 100)]).text
        case .jsonObject(let given?), .jsonSchema(let given), .tool(_, let given): schema = given
        }
        var generator = SchemaInstanceGenerator(root: schema, rng: rng, subject: request.subject)
        var object = generator.instance(of: schema).objectValue ?? [:]
        let numeric = ["number", "integer"].contains(schema["properties"]?["answer"]?["type"]?.stringValue ?? "")
        // A triage answer goes in the field whose enum holds the labels (a route's `on`).
        let field =
            task.kind == .ticket
            ? (schema["properties"]?.objectValue ?? [:]).keys.sorted().first { key in
                schema["properties"]?[key]?["enum"]?.arrayValue?.contains(.string(task.answer)) == true
            } ?? "answer" : "answer"
        object[field] = numeric && field == "answer" ? Double(answer).map(JSONValue.number) ?? .string(answer) : .string(answer)
        if schema["properties"]?["confidence"] != nil || object.isEmpty {
            object["confidence"] = .number((confidence * 100).rounded() / 100)
        }
        return JSONValue.object(object).text
    }

    /// The tool calls a `tooluser-…` model makes: when the request offers tools and the
    /// conversation holds no tool result yet, one call of each offered tool (up to three),
    /// with inputs that satisfy their schemas. Nil when it answers instead. A `toolloop-…`
    /// model calls them whatever it has been told (what max_tool_rounds is for).
    func toolCalls(for request: ModelRequest) -> [(name: String, input: JSONValue)]? {
        guard !request.tools.isEmpty,
            request.model.hasPrefix("toolloop-") || (request.model.hasPrefix("tooluser-") && request.toolResults.isEmpty)
        else { return nil }
        let rng = SplitMix64(seed: request.contentHash(seed: seed))
        return request.tools.prefix(3).map { tool in
            var generator = SchemaInstanceGenerator(root: tool.schema, rng: rng, subject: request.subject)
            return (tool.name, generator.instance(of: tool.schema))
        }
    }

    /// A small model that never stops: a JSON object whose string runs on (or prose that
    /// does), always longer than `max_tokens`, so the provider cuts it at the limit.
    private func runaway(_ request: ModelRequest, rng: inout SplitMix64) -> String {
        let tokens = (request.maxTokens ?? 4096) + 64
        var words: [String] = []
        while words.count < tokens { words.append(Self.word(&rng)) }
        let text = words.joined(separator: " ")
        if case .text = request.format { return text }
        return "{\"finding\": \"" + text + "\"}"
    }

    /// N from a model name `planner-N` or `planner-N-until-K`, when it is one.
    static func plannerCount(_ model: String) -> Int? {
        guard model.hasPrefix("planner-"), let first = model.dropFirst("planner-".count).split(separator: "-").first,
            let count = Int(first), count >= 0
        else { return nil }
        let rest = model.dropFirst("planner-".count + first.count)
        guard rest.isEmpty || plannerUntil(model) != nil else { return nil }
        return min(count, 100_000)
    }

    /// K from a model name `planner-N-until-K`, when it is one.
    static func plannerUntil(_ model: String) -> Int? {
        let parts = model.split(separator: "-")
        guard parts.count == 4, parts[0] == "planner", parts[2] == "until", let enough = Int(parts[3]), enough >= 0 else { return nil }
        return enough
    }

    private func subtasks(_ count: Int, about subject: String) -> [String] {
        let topic = Self.clip(subject, to: 80)
        return (0..<count).map { index in
            let word = Self.vocabulary[Int(fnv1a64(topic.utf8, seed: seed &+ UInt64(index)) % UInt64(Self.vocabulary.count))]
            return "Subtask \(index + 1) of \(count): investigate \(word) for \"\(topic)\""
        }
    }

    private func prose(about subject: String, maxTokens: Int?, rng: inout SplitMix64) -> String {
        var words = 12 + Int(rng.next() % 24)
        if let maxTokens { words = max(1, min(words, maxTokens * 3 / 4)) }
        var text = Array("On \"\(Self.clip(subject, to: 48))\":".utf8)
        text.reserveCapacity(text.count + words * 10)
        for _ in 0..<words {
            text.append(32)
            text.append(contentsOf: Self.vocabularyBytes[Int(rng.next() % UInt64(Self.vocabulary.count))])
        }
        text.append(UInt8(ascii: "."))
        return String(decoding: text, as: UTF8.self)
    }

    static func clip(_ text: String, to limit: Int) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count <= limit ? flat : String(flat.prefix(limit)) + "…"
    }

    static func word(_ rng: inout SplitMix64) -> String {
        vocabulary[Int(rng.next() % UInt64(vocabulary.count))]
    }
}

/// Builds a value that satisfies a JSON Schema, so agents with output schemas get answers
/// that validate (the simulator stands in for a model that follows instructions).
struct SchemaInstanceGenerator {
    let root: JSONValue
    var rng: SplitMix64
    let subject: String
    /// Values left to build: a request's schema decides every size here, so each is
    /// bounded (a string at 64 KB, an array at 1,000 items, 100,000 values in all). A schema
    /// asking for more gets a shorter answer, which fails its validation in Chorus, rather
    /// than a simulator that stops answering anyone: `"minLength": 4294967296` grew the
    /// sim to 7 GB and killed it (issue 17).
    private var budget = 100_000
    static let maxString = 65_536
    static let maxItems = 1_000

    init(root: JSONValue, rng: SplitMix64, subject: String) {
        self.root = root
        self.rng = rng
        self.subject = subject
    }

    /// A schema number as an Int, clamped to ±2^40 (a Double past Int's range would trap).
    private static func bounded(_ value: Double?) -> Int? {
        guard let value, value.isFinite else { return nil }
        return Int(min(max(value, -1_099_511_627_776), 1_099_511_627_776))
    }

    mutating func instance(of schema: JSONValue, depth: Int = 0) -> JSONValue {
        guard depth < 16, budget > 0, let keywords = schema.objectValue else { return .null }
        budget -= 1
        if let ref = keywords["$ref"]?.stringValue, let target = resolve(ref) { return instance(of: target, depth: depth + 1) }
        if let constant = keywords["const"] { return constant }
        // A model that takes the default a schema offers (a tool file's `defaults` are
        // offered so: mcp-server-git's `revision` as "HEAD"), when it fits the schema's type.
        if let given = keywords["default"], Self.fits(given, keywords["type"]) { return given }
        if let options = keywords["enum"]?.arrayValue, !options.isEmpty {
            return options[Int(rng.next() % UInt64(options.count))]
        }
        for key in ["anyOf", "oneOf"] {
            if let first = keywords[key]?.arrayValue?.first { return instance(of: first, depth: depth + 1) }
        }
        if let all = keywords["allOf"]?.arrayValue {
            var merged: [String: JSONValue] = [:]
            for sub in all { merged.merge(instance(of: sub, depth: depth + 1).objectValue ?? [:]) { $1 } }
            return .object(merged)
        }
        let types = keywords["type"]?.arrayValue?.compactMap(\.stringValue) ?? [keywords["type"]?.stringValue].compactMap { $0 }
        let type = types.first(where: { $0 != "null" }) ?? (keywords["properties"] != nil ? "object" : types.first ?? "string")
        switch type {
        case "object":
            var members: [String: JSONValue] = [:]
            // In name order: a dictionary's own order differs between two parses of the
            // same schema, and the draws from `rng` would land on different members.
            for (name, sub) in (keywords["properties"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                members[name] = instance(of: sub, depth: depth + 1)
            }
            return .object(members)
        case "array":
            let minimum = min(max(Self.bounded(keywords["minItems"]?.numberValue) ?? 1, 0), Self.maxItems)
            let maximum = max(minimum, min(Self.bounded(keywords["maxItems"]?.numberValue) ?? 3, Self.maxItems))
            let count = min(maximum, max(minimum, 1 + Int(rng.next() % 3)), max(budget, 0))
            let items = keywords["items"] ?? ["type": "string"]
            return .array((0..<count).map { _ in instance(of: items, depth: depth + 1) })
        case "integer":
            let low = Self.bounded(keywords["minimum"]?.numberValue) ?? 0
            let high = max(low, Self.bounded(keywords["maximum"]?.numberValue) ?? low + 100)
            return .number(Double(low + Int(rng.next() % UInt64(high - low + 1))))
        case "number":
            let low = Double(Self.bounded(keywords["minimum"]?.numberValue) ?? 0)
            let high = max(low, Double(Self.bounded(keywords["maximum"]?.numberValue) ?? Int(low) + 1))
            return .number(((low + rng.nextUnit() * (high - low)) * 100).rounded() / 100)
        case "boolean":
            return .bool(rng.next() % 2 == 0)
        case "null":
            return .null
        default:
            // A model that follows the examples a description gives ("IANA timezone name
            // (e.g., 'America/New_York', …)"): the first quoted one.
            if let description = keywords["description"]?.stringValue, let example = Self.firstQuoted(description) {
                return .string(example)
            }
            var text = "\(ReplyGenerator.word(&rng)) \(ReplyGenerator.word(&rng)) about \(ReplyGenerator.clip(subject, to: 32))"
            if let maxLength = Self.bounded(keywords["maxLength"]?.numberValue), text.count > maxLength { text = String(text.prefix(max(maxLength, 0))) }
            if let minLength = Self.bounded(keywords["minLength"]?.numberValue), text.count < minLength {
                text += String(repeating: ".", count: min(minLength, Self.maxString) - text.count)
            }
            return .string(text)
        }
    }

    /// Whether `value` is of the schema `type` (a name or a list of names; none: any).
    static func fits(_ value: JSONValue, _ type: JSONValue?) -> Bool {
        guard let type else { return true }
        let names = type.arrayValue?.compactMap(\.stringValue) ?? [type.stringValue].compactMap { $0 }
        return names.contains { name in
            switch (name, value) {
            case ("string", .string), ("boolean", .bool), ("null", .null), ("array", .array), ("object", .object), ("number", .number): true
            case ("integer", .number(let n)): n.rounded() == n
            default: false
            }
        }
    }

    /// The first 'single-quoted' word of a text, if any.
    static func firstQuoted(_ text: String) -> String? {
        let parts = text.split(separator: "'", omittingEmptySubsequences: false)
        guard parts.count >= 3, !parts[1].isEmpty, parts[1].count <= 64, !parts[1].contains(" ") else { return nil }
        return String(parts[1])
    }

    private func resolve(_ ref: String) -> JSONValue? {
        ref.hasPrefix("#") ? root.value(atPointer: String(ref.dropFirst())) : nil
    }
}
