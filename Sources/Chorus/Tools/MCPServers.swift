import ChorusIO
import ChorusJSON
import Foundation
import HTTPTypes
import Logging
import MCP
import Synchronization

/// The MCP servers of one run: each tool file's server is started on first use, shared by
/// every step that uses it, restarted if it died, and stopped when the run ends.
///
/// The protocol is the MCP Swift SDK's `Client`; the I/O is Chorus's own: a stdio server is
/// spawned with `uv_spawn` on the event loop (ProcessSession) and `ProcessTransport` hands
/// its lines to the SDK. (The SDK's own `StdioTransport` would read the descriptors itself,
/// polling every 10 ms on EAGAIN — see its readLoop — and could not tell the server's exit
/// from a quiet pipe; driven by libuv, a read costs nothing until bytes arrive and an exit
/// fails the calls in flight at once.) A Streamable HTTP server (`mcp.url`) is reached through
/// `MCPHTTPTransport` on the run's HTTP client: the SDK's own HTTPClientTransport is built on
/// URLSession and only on Apple platforms.
actor MCPServers {
    private let loop: EventLoop
    private let client: HTTPClient
    private var servers: [String: Task<MCPServerConnection, Error>] = [:]
    private var stopped = false

    init(loop: EventLoop, client: HTTPClient) {
        self.loop = loop
        self.client = client
    }

    /// The running server of `spec` (a tool file), started if need be.
    func connection(for spec: ToolSpec, _ mcp: ToolSpec.MCP) async throws -> MCPServerConnection {
        if stopped { throw MCPFailure("the run has ended") }
        if let existing = servers[spec.path], let connection = try? await existing.value, await !connection.hasExited {
            return connection
        }
        let (loop, client) = (self.loop, self.client)
        let starting = Task { try await MCPServerConnection.start(spec, mcp, loop: loop, client: client) }
        servers[spec.path] = starting
        return try await starting.value
    }

    /// Stops every server (end of input, then SIGTERM, then SIGKILL).
    func stopAll() async {
        stopped = true
        for task in servers.values {
            if let connection = try? await task.value { await connection.stop() }
        }
        servers.removeAll()
    }
}

