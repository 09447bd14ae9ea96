import ChorusJSON

/// A chat request in either wire shape (OpenAI chat completions or Anthropic Messages),
/// reduced to what the simulator needs to answer it.
struct ModelRequest {
    enum OutputFormat: Equatable {
        case text
        /// JSON mode; the schema, when the system prompt carries one as an instruction.
        case jsonObject(JSONValue?)
        case jsonSchema(JSONValue)
        /// A forced call of the named tool, whose input schema is given.
        case tool(name: String, schema: JSONValue)
    }

    /// The credential the request carried (`Authorization: Bearer …` or `x-api-key`), for
    /// models that answer 401 and echo it back, as some providers do.
    var apiKey: String?

    var model: String
    var system: String
    var messages: [(role: String, text: String)]
    var stream: Bool
    var maxTokens: Int?
    var format: OutputFormat
    /// Tools offered (besides a forced answer tool): name and input schema.
    var tools: [(name: String, schema: JSONValue)] = []
    /// The answer tool Chorus adds in `tool` mode when real tools are offered too (its
    /// description says so); the final answer goes through it.
    var answerTool: (name: String, schema: JSONValue)? = nil

    /// Tool results in the conversation (OpenAI `role: tool`, Anthropic `tool_result` blocks).
    var toolResults: [String] { messages.filter { $0.role == "tool" }.map(\.text) }

    /// The last user message: what the answer is about.
    var subject: String {
        messages.last(where: { $0.role == "user" })?.text ?? messages.last?.text ?? ""
    }

    /// A rough token count of the prompt: about four bytes a token, four tokens a message.
    var promptTokens: Int {
        messages.reduce(tokenEstimate(system)) { $0 + tokenEstimate($1.text) + 4 }
    }

    /// Identity of the request for deterministic answers: model, system and messages.
    func contentHash(seed: UInt64) -> UInt64 {
        var hash = fnv1a64(model.utf8, seed: seed)
        hash = fnv1a64(system.utf8, seed: hash)
        for message in messages {
            hash = fnv1a64(message.role.utf8, seed: hash)
            hash = fnv1a64(message.text.utf8, seed: hash)
        }
        return hash
    }

    /// What decides whether the request is one of the slow ones (`SimulatorConfiguration.
    /// slowDelayMs`): its content hash under its own salt, so which calls are slow does not
    /// follow from what they answer.
    func slowKey(seed: UInt64) -> UInt64 { contentHash(seed: seed ^ 0x5_10E7_A11) }
}

func tokenEstimate(_ text: String) -> Int { (text.utf8.count + 3) / 4 }

/// A request the simulator refuses with 400, and why (one line).
struct RequestProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Reads the two APIs' request bodies leniently: unknown fields are ignored (real
/// clients send many), missing or mistyped required ones are reported with their path.
enum WireRequest {
    static func decodeOpenAI(_ body: [UInt8]) throws(RequestProblem) -> ModelRequest {
        let root = try parse(body)
        let model = try string(root, "model")
        let messages = try messageList(root)
        let isSystem = { (role: String) in role == "system" || role == "developer" }
        let system = messages.filter { isSystem($0.role) }.map(\.text).joined(separator: "\n")
        var format = schemaInstruction(in: system)
        if let responseFormat = root["response_format"], responseFormat != .null {
            switch responseFormat["type"]?.stringValue {
            case "text": break
            case "json_object":
                if case .jsonSchema(let schema) = format { format = .jsonObject(schema) } else { format = .jsonObject(nil) }
            case "json_schema": format = .jsonSchema(responseFormat["json_schema"]?["schema"] ?? [:])
            default:
                throw RequestProblem("$.response_format.type: expected text, json_object or json_schema")
            }
        }
        if let forced = root["tool_choice"]?["function"]?["name"]?.stringValue {
            guard let tool = root["tools"]?.arrayValue?.first(where: { $0["function"]?["name"]?.stringValue == forced }) else {
                throw RequestProblem("$.tool_choice: no tool named '\(forced)' in $.tools")
            }
            format = .tool(name: forced, schema: tool["function"]?["parameters"] ?? [:])
        }
        let stream = try bool(root, "stream") ?? false
        let maxCompletionTokens = try int(root, "max_completion_tokens")
        let maxTokens = try int(root, "max_tokens")
        var request = ModelRequest(
            model: model,
            system: system,
            messages: messages.filter { !isSystem($0.role) },
            stream: stream,
            maxTokens: maxCompletionTokens ?? maxTokens,
            format: format)
        offer(
            root["tools"]?.arrayValue?.compactMap { tool -> (String, String, JSONValue)? in
                guard let function = tool["function"], let name = function["name"]?.stringValue else { return nil }
                return (name, function["description"]?.stringValue ?? "", function["parameters"] ?? [:])
            } ?? [], to: &request)
        return request
    }

