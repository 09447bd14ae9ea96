import ChorusIO
import ChorusJSON
import ChorusSim
import HTTPTypes
import Testing

/// The events of a raw SSE body, split here rather than by Chorus's client so these tests
/// see exactly what the simulator put on the wire.
private func sseEvents(_ body: [UInt8]) -> [(event: String, data: String)] {
    String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n").compactMap { block in
        var event = ""
        var data: String?
        for line in block.split(separator: "\n") {
            if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
        }
        return data.map { (event, $0) }
    }
}

/// What one streamed answer carried: its text deltas, each tool call's argument deltas
/// (by index), and the usage it reported.
private struct StreamedAnswer {
    var text: [String] = []
    var arguments: [Int: [String]] = [:]
    var completionTokens: Int?
    var deltaEvents: Int { text.count + arguments.values.reduce(0) { $0 + $1.count } }
}

/// Streaming at real token granularity (issue 26): one simulator token per event by
/// default, as OpenAI and llama.cpp send, the deltas adding up to the unstreamed answer.
@Suite struct SimulatorStreamingTests {
    private static let tools: [(name: String, schema: JSONValue)] = [
        ("lookup", ["type": "object", "required": ["query"], "properties": ["query": ["type": "string"]]]),
        ("score", ["type": "object", "required": ["label", "weight"], "properties": ["label": ["type": "string"], "weight": ["type": "number"]]]),
    ]

    /// A request in either shape, unstreamed and streamed; `tools` offers the two tools
    /// above. The two bodies differ only in `stream`: the simulator fills a tool's input in
    /// its schema's key order, which two separately built dictionaries need not share.
    private func request(_ text: String, model: String, anthropic: Bool, tools: Bool = false, maxTokens: Int = 400) -> (whole: [UInt8], streamed: [UInt8]) {
        var members: [String: JSONValue] = [
            "model": .string(model), "messages": [["role": "user", "content": .string(text)]],
            "max_tokens": .number(Double(maxTokens)), "stream": false,
        ]
        if tools {
            members["tools"] = .array(
                Self.tools.map {
                    anthropic
                        ? ["name": .string($0.name), "input_schema": $0.schema]
                        : ["type": "function", "function": ["name": .string($0.name), "parameters": $0.schema]]
                })
        }
        let whole = JSONValue.object(members).text
        return (Array(whole.utf8), Array(whole.replacingOccurrences(of: "\"stream\":false", with: "\"stream\":true").utf8))
    }

    private func send(_ sim: SimHarness, _ body: [UInt8], anthropic: Bool) async throws -> [UInt8] {
        try await sim.client.execute(
            .init(
                method: .post, url: sim.base + (anthropic ? "/v1/messages" : "/v1/chat/completions"),
                headerFields: [.contentType: "application/json"], body: body)
        ).body
    }

    private func streamed(_ body: [UInt8], anthropic: Bool) throws -> StreamedAnswer {
        var answer = StreamedAnswer()
        for (event, data) in sseEvents(body) where data != "[DONE]" {
            let json = try JSONValue(parsing: Array(data.utf8))
            if anthropic {
                if event == "content_block_delta", let index = json["index"]?.intValue {
                    if let text = json["delta"]?["text"]?.stringValue { answer.text.append(text) }
                    if let part = json["delta"]?["partial_json"]?.stringValue { answer.arguments[index, default: []].append(part) }
                }
                if event == "message_delta" { answer.completionTokens = json["usage"]?["output_tokens"]?.intValue }
                continue
            }
            let delta = json["choices"]?.arrayValue?.first?["delta"]
            // The role delta opens the stream with an empty content; it carries no token.
            if delta?["role"] == nil, let text = delta?["content"]?.stringValue { answer.text.append(text) }
            for call in delta?["tool_calls"]?.arrayValue ?? [] where call["id"] == nil {
                if let index = call["index"]?.intValue, let part = call["function"]?["arguments"]?.stringValue {
                    answer.arguments[index, default: []].append(part)
                }
            }
            if let tokens = json["usage"]?["completion_tokens"]?.intValue { answer.completionTokens = tokens }
        }
        return answer
    }

    private func deltaEvents(tokens: Int, perEvent: Int) -> Int { (tokens + perEvent - 1) / perEvent }