/// Why an MCP server could not serve a call, one line.
struct MCPFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One running MCP server and the SDK client talking to it: a process of its own (stdio), or
/// a session with a server at a URL.
actor MCPServerConnection {
    private var client: Client
    /// The server's process; nil for a server at a URL.
    private let session: ProcessSession?
    private let name: String
    private let loop: EventLoop
    private(set) var tools: [MCP.Tool] = []
    /// Each listed tool's input schema as JSON, converted once per listing (offering and
    /// calling read it).
    private(set) var inputSchemas: [String: JSONValue] = [:]
    private(set) var exit: ProcessSession.Exit?
    var hasExited: Bool { exit != nil }
    /// Why the server was stopped for an oversized message, once it was.
    nonisolated let overflow = OverflowNote()
    /// For a server at a URL: a transport for a new session, when the server no longer knows
    /// the old one (it restarted, or let the session expire); and the bound on starting one.
    private var freshTransport: (@Sendable () -> any Transport)?
    private var startTimeout = Duration.seconds(30)
    /// The new session being started, which every call that found the old one gone awaits;
    /// `sessions` counts the sessions started, so that a call renews only the one it used.
    private var renewal: Task<Void, Error>?
    private var sessions = 0
    /// A renewal failed: the next call starts a session before it is made.
    private var sessionLost = false
    /// Clients of sessions the server forgot, kept until `stop`: disconnecting one at once
    /// would fail the calls still waiting on it (the SDK fails every pending request of a
    /// client that disconnects) before their own 404 comes back to renew and retry them.
    private var retired: [Client] = []
    private var stopped = false

    private init(client: Client, session: ProcessSession?, name: String, loop: EventLoop) {
        self.client = client
        self.session = session
        self.name = name
        self.loop = loop
    }

    static func start(_ spec: ToolSpec, _ mcp: ToolSpec.MCP, loop: EventLoop, client http: HTTPClient) async throws -> MCPServerConnection {
        guard let command = mcp.command else { return try await connect(spec, mcp, loop: loop, client: http) }
        let session: ProcessSession
        do {
            session = try await ProcessSession.start(
                command, environment: LiveTools.environment(allowing: mcp.environment), workingDirectory: mcp.workingDirectory, on: loop)
        } catch {
            throw MCPFailure("tool '\(spec.name)': \(error)")
        }
        let client = Client(name: "chorus", version: "1.0")
        let connection = MCPServerConnection(client: client, session: session, name: spec.name, loop: loop)
        await connection.watchExit()
        let limit = mcp.maxMessageBytes
        let overflow = connection.overflow
        let transport = ProcessTransport(session: session, maxMessageBytes: limit) {
            // A server that writes past the limit without ending its message is broken or
            // hostile: it is stopped, and the calls in flight fail saying why.
            overflow.set("the MCP server sent a message larger than max_message_bytes (\(limit) bytes)")
            session.kill(SIGKILL)
        }
        do {
            try await connection.initialize(transport, timeout: mcp.timeout)
        } catch {
            await connection.stop()
            throw MCPFailure("tool '\(spec.name)': MCP server \(command.joined(separator: " ").prefix(120)): \(error)")
        }
        return connection
    }

    /// A session with the Streamable HTTP server at `mcp.url`, whose host must be in the tool
    /// file's allow-list before a byte is sent.
    private static func connect(_ spec: ToolSpec, _ mcp: ToolSpec.MCP, loop: EventLoop, client http: HTTPClient) async throws -> MCPServerConnection {
        let url = mcp.url ?? ""
        let shown = HTTPClientRequest.redact(url).prefix(200)
        guard let host = URLComponents(string: url)?.host?.lowercased(), !host.isEmpty, url.lowercased().hasPrefix("http") else {
            throw MCPFailure("tool '\(spec.name)': not an http:// or https:// URL: \(shown)")
        }
        guard mcp.allowHosts.contains(host) else {
            throw MCPFailure("tool '\(spec.name)': host \(host) is not in the tool's allow_hosts (\(mcp.allowHosts.joined(separator: ", ")))")
        }
        let headers: HTTPFields
        switch LiveTools.headerFields(mcp.headers) {
        case .success(let fields): headers = fields
        case .failure(let failure): throw MCPFailure("tool '\(spec.name)': \(failure)")
        }
        // A request outlives the bounds of starting and of a call (`bounded`) by a second, so
        // that no answer ends in their line ("no answer … within"); the transfer ends then too,
        // or at the DELETE that ends the session with the run.
        let transport = { @Sendable in
            MCPHTTPTransport(
                client: http, url: url, headers: headers, timeout: max(mcp.timeout, .seconds(30)) + .seconds(1),
                maxResponseBytes: mcp.maxMessageBytes)
        }
        let connection = MCPServerConnection(client: Client(name: "chorus", version: "1.0"), session: nil, name: spec.name, loop: loop)
        await connection.renewable(by: transport, timeout: mcp.timeout)
        do {
            try await connection.initialize(transport(), timeout: mcp.timeout)
        } catch {
            await connection.stop()
            // The transport's own failures name the URL already ("POST URL: HTTP 401").
            let text = "\(error)"
            throw MCPFailure("tool '\(spec.name)': " + (text.contains(shown) ? text : "MCP server \(shown): \(text)"))
        }
        return connection
    }

    /// Connects the client through `transport` (MCP's initialize) and lists the server's tools.
    /// `timeout_s` is per tool call: starting may take 30 s whatever it says (a Python server
    /// took over 2 s to initialize under the full suite's load, past a 2 s call timeout).
    private func initialize(_ transport: any Transport, timeout callTimeout: Duration) async throws {
        let timeout = max(callTimeout, .seconds(30))
        let client = self.client
        _ = try await bounded(timeout, "starting") { try await client.connect(transport: transport) }
        var cursor: String?
        var tools: [MCP.Tool] = []
        repeat {
            let page = try await bounded(timeout, "listing tools") { [cursor] in try await client.listTools(cursor: cursor) }
            tools += page.tools
            cursor = page.nextCursor
        } while cursor != nil && tools.count < 10_000
        self.tools = tools
        inputSchemas = tools.reduce(into: [:]) { schemas, tool in
            schemas[tool.name] = try? JSONValue(parsing: Array(JSONEncoder().encode(tool.inputSchema)))
        }
    }

    /// Lets the connection start a new session through `transport` when a server at a URL
    /// has forgotten the old one, bounded as starting is.
    private func renewable(by transport: @escaping @Sendable () -> any Transport, timeout: Duration) {
        freshTransport = transport
        startTimeout = timeout
    }

    /// When the server exits, the client's requests in flight fail at once.
    private func watchExit() {
        guard let session else { return }
        Task { [weak self] in
            let exit = await session.wait()
            await self?.exited(exit)
        }
    }

    private func exited(_ exit: ProcessSession.Exit) async {
        self.exit = exit
        await client.disconnect()
    }

    /// Calls the server's tool `remote` with `input`; its failure, the server's exit or the
    /// timeout is a tool error the model sees.
    func call(_ remote: String, input: JSONValue, timeout: Duration) async -> ToolOutcome {
        let arguments: [String: Value]
        do { arguments = try JSONDecoder().decode([String: Value].self, from: Data(input.serialized())) } catch {
            return .failure("the input is not a JSON object")
        }
        do {
            let result = try await callTool(remote, arguments, timeout: timeout)
            let text = result.content.map { content -> String in
                if case .text(let text, _, _) = content { return text }
                return (try? JSONEncoder().encode(content)).map { String(decoding: $0, as: UTF8.self) } ?? "[content]"
            }.joined(separator: "\n")
            return result.isError == true
                ? ToolOutcome(output: text, isError: true, error: "the tool reported an error: \(text.prefix(200))")
                : ToolOutcome(output: text)
        } catch {
            return .failure("\(error)")
        }
    }

    /// Calls `remote` within `timeout`. A server at a URL that no longer knows the session
    /// (404) has not run the call: a new session is started (initialize, tools listed again,
    /// within the bound on starting) and the call made once more, within `timeout` again.
    private func callTool(
        _ remote: String, _ arguments: [String: Value], timeout: Duration
    ) async throws -> (content: [MCP.Tool.Content], isError: Bool?) {
        if let renewal { try? await renewal.value }
        if sessionLost {
            do { try await renewSession(after: sessions) } catch { throw MCPFailure("no session with the MCP server: \(error)") }
        }
        let (client, session) = (self.client, sessions)
        do {
            return try await bounded(timeout, "calling \(remote)") { try await client.callTool(name: remote, arguments: arguments) }
        } catch let expired as MCPSessionExpired {
            do { try await renewSession(after: session) } catch {
                throw MCPFailure("\(expired), and a new session failed: \(error)")
            }
            let client = self.client
            do {
                return try await bounded(timeout, "calling \(remote)") { try await client.callTool(name: remote, arguments: arguments) }
            } catch let again as MCPSessionExpired {
                throw MCPFailure("\(again), nor the new one")
            }
        }
    }

    /// Replaces the session numbered `session` with a new one, unless that was done already;
    /// calls that find the session gone together share one renewal.
    private func renewSession(after session: Int) async throws {
        if let renewal { return try await renewal.value }
        guard sessions == session, let freshTransport else { return }
        guard !stopped else { throw MCPFailure("the run has ended") }
        retired.append(client)
        client = Client(name: "chorus", version: "1.0")
        sessions += 1
        let renewal = Task { try await self.initialize(freshTransport(), timeout: self.startTimeout) }
        self.renewal = renewal
        defer { self.renewal = nil }
        do { try await renewal.value } catch {
            sessionLost = true
            throw error
        }
        sessionLost = false
        // `stop` came while the session was starting: it waited for this, and ends it now.
        if stopped { await client.disconnect() }
    }

    /// Runs `body`, but gives up when the server exits or `timeout` passes, whichever is first.
    private func bounded<T: Sendable>(
        _ timeout: Duration, _ what: String,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        if let exit { throw MCPFailure(Self.describe(exit, what, overflow: overflow.text)) }
        let gate = ResumeOnce<T>()
        let session = self.session
        let loop = self.loop
        let name = self.name
        let overflow = self.overflow
        return try await withCheckedThrowingContinuation { continuation in
            gate.set(continuation)
            let work = Task {
                do { gate.resume(.success(try await body())) } catch {
                    // The server's exit disconnects the client, which fails the call first at
                    // times: once it has exited, the exit is the reason (as the watch below says).
                    gate.resume(.failure(self.exit.map { MCPFailure(Self.describe($0, what, overflow: overflow.text)) } ?? error))
                }
            }
            let timer = Task(executorPreference: loop) {
                guard (try? await loop.sleep(for: timeout)) != nil else { return }
                gate.resume(.failure(MCPFailure("\(name): no answer \(what) within \(timeout.shortText)")))
                work.cancel()
            }
            if let session {
                Task {
                    let exit = await session.wait()
                    gate.resume(.failure(MCPFailure(Self.describe(exit, what, overflow: overflow.text))))
                }
            }
            gate.onResume = { timer.cancel() }
        }
    }

    private static func describe(_ exit: ProcessSession.Exit, _ what: String, overflow: String?) -> String {
        if let overflow { return "\(overflow) while \(what); it was stopped" }
        let how = exit.terminationSignal.map { "was killed by signal \($0)" } ?? "exited with status \(exit.exitStatus ?? -1)"
        let stderr = String(decoding: exit.stderrTail.suffix(600), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return "the MCP server \(how) while \(what)" + (stderr.isEmpty ? "" : ": " + stderr.split(separator: "\n").suffix(3).joined(separator: " | "))
    }

    /// Ends the server: end of input (MCP's stdio shutdown), SIGTERM after 2 s, SIGKILL after
    /// 4 s; for a server at a URL, the session (the transport's DELETE).
    func stop() async {
        stopped = true
        // A session being started is waited for (within the bound on starting), so that
        // its GET stream and its DELETE are not left behind by the run.
        if let renewal { _ = try? await renewal.value }
        await client.disconnect()
        for old in retired { await old.disconnect() }  // no DELETE: the server forgot them
        retired.removeAll()
        guard exit == nil, let session else { return }
        session.closeInput()
        let loop = self.loop
        Task(executorPreference: loop) {
            try? await loop.sleep(for: .seconds(2))
            session.kill(SIGTERM)
            try? await loop.sleep(for: .seconds(2))
            session.kill(SIGKILL)
        }
        _ = await session.wait()
    }
}

/// Resumes a continuation once, whichever of several racers gets there first.
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?
    private var early: Result<T, Error>?
    var onResume: (@Sendable () -> Void)?

    func set(_ continuation: CheckedContinuation<T, Error>) {
        lock.lock()
        if let early {
            lock.unlock()
            continuation.resume(with: early)
            return
        }
        self.continuation = continuation
        lock.unlock()
    }

    func resume(_ result: Result<T, Error>) {
        lock.lock()
        guard let continuation else {
            if early == nil { early = result }
            lock.unlock()
            return
        }
        self.continuation = nil
        early = result  // later racers find nothing to resume
        let done = onResume
        lock.unlock()
        continuation.resume(with: result)
        done?()
    }
}