    /// The top-level fields of the current official SDK's `MessageCreateParams`: the real API
    /// refuses any other ("Extra inputs are not permitted"), `temperature` included.
    static let anthropicFields: Set<String> = [
        "max_tokens", "messages", "model", "cache_control", "container", "diagnostics", "inference_geo", "metadata",
        "output_config", "service_tier", "speed", "stop_sequences", "stream", "system", "thinking", "tool_choice", "tools",
        "user_profile_id", "workspace_id",
    ]

    static func decodeAnthropic(_ body: [UInt8]) throws(RequestProblem) -> ModelRequest {
        let root = try parse(body)
        for key in (root.objectValue ?? [:]).keys.sorted() where !anthropicFields.contains(key) {
            throw RequestProblem("\(key): Extra inputs are not permitted")
        }
        let model = try string(root, "model")
        guard let maxTokens = try int(root, "max_tokens") else { throw RequestProblem("missing field 'max_tokens' at $") }
        let messages = try messageList(root)
        var system = ""
        if let value = root["system"], value != .null {
            guard let text = text(of: value) else { throw RequestProblem("$.system: expected a string or text blocks") }
            system = text
        }
        let stream = try bool(root, "stream") ?? false
        var format = schemaInstruction(in: system)
        if let outputFormat = root["output_config"]?["format"], outputFormat != .null {
            guard outputFormat["type"] == "json_schema", let schema = outputFormat["schema"], case .object = schema else {
                throw RequestProblem("output_config.format: expected {\"type\": \"json_schema\", \"schema\": {…}}")
            }
            format = .jsonSchema(schema)
        }
        if root["tool_choice"]?["type"] == "tool", let forced = root["tool_choice"]?["name"]?.stringValue {
            guard let tool = root["tools"]?.arrayValue?.first(where: { $0["name"]?.stringValue == forced }),
                let schema = tool["input_schema"], schema["type"] == "object"
            else {
                throw RequestProblem("tool_choice: no tool named '\(forced)' with an object input_schema in tools")
            }
            format = .tool(name: forced, schema: schema)
        }
        var request = ModelRequest(
            model: model, system: system, messages: messages,
            stream: stream, maxTokens: maxTokens, format: format)
        offer(
            root["tools"]?.arrayValue?.compactMap { tool -> (String, String, JSONValue)? in
                guard let name = tool["name"]?.stringValue else { return nil }
                return (name, tool["description"]?.stringValue ?? "", tool["input_schema"] ?? [:])
            } ?? [], to: &request)
        return request
    }

    /// Sorts offered tools into real ones and the answer tool (not the forced one of `tool` mode).
    private static func offer(_ tools: [(name: String, description: String, schema: JSONValue)], to request: inout ModelRequest) {
        for tool in tools where tool.name != request.format.toolName {
            if tool.description.hasPrefix("Give your answer by calling this tool") {
                request.answerTool = (tool.name, tool.schema)
            } else {
                request.tools.append((tool.name, tool.schema))
            }
        }
    }

