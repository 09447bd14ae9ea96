import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes

/// Runs tools for real: subprocesses through `ChildProcess` (uv_spawn, argv only, an
/// environment allow-list), HTTP endpoints through the run's HTTP client (a host
/// allow-list checked before a byte is sent).
public struct LiveTools: ToolTransport {
    let client: HTTPClient
    let loop: EventLoop
    /// This run's MCP servers, started on first use.
    let servers: MCPServers

    /// Tools for one run (it starts that run's MCP servers): `ChorusRuntime.liveTools()`.
    public init(client: HTTPClient, loop: EventLoop) {
        self.client = client
        self.loop = loop
        servers = MCPServers(loop: loop, client: client)
    }

    public func finish() async {
        await servers.stopAll()
    }

    public func offer(_ agent: AgentSpec, tools: [String: ToolSpec]) async -> Result<[OfferedTool], ToolFailure> {
        var offered: [OfferedTool] = []
        for name in agent.tools {
            guard let spec = tools[name] else { return .failure(ToolFailure(description: "no tool named '\(name)'")) }
            switch spec.kind {
            case .subprocess, .http:
                if let tool = Self.fileDefinition(spec) { offered.append(tool) }
            case .mcp(let mcp):
                do {
                    let connection = try await servers.connection(for: spec, mcp)
                    var schemas: [JSONValue] = []
                    let schemaOf = await connection.inputSchemas
                    for tool in await connection.tools where mcp.tools?.contains(tool.name) ?? true {
                        guard let schema = schemaOf[tool.name] else { continue }
                        schemas.append(schema)
                        offered.append(
                            OfferedTool(
                                definition: ToolDefinition(
                                    name: tool.name, description: tool.description ?? "",
                                    inputSchema: MCPArguments.offered(schema, fixed: mcp.arguments, defaults: mcp.defaults)),
                                spec: spec, remoteName: tool.name))
                    }
                    if let (key, unused) = MCPArguments.unused(fixed: mcp.arguments, defaults: mcp.defaults, in: schemas) {
                        return .failure(
                            ToolFailure(description: "tool '\(name)': \(key).\(unused): none of the server's tools offered takes an argument '\(unused)'"))
                    }
                    let listed = Set(await connection.tools.map(\.name))
                    if let missing = mcp.tools?.first(where: { !listed.contains($0) }) {
                        return .failure(
                            ToolFailure(
                                description: "tool '\(name)': the MCP server has no tool '\(missing)' (it has: "
                                    + listed.sorted().joined(separator: ", ") + ")"))
                    }
                } catch {
                    return .failure(ToolFailure(description: "\(error)"))
                }
            }
        }
        return .success(offered)
    }

    public func run(_ tool: OfferedTool, input: JSONValue, step: String, attempt: Int, index: Int) async -> ToolOutcome {
        let outcome: ToolOutcome
        switch tool.spec.kind {
        case .subprocess(let process): outcome = await runProcess(process, input: input)
        case .http(let http): outcome = await runHTTP(http, input: input)
        case .mcp(let mcp):
            do {
                let connection = try await servers.connection(for: tool.spec, mcp)
                let remote = tool.remoteName ?? tool.definition.name
                // The server's schema says which tools take the file's arguments; without
                // any, the model's input goes as it is.
                let schema = mcp.arguments.isEmpty && mcp.defaults.isEmpty ? nil : await connection.inputSchemas[remote]
                let sent = MCPArguments.sent(input, schema: schema, fixed: mcp.arguments, defaults: mcp.defaults)
                outcome = await connection.call(remote, input: sent, timeout: mcp.timeout)
            } catch {
                outcome = .failure("\(error)")
            }
        }
        return Self.redacted(outcome, Self.secrets(passedTo: tool.spec))
    }

    // MARK: secrets

    /// Redactors for the values of the environment variables a tool file hands its tool (its
    /// `env`, an HTTP tool's `{{env.NAME}}` headers), but PATH, HOME and LANG: a tool that
    /// prints or echoes its key must not put it in the trace, or in front of the model.
    static func secrets(passedTo spec: ToolSpec) -> [SecretRedactor] {
        let names: [String]
        switch spec.kind {
        case .subprocess(let process): names = process.environment
        case .mcp(let mcp): names = mcp.environment + environmentNames(in: mcp.headers)
        case .http(let http): names = environmentNames(in: http.headers)
        }
        let values = Set(names).subtracting(ToolSpec.defaultEnvironment).compactMap { getenv($0).map { String(cString: $0) } }
        return values.filter { $0.utf8.count >= 8 }.sorted { $0.utf8.count > $1.utf8.count }.compactMap(SecretRedactor.init)
    }

    /// The environment variables header templates name (`{{env.NAME}}`).
    static func environmentNames(in headers: [String: String]) -> [String] {
        headers.values.flatMap { TemplateReferences.references(in: $0) }.filter { $0.root == "env" }
            .compactMap { $0.full.split(separator: ".").dropFirst().first.map(String.init) }
    }

    /// `outcome` with every secret of `redactors` masked in its output and error.
    static func redacted(_ outcome: ToolOutcome, _ redactors: [SecretRedactor]) -> ToolOutcome {
        guard !redactors.isEmpty else { return outcome }
        var outcome = outcome
        for redactor in redactors {
            outcome.output = redactor.redact(outcome.output)
            outcome.error = outcome.error.map(redactor.redact)
            // Output cut at its limit ends just before the marker: a secret cut there is masked too.
            let parts = outcome.output.components(separatedBy: "\n[output truncated at ")
            if parts.count == 2 {
                outcome.output = redactor.redactCutEnd(parts[0]) + "\n[output truncated at " + parts[1]
            } else {
                outcome.output = redactor.redactCutEnd(outcome.output)
            }
        }
        return outcome
    }