/// Why a server was stopped for an oversized message; set once, read from any task.
final class OverflowNote: Sendable {
    private let state = Mutex<String?>(nil)
    var text: String? { state.withLock { $0 } }
    func set(_ text: String) { state.withLock { if $0 == nil { $0 = text } } }
}

/// The MCP SDK's transport over a spawned server's pipes: one JSON-RPC message per line, at
/// most `maxMessageBytes` long (a server that writes gigabytes without a newline would
/// otherwise be buffered whole: 2 GB drove Chorus to 2.2 GB of memory).
actor ProcessTransport: Transport {
    nonisolated let logger = Logger(label: "chorus.mcp", factory: { _ in SwiftLogNoOpLogHandler() })
    private let session: ProcessSession
    private let maxMessageBytes: Int
    private let onOverflow: @Sendable () -> Void
    private let stream: AsyncThrowingStream<Data, Swift.Error>
    private let continuation: AsyncThrowingStream<Data, Swift.Error>.Continuation
    private var pump: Task<Void, Never>?

    init(session: ProcessSession, maxMessageBytes: Int, onOverflow: @escaping @Sendable () -> Void) {
        self.session = session
        self.maxMessageBytes = maxMessageBytes
        self.onOverflow = onOverflow
        (stream, continuation) = AsyncThrowingStream.makeStream(of: Data.self)
    }

    func connect() async throws {
        guard pump == nil else { return }
        let session = self.session
        let continuation = self.continuation
        let (limit, onOverflow) = (maxMessageBytes, self.onOverflow)
        pump = Task {
            var buffer: [UInt8] = []
            var scanned = 0  // bytes of `buffer` already known to hold no newline
            for await chunk in session.output {
                buffer += chunk
                var start = 0
                while let newline = buffer[max(start, scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                    if newline - start > limit { break }
                    if newline > start { continuation.yield(Data(buffer[start..<newline])) }
                    start = newline + 1
                }
                if start > 0 { buffer.removeFirst(start) }
                scanned = buffer.count
                if buffer.count > limit {
                    onOverflow()
                    return
                }
            }
            // End of output is the server's exit, which MCPServerConnection reports; the
            // stream stays open until the client disconnects, so its loop does not spin.
        }
    }

    func disconnect() async {
        continuation.finish()
        pump?.cancel()
    }

    func send(_ data: Data) async throws {
        session.write(Array(data) + [UInt8(ascii: "\n")])
    }

    func receive() -> AsyncThrowingStream<Data, Swift.Error> {
        stream
    }
}