    /// A client without structured output asks for schema-shaped JSON in the system prompt
    /// ("…satisfies this JSON Schema:\n{…}"), and a capable model follows it. The simulated
    /// one does too.
    private static func schemaInstruction(in system: String) -> ModelRequest.OutputFormat {
        guard let marker = system.range(of: "JSON Schema:\n") else { return .text }
        let line = system[marker.upperBound...].prefix { $0 != "\n" }
        guard let schema = try? JSONValue(parsing: Array(line.utf8)), case .object = schema else { return .text }
        return .jsonSchema(schema)
    }

    private static func parse(_ body: [UInt8]) throws(RequestProblem) -> JSONValue {
        let root: JSONValue
        do { root = try JSONValue(parsing: body) } catch {
            throw RequestProblem("body is not valid JSON (\(error))")
        }
        guard case .object = root else { throw RequestProblem("body: expected a JSON object") }
        return root
    }

    private static func string(_ root: JSONValue, _ key: String) throws(RequestProblem) -> String {
        guard let value = root[key] else { throw RequestProblem("missing field '\(key)' at $") }
        guard let string = value.stringValue else { throw RequestProblem("$.\(key): expected a string, found \(value.typeName)") }
        return string
    }

    private static func bool(_ root: JSONValue, _ key: String) throws(RequestProblem) -> Bool? {
        guard let value = root[key], value != .null else { return nil }
        guard let bool = value.boolValue else { throw RequestProblem("$.\(key): expected a boolean, found \(value.typeName)") }
        return bool
    }

    private static func int(_ root: JSONValue, _ key: String) throws(RequestProblem) -> Int? {
        guard let value = root[key], value != .null else { return nil }
        guard let int = value.intValue, int >= 0 else {
            throw RequestProblem("$.\(key): expected a non-negative integer, found \(value.typeName)")
        }
        return int
    }

    private static func messageList(_ root: JSONValue) throws(RequestProblem) -> [(role: String, text: String)] {
        guard let value = root["messages"] else { throw RequestProblem("missing field 'messages' at $") }
        guard let array = value.arrayValue else { throw RequestProblem("$.messages: expected an array, found \(value.typeName)") }
        guard !array.isEmpty else { throw RequestProblem("$.messages: expected at least one message") }
        var messages: [(role: String, text: String)] = []
        messages.reserveCapacity(array.count)
        for (i, message) in array.enumerated() {
            guard let role = message["role"]?.stringValue else {
                throw RequestProblem("$.messages[\(i)].role: expected a string")
            }
            let content = message["content"] ?? .null
            guard let text = content == .null ? "" : text(of: content) else {
                throw RequestProblem("$.messages[\(i)].content: expected a string or an array of content parts")
            }
            // Anthropic returns tool results as a user turn of tool_result blocks.
            let results = content.arrayValue?.filter { $0["type"] == "tool_result" } ?? []
            messages.append((!results.isEmpty && role == "user" ? "tool" : role, text))
        }
        return messages
    }

    /// A string, or the text of an array of content parts (`{"type": "text", "text": …}`).
    private static func text(of value: JSONValue) -> String? {
        if let string = value.stringValue { return string }
        guard let parts = value.arrayValue else { return nil }
        return parts.compactMap { part in
            if part["type"] == "tool_result", let content = part["content"] { return text(of: content) }
            return part["text"]?.stringValue
        }.joined(separator: "\n")
    }
}

extension ModelRequest.OutputFormat {
    /// The schema the answer should satisfy, whichever way it was asked for.
    var schema: JSONValue? {
        switch self {
        case .text, .jsonObject(nil): return nil
        case .jsonObject(let schema?), .jsonSchema(let schema), .tool(_, let schema): return schema
        }
    }

    /// The forced tool's name, in `tool` mode.
    var toolName: String? {
        if case .tool(let name, _) = self { return name }
        return nil
    }
}