    @Test(arguments: [(false, 1), (false, 3), (true, 1), (true, 3)])
    func textStreamsSoManyTokensPerEventAndAssemblesToTheUnstreamedAnswer(anthropic: Bool, perEvent: Int) async throws {
        let sim = try SimHarness { $0.tokensPerEvent = perEvent }
        // Multi-byte characters too: a token never splits one, and the count still matches usage.
        let question = "Why is the sky blue? Ünïcödé 漢字 and 🙂 — explain at length, with reasons."
        let bodies = request(question, model: "sim-small", anthropic: anthropic)
        let whole = try JSONValue(parsing: try await send(sim, bodies.whole, anthropic: anthropic))
        let content = try #require(
            anthropic ? whole["content"]?.arrayValue?.first?["text"]?.stringValue : whole["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        let tokens = try #require(anthropic ? whole["usage"]?["output_tokens"]?.intValue : whole["usage"]?["completion_tokens"]?.intValue)
        #expect(tokens > 16, "long enough that the old handful of deltas would differ")

        let answer = try streamed(try await send(sim, bodies.streamed, anthropic: anthropic), anthropic: anthropic)
        #expect(answer.text.joined() == content)
        #expect(answer.completionTokens == tokens)
        #expect(answer.text.count == deltaEvents(tokens: tokens, perEvent: perEvent))
        if perEvent == 1 { #expect(answer.text.count == tokens, "one event per reported token") }
        await sim.shutdown()
    }

    @Test(arguments: [(false, 1), (false, 3), (true, 1), (true, 3)])
    func toolCallArgumentsStreamSoManyTokensPerEventAndAssembleToTheUnstreamedCalls(anthropic: Bool, perEvent: Int) async throws {
        let sim = try SimHarness { $0.tokensPerEvent = perEvent }
        let bodies = request("Look it up", model: "tooluser-small", anthropic: anthropic, tools: true)
        let whole = try JSONValue(parsing: try await send(sim, bodies.whole, anthropic: anthropic))
        let inputs: [JSONValue]
        if anthropic {
            inputs = (whole["content"]?.arrayValue ?? []).filter { $0["type"] == "tool_use" }.compactMap { $0["input"] }
        } else {
            let calls = whole["choices"]?.arrayValue?.first?["message"]?["tool_calls"]?.arrayValue ?? []
            inputs = try calls.map { try JSONValue(parsing: Array(($0["function"]?["arguments"]?.stringValue ?? "").utf8)) }
        }
        #expect(inputs.count == 2)
        let tokens = try #require(anthropic ? whole["usage"]?["output_tokens"]?.intValue : whole["usage"]?["completion_tokens"]?.intValue)

        let answer = try streamed(try await send(sim, bodies.streamed, anthropic: anthropic), anthropic: anthropic)
        #expect(answer.text.isEmpty)
        #expect(answer.completionTokens == tokens)
        // Anthropic numbers blocks across the answer; with no text block the calls are 0 and 1.
        let assembled = try answer.arguments.keys.sorted().map { try JSONValue(parsing: Array(answer.arguments[$0, default: []].joined().utf8)) }
        #expect(assembled == inputs)
        if !anthropic {
            let texts = (whole["choices"]?.arrayValue?.first?["message"]?["tool_calls"]?.arrayValue ?? []).compactMap {
                $0["function"]?["arguments"]?.stringValue
            }
            #expect(answer.arguments.keys.sorted().map { answer.arguments[$0, default: []].joined() } == texts, "byte for byte")
        }
        let perCall = answer.arguments.keys.sorted().map { index in
            answer.arguments[index, default: []].joined().utf8.count
        }
        #expect(answer.deltaEvents == perCall.reduce(0) { $0 + deltaEvents(tokens: ($1 + 3) / 4, perEvent: perEvent) })
        if perEvent == 1 { #expect(answer.deltaEvents == tokens, "one event per reported token") }
        await sim.shutdown()
    }

    @Test(arguments: [false, true])
    func pacedStreamsTakeTheirTokensTimeAndStillAssemble(anthropic: Bool) async throws {
        let rate = 400.0
        let sim = try SimHarness { $0.tokensPerSecond = rate }
        // A runaway model is cut at max_tokens: exactly 80 tokens, so at least 0.2 s a stream.
        let tokens = 80
        let streams = 20
        let requests = (0..<streams).map { request("go on \($0)", model: "runaway-small", anthropic: anthropic, maxTokens: tokens) }
        let results = try await withThrowingTaskGroup(of: (Int, Duration, [UInt8]).self) { group in
            for (i, request) in requests.enumerated() {
                group.addTask {
                    let start = ContinuousClock.now
                    let body = try await sim.client.execute(
                        .init(method: .post, url: sim.base + (anthropic ? "/v1/messages" : "/v1/chat/completions"), body: request.streamed)
                    ).body
                    return (i, ContinuousClock.now - start, body)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == streams)
        for (i, elapsed, body) in results {
            #expect(elapsed >= .seconds(Double(tokens) / rate), "stream \(i) took \(elapsed)")
            let answer = try streamed(body, anthropic: anthropic)
            #expect(answer.text.count == tokens)
            let whole = try JSONValue(parsing: try await send(sim, requests[i].whole, anthropic: anthropic))
            let content =
                anthropic ? whole["content"]?.arrayValue?.first?["text"]?.stringValue : whole["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue
            #expect(answer.text.joined() == content)
        }
        await sim.shutdown()
    }

    @Test func theStreamingSettingsAreChecked() {
        var configuration = SimulatorConfiguration()
        #expect(configuration.tokensPerEvent == 1 && configuration.tokensPerSecond == 0, "token by token, as fast as it can")
        #expect(configuration.problem == nil)
        configuration.tokensPerEvent = 0
        #expect(configuration.problem?.contains("--tokens-per-event") == true)
        configuration.tokensPerEvent = 2
        configuration.tokensPerSecond = -1
        #expect(configuration.problem?.contains("--tokens-per-second") == true)
        configuration.tokensPerSecond = .nan
        #expect(configuration.problem?.contains("--tokens-per-second") == true)
    }
}
