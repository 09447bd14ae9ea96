import ChorusJSON
import Foundation

/// A tool agents may call, from `tools/NAME.json`: a subprocess, an HTTP endpoint, or
/// (some of) the tools of an MCP server.
public struct ToolSpec: Sendable {
    /// How the tool runs.
    public enum Kind: Sendable {
        /// A program run once per call.
        case subprocess(Subprocess)
        /// An HTTP endpoint.
        case http(HTTP)
        /// Tools of an MCP server.
        case mcp(MCP)
    }

    /// A program run once per call: argv never goes through a shell.
    public struct Subprocess: Sendable {
        /// Program and arguments; each argument may be a Mustache template over `input`.
        public var argv: [String]
        /// Whether the input goes to standard input as one JSON object.
        public var stdinJSON: Bool
        /// The call fails after this long (the program is killed).
        public var timeout: Duration
        /// Output beyond this is cut, and the call says so.
        public var maxOutputBytes: Int
        /// Working directory (absolute), or nil for the current one.
        public var workingDirectory: String?
        /// Environment variables passed through; nothing else reaches the program.
        public var environment: [String]
    }

    /// An HTTP endpoint called once per call.
    public struct HTTP: Sendable {
        /// The HTTP method (GET and DELETE send no body; the others send the input as JSON).
        public var method: String
        /// Mustache template over `input`; values are percent-encoded.
        public var url: String
        /// Header values may name environment variables: `{{env.NAME}}`.
        public var headers: [String: String]
        /// Hosts the URL may reach (lowercased).
        public var allowHosts: [String]
        /// The call fails after this long.
        public var timeout: Duration
        /// A longer response is cut here, and the output says so.
        public var maxResponseBytes: Int
    }

    /// An MCP server: spawned over stdio (`command`) or reached at `url` (Streamable HTTP).
    public struct MCP: Sendable {
        /// The program and arguments of a stdio server.
        public var command: [String]?
        /// The URL of an HTTP server.
        public var url: String?
        /// Headers sent to a `url` server; values may name environment variables: `{{env.NAME}}`.
        public var headers: [String: String]
        /// Hosts a `url` server may be reached at (lowercased); default the URL's own.
        public var allowHosts: [String]
        /// The server's tools to expose; nil for all.
        public var tools: [String]?
        /// Environment variables passed to a stdio server; nothing else reaches it.
        public var environment: [String]
        /// Starting the server, listing its tools and each call fail after this long.
        public var timeout: Duration
        /// The largest JSON-RPC message the server may send (a line of a stdio server, or
        /// the whole answer to one POST of a `url` server).
        public var maxMessageBytes: Int
        /// A stdio server's working directory (absolute), or nil for the current one.
        public var workingDirectory: String?
        /// Arguments the tool file fixes: sent with every call of a tool that takes them,
        /// whatever the model sent, and left out of the schema the model sees.
        public var arguments: [String: JSONValue]
        /// Arguments sent when the model leaves them out: the model sees them as the
        /// schema's `default`, and no longer as required.
        public var defaults: [String: JSONValue]
    }

    /// The file it came from.
    public var path: String
    /// The name agents list and the model calls it by.
    public var name: String
    /// What it does, for the model to decide when to call it.
    public var description: String
    /// JSON Schema of the input; nil for MCP tools (the server lists theirs).
    public var inputSchema: JSONValue?
    /// How it runs.
    public var kind: Kind
    /// Labels of what the tool returns.
    public var labels: [String]
    /// Whether a person must approve before this tool runs in a run.
    public var requiresApproval: Bool

    /// What a tool's environment holds unless its file says otherwise.
    public static let defaultEnvironment = ["PATH", "HOME", "LANG"]

