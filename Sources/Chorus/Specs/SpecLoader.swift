import ChorusJSON
import Foundation

/// Everything a run needs, loaded and checked: configuration, workflow, agents.
public struct Project: Sendable {
    /// chorus.json: the models and their limits.
    public var config: ChorusConfig
    /// The workflow to run.
    public var workflow: WorkflowSpec
    /// Agents by name, every one the workflow uses.
    public var agents: [String: AgentSpec]
    /// Tools by name, every one those agents list.
    public var tools: [String: ToolSpec] = [:]
    /// Each node's dependencies: explicit `needs` plus what `over`, `from` and templates refer to.
    public var dependencies: [String: Set<String>]
}

/// Reads the three file kinds, checks them against their JSON Schemas and against each
/// other, and reports every problem at once with file, JSON path and what was expected.
package enum SpecLoader {
    /// Parses `path` as JSON and validates it against `schema`.
    static func document(_ path: String, schema: JSONValue) -> (JSONValue?, [ValidationIssue]) {
        // `-` is standard input: a parent hands a child its inputs through a pipe, never a file.
        guard let data = path == "-" ? readStandardInput() : SpecFiles.contents(path) else {
            let reason = SpecFiles.exists(path) ? "cannot be read" : "no such file"
            return (nil, [ValidationIssue(file: path, path: "$", message: reason)])
        }
        let json: JSONValue
        do { json = try JSONValue(parsing: Array(data)) } catch {
            return (
                nil,
                [
                    ValidationIssue(
                        file: path, path: "line \(error.line), column \(error.column)",
                        message: "invalid JSON: \(error.reason)")
                ]
            )
        }
        let violations = JSONSchemaValidator(schema: schema).validate(json)
        return (json, violations.map { ValidationIssue(file: path, path: $0.path, message: $0.message) })
    }

    /// All of standard input (read with retries on EINTR; FileHandle's read traps on it).
    private static func readStandardInput() -> Data? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(STDIN_FILENO, &buffer, buffer.count)
            if n > 0 { data.append(contentsOf: buffer[..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            return n == 0 ? data : nil
        }
    }

    /// Loads chorus.json.
    package static func loadConfig(_ path: String) -> Result<ChorusConfig, ValidationFailure> {
        let (json, issues) = document(path, schema: SpecSchemas.chorusValue)
        guard let json, issues.isEmpty else { return .failure(ValidationFailure(issues)) }
        let models = (json["models"]?.objectValue ?? [:]).reduce(into: [String: ModelSpec]()) {
            $0[$1.key] = ModelSpec(name: $1.key, json: $1.value)
        }
        let misfits = models.values.filter { $0.provider == .anthropic && $0.structuredOutput == .jsonObject }.map(\.name).sorted()
        guard misfits.isEmpty else {
            return .failure(
                ValidationFailure(
                    misfits.map {
                        ValidationIssue(
                            file: path, path: "$.models.\($0).structured_output",
                            message: "json_object is OpenAI's JSON mode; for anthropic use json_schema, tool or prompt")
                    }))
        }
        return .success(ChorusConfig(path: path, models: models))
    }

    /// Loads one agent file.
    package static func loadAgent(_ path: String) -> Result<AgentSpec, ValidationFailure> {
        let (json, issues) = document(path, schema: SpecSchemas.agentValue)
        guard let json, issues.isEmpty else { return .failure(ValidationFailure(issues)) }
        var all: [ValidationIssue] = []
        let agent = AgentSpec(path: path, json: json)
        for (key, text) in [("system", agent.system), ("prompt", agent.prompt)] {
            guard let text else { continue }
            if let problem = TemplateReferences.limitProblem(in: text) {
                all.append(ValidationIssue(file: path, path: "$.\(key)", message: "template too large: \(problem)"))
                continue
            }
            do { _ = try TemplateReferences.compile(text) } catch {
                all.append(ValidationIssue(file: path, path: "$.\(key)", message: "not a valid Mustache template: \(TemplateReferences.describe(error))"))
            }
        }
        for (stage, guards) in [("input", agent.guards.input), ("output", agent.guards.output)] {
            for (i, guardrail) in guards.enumerated() {
                if case .regex(let pattern) = guardrail.kind, let problem = BoundedRegex.problem(in: pattern) {
                    all.append(ValidationIssue(file: path, path: "$.guards.\(stage)[\(i)].pattern", message: problem))
                }
                if case .schema(let schema) = guardrail.kind {
                    all += schemaIssues(schema, file: path, at: "$.guards.\(stage)[\(i)].schema")
                }
            }
        }
        if let schema = agent.outputSchema {
            let issues = schemaIssues(schema, file: path, at: "$.output_schema")
            all += issues
            if schema["type"] != nil, schema["type"] != "object", !issues.contains(where: { $0.path == "$.output_schema.type" }) {
                all.append(ValidationIssue(file: path, path: "$.output_schema.type", message: "expected \"object\" (answers are JSON objects)"))
            }
        }
        return all.isEmpty ? .success(agent) : .failure(ValidationFailure(all))
    }

    /// What is allowed but likely a mistake in an agent: regex guards whose nested
    /// quantifiers make backtracking exponential (they run, within their time budget).
    package static func warnings(for agent: AgentSpec) -> [ValidationIssue] {
        var found: [ValidationIssue] = []
        for (stage, guards) in [("input", agent.guards.input), ("output", agent.guards.output)] {
            for (i, guardrail) in guards.enumerated() {
                guard case .regex(let pattern) = guardrail.kind, let nested = BoundedRegex.nestedQuantifier(in: pattern) else { continue }
                found.append(ValidationIssue(file: agent.path, path: "$.guards.\(stage)[\(i)].pattern", message: Self.nestedWarning(nested)))
            }
        }
        return found
    }

    /// The warning for a pattern with nested quantifiers.
    package static func nestedWarning(_ nested: String) -> String {
        "nested quantifiers in \(nested) can take exponential time on hostile input; the pattern runs with a "
            + "\(BoundedRegex.defaultBudget.shortText) budget per text (rewrite it without the outer quantifier if you can)"
    }

    /// Where chorus.json is when no `--config` names it: the current directory's, else the
    /// nearest in the workflow file's folder or a folder above it (so a project's commands
    /// work from anywhere). `chorus.json` (which then reports "no such file") when none is.
    package static func configPath(forWorkflow workflow: String) -> String {
        let manager = FileManager.default
        if manager.fileExists(atPath: "chorus.json") { return "chorus.json" }
        var folder = URL(fileURLWithPath: absolute(workflow)).deletingLastPathComponent().standardizedFileURL
        for _ in 0..<64 {
            let candidate = folder.appendingPathComponent("chorus.json")
            if manager.fileExists(atPath: candidate.path) { return displayPath(candidate.path) }
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        return "chorus.json"
    }

    /// A user's schema checked as JSON Schema and against what Chorus enforces (`SchemaChecker`).
    static func schemaIssues(_ schema: JSONValue, file: String, at path: String) -> [ValidationIssue] {
        SchemaChecker.problems(in: schema, at: path).map { ValidationIssue(file: file, path: $0.path, message: $0.message) }
    }

    /// Loads one tool file.
    package static func loadTool(_ path: String) -> Result<ToolSpec, ValidationFailure> {
        let (json, issues) = document(path, schema: SpecSchemas.toolValue)
        guard let json, issues.isEmpty else { return .failure(ValidationFailure(issues)) }
        let tool = ToolSpec(path: path, json: json)
        var all: [ValidationIssue] = []
        switch tool.kind {
        case .subprocess(let process):
            if tool.inputSchema == nil { all.append(ValidationIssue(file: path, path: "$", message: "expected input_schema (the model is told what to send)")) }
            for (i, argument) in process.argv.enumerated() where argument.contains("{{") {
                if let problem = TemplateReferences.limitProblem(in: argument) {
                    all.append(ValidationIssue(file: path, path: "$.subprocess.argv[\(i)]", message: "template too large: \(problem)"))
                    continue
                }
                do { _ = try TemplateReferences.compile(argument) } catch {
                    all.append(
                        ValidationIssue(
                            file: path, path: "$.subprocess.argv[\(i)]",
                            message: "not a valid Mustache template: \(TemplateReferences.describe(error))"))
                }
            }
        case .http(let http):
            if tool.inputSchema == nil { all.append(ValidationIssue(file: path, path: "$", message: "expected input_schema (the model is told what to send)")) }
            if http.allowHosts.isEmpty {
                all.append(
                    ValidationIssue(
                        file: path, path: "$.http.allow_hosts",
                        message: "expected the hosts the URL may reach (its host is a template, so none is implied)"))
            }
            let headers = http.headers.sorted(by: { $0.key < $1.key }).map { ("headers.\($0.key)", $0.value) }
            for (key, text) in [("url", http.url)] + headers {
                if let problem = TemplateReferences.limitProblem(in: text) {
                    all.append(ValidationIssue(file: path, path: "$.http.\(key)", message: "template too large: \(problem)"))
                    continue
                }
                do { _ = try TemplateReferences.compile(text) } catch {
                    all.append(
                        ValidationIssue(file: path, path: "$.http.\(key)", message: "not a valid Mustache template: \(TemplateReferences.describe(error))"))
                }
            }
        case .mcp(let mcp):
            if tool.inputSchema != nil {
                all.append(ValidationIssue(file: path, path: "$.input_schema", message: "an MCP server lists its tools' schemas; leave input_schema out"))
            }
            if let url = mcp.url {
                let scheme = url.lowercased()
                if !(scheme.hasPrefix("http://") || scheme.hasPrefix("https://")) || ToolSpec.host(ofTemplate: url) == nil || url.contains("{{") {
                    all.append(
                        ValidationIssue(file: path, path: "$.mcp.url", message: "expected an http:// or https:// URL with a host (it is not a template)"))
                }
                for (name, text) in mcp.headers.sorted(by: { $0.key < $1.key }) {
                    do { _ = try TemplateReferences.compile(text) } catch {
                        all.append(
                            ValidationIssue(
                                file: path, path: "$.mcp.headers.\(name)", message: "not a valid Mustache template: \(TemplateReferences.describe(error))"))
                    }
                }
            } else if !mcp.headers.isEmpty || mcp.allowHosts != [] {
                all.append(ValidationIssue(file: path, path: "$.mcp", message: "headers and allow_hosts are for a url server; a command server has none"))
            }
            if mcp.url != nil, mcp.workingDirectory != nil {
                all.append(ValidationIssue(file: path, path: "$.mcp.cwd", message: "cwd is for a command server (one Chorus spawns); a url server has none"))
            }
            for name in Set(mcp.arguments.keys).intersection(mcp.defaults.keys).sorted() {
                all.append(
                    ValidationIssue(
                        file: path, path: "$.mcp.defaults.\(name)",
                        message: "'\(name)' is fixed in arguments, so the model never sends it; a default would never apply"))
            }
        }
        if let schema = tool.inputSchema {
            let issues = schemaIssues(schema, file: path, at: "$.input_schema")
            all += issues
            if schema["type"] != nil, schema["type"] != "object", !issues.contains(where: { $0.path == "$.input_schema.type" }) {
                all.append(ValidationIssue(file: path, path: "$.input_schema.type", message: "expected \"object\" (tool inputs are JSON objects)"))
            }
        }
        return all.isEmpty ? .success(tool) : .failure(ValidationFailure(all))
    }

    /// Loads a workflow, its agents and the configuration, and checks them together.
    package static func loadProject(workflow path: String, config configPath: String) -> Result<Project, ValidationFailure> {
        var issues: [ValidationIssue] = []
        let config: ChorusConfig?
        switch loadConfig(configPath) {
        case .success(let loaded): config = loaded
        case .failure(let failure): config = nil; issues += failure.issues
        }
        let (json, workflowIssues) = document(path, schema: SpecSchemas.workflowValue)
        issues += workflowIssues
        guard let json, workflowIssues.isEmpty else { return .failure(ValidationFailure(issues)) }
        let agentsSetting = json["agents_dir"]?.stringValue ?? "../agents"
        // An absolute agents_dir is taken as is (appending it to the workflow's folder made
        // "/srv/agents" into "srv/agents").
        let agentsURL =
            agentsSetting.hasPrefix("/")
            ? URL(fileURLWithPath: agentsSetting)
            : URL(fileURLWithPath: absolute(path)).deletingLastPathComponent().appendingPathComponent(agentsSetting)
        let agentsDirectory = displayPath(agentsURL.standardized.path)
        let workflow = WorkflowSpec(path: path, json: json, agentsDirectory: agentsDirectory)

        var agents: [String: AgentSpec] = [:]
        for (nodeID, field, name) in agentReferences(workflow) where agents[name] == nil {
            let agentPath = agentsDirectory + "/" + name + ".json"
            guard SpecFiles.exists(agentPath) else {
                issues.append(
                    ValidationIssue(
                        file: path, path: "$.nodes.\(nodeID).\(field)",
                        message: "no agent named '\(name)' (expected \(agentPath))"))
                continue
            }
            switch loadAgent(agentPath) {
            case .success(let agent):
                agents[name] = agent
                if agent.name != name {
                    issues.append(ValidationIssue(file: agentPath, path: "$.name", message: "expected '\(name)', the file's name"))
                }
                if let config {
                    for (i, model) in agent.models.enumerated() where config.models[model] == nil {
                        let at = agent.models.count == 1 ? "$.model" : "$.model[\(i)]"
                        issues.append(
                            ValidationIssue(
                                file: agentPath, path: at,
                                message:
                                    "no model named '\(model)' in \(config.path) (defined: \(config.models.keys.sorted().joined(separator: ", ")))"))
                    }
                }
            case .failure(let failure):
                issues += failure.issues
            }
        }
        // Judge agents named by guards are loaded like the workflow's own.
        for agent in agents.values.sorted(by: { $0.name < $1.name }) {
            for judge in Guards.judges(agent.guards.input + agent.guards.output) where agents[judge] == nil {
                let judgePath = agentsDirectory + "/" + judge + ".json"
                switch SpecFiles.exists(judgePath)
                    ? loadAgent(judgePath)
                    : .failure(
                        ValidationFailure([
                            ValidationIssue(file: agent.path, path: "$.guards", message: "no judge agent named '\(judge)' (expected \(judgePath))")
                        ]))
                {
                case .success(let loaded): agents[judge] = loaded
                case .failure(let failure): issues += failure.issues
                }
            }
        }
        let toolsSetting = json["tools_dir"]?.stringValue ?? "../tools"
        let toolsURL =
            toolsSetting.hasPrefix("/")
            ? URL(fileURLWithPath: toolsSetting)
            : URL(fileURLWithPath: absolute(path)).deletingLastPathComponent().appendingPathComponent(toolsSetting)
        let toolsDirectory = displayPath(toolsURL.standardized.path)
        var tools: [String: ToolSpec] = [:]
        for agent in agents.values.sorted(by: { $0.name < $1.name }) {
            for (i, name) in agent.tools.enumerated() where tools[name] == nil {
                let toolPath = toolsDirectory + "/" + name + ".json"
                guard SpecFiles.exists(toolPath) else {
                    issues.append(ValidationIssue(file: agent.path, path: "$.tools[\(i)]", message: "no tool named '\(name)' (expected \(toolPath))"))
                    continue
                }
                switch loadTool(toolPath) {
                case .success(let tool):
                    tools[name] = tool
                    if tool.name != name {
                        issues.append(ValidationIssue(file: toolPath, path: "$.name", message: "expected '\(name)', the file's name"))
                    }
                case .failure(let failure):
                    issues += failure.issues
                }
            }
        }
        var checker = WorkflowChecker(workflow: workflow, agents: agents)
        let dependencies = checker.dependencies()
        issues += checker.issues
        issues += checker.cycles(dependencies)
        guard issues.isEmpty, let config else { return .failure(ValidationFailure(issues)) }
        let project = Project(config: config, workflow: workflow, agents: agents, tools: tools, dependencies: dependencies)
        issues += boundaryConflicts(project)
        return issues.isEmpty ? .success(project) : .failure(ValidationFailure(issues))
    }

    /// Nodes whose agents have no model allowed to receive the labels the node carries:
    /// every call would be refused, so it is an error before the run.
    static func boundaryConflicts(_ project: Project) -> [ValidationIssue] {
        let labels = DataBoundary.labels(project)
        var issues: [ValidationIssue] = []
        for node in project.workflow.nodes.keys.sorted() {
            guard let carried = labels[node], !carried.isEmpty, let spec = project.workflow.nodes[node] else { continue }
            // The node's agents, and the judges their guards ask (a judge reads the step's text).
            let named = spec.agentNames
            let judges = named.flatMap { name in project.agents[name].map { Guards.judges($0.guards.input + $0.guards.output) } ?? [] }
            for agentName in named + judges.filter({ !named.contains($0) }) {
                guard let agent = project.agents[agentName] else { continue }
                let refusals = agent.models.compactMap { name in
                    project.config.models[name].flatMap { model in DataBoundary.refusal(carried, model: model).map { DataBoundary.describe($0, model: model) } }
                }
                if refusals.count == agent.models.count {
                    issues.append(
                        ValidationIssue(
                            file: project.workflow.path, path: "$.nodes.\(node)",
                            message: "agent '\(agentName)' has no model that may receive this node's data: " + refusals.joined(separator: "; ")))
                }
            }
        }
        return issues
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// `path` relative to the working directory when it lies inside it, for messages.
    static func displayPath(_ path: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath + "/"
        return path.hasPrefix(cwd) ? String(path.dropFirst(cwd.count)) : path
    }

    /// (node, field, agent name) for every agent a workflow names.
    static func agentReferences(_ workflow: WorkflowSpec) -> [(String, String, String)] {
        workflow.nodes.keys.sorted().flatMap { id -> [(String, String, String)] in
            let node = workflow.nodes[id]!
            var refs: [(String, String, String)] = []
            if let agent = node.agent { refs.append((id, "agent", agent)) }
            if let spec = node.leadSpec {
                refs.append((id, "lead", spec.lead))
                refs.append((id, "worker", spec.worker))
            }
            if let synthesiser = node.reconcile.agent { refs.append((id, node.kind == .reconcile ? "agent" : "reconcile.agent", synthesiser)) }
            return refs
        }
    }
}