    // MARK: subprocess

    private func runProcess(_ process: ToolSpec.Subprocess, input: JSONValue) async -> ToolOutcome {
        var argv: [String] = []
        for argument in process.argv {
            guard argument.contains("{{") else { argv.append(argument); continue }
            do { argv.append(try TemplateContext.render(argument, ["input": input])) } catch {
                return .failure("cannot render the argument \(argument.prefix(80)): \(error)")
            }
        }
        let environment = Self.environment(allowing: process.environment)
        let result: ProcessResult
        do {
            result = try await ChildProcess.run(
                argv, stdin: process.stdinJSON ? input.serialized() : [], environment: environment,
                workingDirectory: process.workingDirectory, timeout: process.timeout,
                maxOutputBytes: process.maxOutputBytes, ownProcessGroup: true, on: loop)
        } catch {
            return .failure("\(error)")
        }
        var output = String(decoding: result.stdout, as: UTF8.self)
        if result.outputTruncated { output += "\n[output truncated at \(process.maxOutputBytes) bytes]" }
        if result.timedOut {
            return .failure("timed out after \(process.timeout.shortText) and was killed" + (output.isEmpty ? "" : "; output so far:\n" + output))
        }
        if let signal = result.terminationSignal { return .failure("killed by signal \(signal)") }
        let status = Int(result.exitStatus ?? -1)
        guard status == 0 else {
            let stderr = String(decoding: result.stderr.suffix(4096), as: UTF8.self)
            var outcome = ToolOutcome.failure("exit status \(status)", exitStatus: status)
            outcome.output = "exit status \(status)" + (stderr.isEmpty ? "" : "\n" + stderr) + (output.isEmpty ? "" : "\n" + output)
            return outcome
        }
        return ToolOutcome(output: output, exitStatus: 0)
    }

    /// Only the named variables of this process's environment: API keys in chorus.json's
    /// `api_key_env` never reach a tool unless its file lists them.
    static func environment(allowing names: [String]) -> [String: String] {
        var environment: [String: String] = [:]
        for name in names {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        return environment
    }

    // MARK: HTTP

    private func runHTTP(_ http: ToolSpec.HTTP, input: JSONValue) async -> ToolOutcome {
        let url: String
        do { url = try TemplateContext.render(http.url, ["input": Self.percentEncoded(input)]) } catch {
            return .failure("cannot render the URL: \(error)")
        }
        guard let host = URLComponents(string: url)?.host?.lowercased(), !host.isEmpty else {
            return .failure("not a URL: \(HTTPClientRequest.redact(url).prefix(200))")
        }
        guard http.allowHosts.contains(host) else {
            return .failure("host \(host) is not in the tool's allow_hosts (\(http.allowHosts.joined(separator: ", ")))")
        }
        var fields: HTTPFields
        switch Self.headerFields(http.headers) {
        case .success(let rendered): fields = rendered
        case .failure(let failure): return .failure(failure.description)
        }
        let method = HTTPRequest.Method(http.method) ?? .post
        var body: [UInt8] = []
        if method != .get && method != .delete {
            body = input.serialized()
            fields[.contentType] = "application/json"
        }
        do {
            let response = try await client.execute(
                HTTPClientRequest(
                    method: method, url: url, headerFields: fields, body: body,
                    timeout: http.timeout))
            return ToolOutcome(output: Self.text(response.body, limit: http.maxResponseBytes), exitStatus: Int(response.status.code))
        } catch let error where error.code == .httpStatus {
            let status = Int(error.response?.status.code ?? 0)
            var outcome = ToolOutcome.failure("HTTP \(status)", exitStatus: status)
            outcome.output = "HTTP \(status)\n" + Self.text(error.response?.body ?? [], limit: http.maxResponseBytes)
            return outcome
        } catch {
            return .failure(error.description)
        }
    }

    /// A tool file's headers with their `{{env.NAME}}` references filled in. The failure names
    /// the header, never its value (which may hold a key).
    static func headerFields(_ headers: [String: String]) -> Result<HTTPFields, ToolFailure> {
        var fields = HTTPFields()
        let environment = ProcessInfo.processInfo.environment
        for (name, template) in headers.sorted(by: { $0.key < $1.key }) {
            guard let fieldName = HTTPField.Name(name) else { return .failure(ToolFailure(description: "not a header name: \(name)")) }
            let value: String
            do { value = try TemplateContext.render(template, ["env": .object(environment.mapValues { .string($0) })]) } catch {
                return .failure(ToolFailure(description: "cannot render header \(name): \(error)"))
            }
            fields[fieldName] = value
        }
        return .success(fields)
    }

    /// Every string in `input` percent-encoded for a URL (objects and arrays kept).
    static func percentEncoded(_ input: JSONValue) -> JSONValue {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        switch input {
        case .string(let s): return .string(s.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
        case .array(let items): return .array(items.map(percentEncoded))
        case .object(let fields): return .object(fields.mapValues(percentEncoded))
        default: return input
        }
    }

    /// At most `limit` bytes as text, with a marker when cut.
    static func text(_ bytes: [UInt8], limit: Int) -> String {
        guard bytes.count > limit else { return String(decoding: bytes, as: UTF8.self) }
        return String(decoding: bytes.prefix(limit), as: UTF8.self) + "\n[response truncated at \(limit) bytes]"
    }
}
