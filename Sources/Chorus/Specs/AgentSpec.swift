import ChorusJSON

/// One agent file: which model(s), which prompts, what answer shape, how patient.
public struct AgentSpec: Sendable {
    /// The file it came from.
    public var path: String
    /// The name workflows use: the file's `name`.
    public var name: String
    /// What it is for, for people reading the project.
    public var description: String?
    /// Model names in escalation order: the first is tried first.
    public var models: [String]
    /// System prompt template.
    public var system: String?
    /// User prompt template.
    public var prompt: String
    /// Sampling temperature sent with each request; nil leaves the provider's default.
    public var temperature: Double?
    /// The longest answer asked for, in tokens; nil leaves the provider's default (an answer
    /// cut there is retried, then escalated).
    public var maxTokens: Int?
    /// The JSON Schema answers must satisfy; nil for free text.
    public var outputSchema: JSONValue? {
        didSet { outputSchemaMatchesPatterns = outputSchema.map(JSONSchemaValidator.matchesPatterns) ?? false }
    }
    /// Whether checking an answer against `outputSchema` runs regexes (then it runs off the loop).
    private(set) var outputSchemaMatchesPatterns = false
    /// The schema sent to the model when it differs from the one answers are checked
    /// against: a lead's plan is asked for with `maxItems` capped at what is left of
    /// `max_subtasks`, and a longer plan is cut, not failed.
    var requestOutputSchema: JSONValue?
    /// Limit on one HTTP call.
    public var timeout: Duration
    /// Retries per model after the first attempt.
    public var retries: Int
    /// Tools the agent may call, by name (files in the workflow's tools directory).
    public var tools: [String]
    /// Model → tools → model rounds before the answer must be final.
    public var maxToolRounds: Int
    /// Checks on what goes to the model and on what comes back.
    public var guards: Guards

    init(path: String, json: JSONValue) {
        self.path = path
        name = json["name"]?.stringValue ?? ""
        description = json["description"]?.stringValue
        if let single = json["model"]?.stringValue {
            models = [single]
        } else {
            models = json["model"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        system = json["system"]?.stringValue
        prompt = json["prompt"]?.stringValue ?? ""
        temperature = json["temperature"]?.numberValue
        maxTokens = json["max_tokens"]?.intValue
        outputSchema = json["output_schema"]
        outputSchemaMatchesPatterns = outputSchema.map(JSONSchemaValidator.matchesPatterns) ?? false
        // The schema bounds timeout_s to (0, 86400]; clamped here too, so no value traps.
        let seconds = json["timeout_s"]?.numberValue ?? 60
        timeout = .milliseconds(Int64(seconds.isFinite ? min(max(seconds, 0.001), 86_400) * 1000 : 60_000))
        retries = json["retries"]?.intValue ?? 2
        tools = json["tools"]?.arrayValue?.compactMap(\.stringValue) ?? []
        maxToolRounds = json["max_tool_rounds"]?.intValue ?? 8
        guards = Guards(json: json["guards"])
    }
}