    init(path: String, json: JSONValue) {
        self.path = path
        name = json["name"]?.stringValue ?? ""
        description = json["description"]?.stringValue ?? ""
        inputSchema = json["input_schema"]
        labels = json["labels"]?.arrayValue?.compactMap(\.stringValue) ?? []
        requiresApproval = json["approval"]?.stringValue == "always"
        let folder = URL(fileURLWithPath: SpecLoader.absolute(path)).deletingLastPathComponent()
        if let process = json["subprocess"] {
            let cwd = process["cwd"]?.stringValue.map { Self.path($0, from: folder) }
            kind = .subprocess(
                Subprocess(
                    argv: Self.resolvingProgram(process["argv"]?.arrayValue?.compactMap(\.stringValue) ?? [], from: folder),
                    stdinJSON: process["stdin"]?.stringValue != "none",
                    timeout: Self.duration(process["timeout_s"], default: 30),
                    maxOutputBytes: process["max_output_bytes"]?.intValue ?? 1 << 20,
                    workingDirectory: cwd,
                    environment: process["env"]?.arrayValue?.compactMap(\.stringValue) ?? Self.defaultEnvironment))
        } else if let http = json["http"] {
            let url = http["url"]?.stringValue ?? ""
            kind = .http(
                HTTP(
                    method: http["method"]?.stringValue ?? "POST",
                    url: url,
                    headers: (http["headers"]?.objectValue ?? [:]).compactMapValues(\.stringValue),
                    allowHosts: (http["allow_hosts"]?.arrayValue?.compactMap(\.stringValue) ?? [ToolSpec.host(ofTemplate: url)].compactMap { $0 })
                        .map { $0.lowercased() },
                    timeout: Self.duration(http["timeout_s"], default: 30),
                    maxResponseBytes: http["max_response_bytes"]?.intValue ?? 1 << 20))
        } else {
            let mcp = json["mcp"] ?? [:]
            let url = mcp["url"]?.stringValue
            kind = .mcp(
                MCP(
                    command: (mcp["command"]?.arrayValue?.compactMap(\.stringValue)).map { Self.resolvingProgram($0, from: folder) },
                    url: url,
                    headers: (mcp["headers"]?.objectValue ?? [:]).compactMapValues(\.stringValue),
                    allowHosts: (mcp["allow_hosts"]?.arrayValue?.compactMap(\.stringValue) ?? [url.flatMap(ToolSpec.host(ofTemplate:))].compactMap { $0 })
                        .map { $0.lowercased() },
                    tools: mcp["tools"]?.arrayValue?.compactMap(\.stringValue),
                    environment: mcp["env"]?.arrayValue?.compactMap(\.stringValue) ?? Self.defaultEnvironment,
                    timeout: Self.duration(mcp["timeout_s"], default: 30),
                    maxMessageBytes: mcp["max_message_bytes"]?.intValue ?? 16 << 20,
                    workingDirectory: mcp["cwd"]?.stringValue.map { Self.path($0, from: folder) },
                    arguments: mcp["arguments"]?.objectValue ?? [:],
                    defaults: mcp["defaults"]?.objectValue ?? [:]))
        }
    }

    /// A program given as a relative path with a slash (`../.venvs/mcp/bin/server`) is found
    /// from the tool file's folder, wherever chorus runs; a bare name is looked up in PATH.
    private static func resolvingProgram(_ argv: [String], from folder: URL) -> [String] {
        guard let program = argv.first, program.contains("/"), !program.hasPrefix("/") else { return argv }
        return [folder.appendingPathComponent(program).standardized.path] + argv.dropFirst()
    }

    /// A directory given relative to the tool file's folder, made absolute.
    private static func path(_ path: String, from folder: URL) -> String {
        path.hasPrefix("/") ? path : folder.appendingPathComponent(path).standardized.path
    }

    /// Seconds as a duration; the schema bounds them to (0, 86400], clamped here too.
    private static func duration(_ value: JSONValue?, default seconds: Double) -> Duration {
        let s = value?.numberValue ?? seconds
        return .milliseconds(Int64(s.isFinite ? min(max(s, 0.001), 86_400) * 1000 : seconds * 1000))
    }

    /// The host of a URL template (`https://api.example.com/search?q={{input.q}}`),
    /// lowercased; nil when the host itself is templated or there is none.
    static func host(ofTemplate template: String) -> String? {
        let literal = template.components(separatedBy: "{{")[0]
        guard let schemeEnd = literal.range(of: "://") else { return nil }
        let rest = literal[schemeEnd.upperBound...]
        guard let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? (template.contains("{{") ? nil : rest.endIndex)
        else { return nil }  // the template goes on inside the host
        var host = rest[..<end].split(separator: "@", omittingEmptySubsequences: false).last ?? ""
        if host.hasPrefix("[") {
            host = host.dropFirst().prefix { $0 != "]" }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        return host.isEmpty ? nil : host.lowercased()
    }
}
