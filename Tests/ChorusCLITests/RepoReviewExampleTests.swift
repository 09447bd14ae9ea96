import ChorusJSON
import ChorusTrace
import Foundation
import Testing
import TestSupport

/// The shipped repo-review example (issue 30): workflows/repo-review.json reviews this
/// repository through the reference mcp-server-git over stdio, and
/// workflows/repo-review-http.json runs the same job with the same server behind mcp-proxy
/// over Streamable HTTP. Both against `chorus sim`'s tool-using models; both replay with
/// every server stopped.
private let gitServer = CLI.ShippedToolExampleTests.root.appendingPathComponent(".venvs/mcp/bin/mcp-server-git").path
private let mcpProxy = CLI.ShippedToolExampleTests.root.appendingPathComponent(".venvs/mcp-proxy/bin/mcp-proxy").path

extension CLI {
    @Suite(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: gitServer) && FileManager.default.isExecutableFile(atPath: mcpProxy),
            "no .venvs/mcp or .venvs/mcp-proxy: scripts/test creates them"))
    struct RepoReviewExampleTests {
        static let root = ShippedToolExampleTests.root
        static let tokenVariable = "CHORUS_TEST_GIT_MCP_TOKEN"
        static let token = "git-mcp-token-\(UUID().uuidString)"

        /// The run's git tool calls, their outputs by tool.
        private func toolOutputs(_ store: TraceStore, _ id: String) throws -> [(tool: String, output: String)] {
            let calls = try store.toolCalls(ofRun: id)
            let blobs = try store.blobs(Set(calls.map(\.outputHash)))
            return calls.map { ($0.tool, String(decoding: blobs[$0.outputHash] ?? [], as: UTF8.self)) }
        }

        /// The shipped HTTP variant copied into `project` (workflow, agents, tool file), its
        /// tool file pointed at `port` and given a bearer token from the environment; the
        /// workflow's path.
        static func httpCopy(in project: CLIProject, port: Int) throws -> String {
            let copy = project.directory.appendingPathComponent("shipped")
            for folder in ["workflows", "agents", "tools/http"] {
                try FileManager.default.createDirectory(at: copy.appendingPathComponent(folder), withIntermediateDirectories: true)
            }
            for file in ["workflows/repo-review-http.json", "agents/review-lead.json", "agents/repo-researcher.json", "agents/review-writer.json"] {
                try FileManager.default.copyItem(at: root.appendingPathComponent(file), to: copy.appendingPathComponent(file))
            }
            var tool = try JSONValue(parsing: Array(try Data(contentsOf: root.appendingPathComponent("tools/http/git.json"))))
            var mcp = tool["mcp"]?.objectValue ?? [:]
            #expect(mcp["url"] == "http://127.0.0.1:8712/mcp")
            mcp["url"] = .string("http://127.0.0.1:\(port)/mcp")
            mcp["headers"] = ["Authorization": .string("Bearer {{env.\(tokenVariable)}}")]
            tool = .object((tool.objectValue ?? [:]).merging(["mcp": .object(mcp)]) { $1 })
            try Data(tool.serialized()).write(to: copy.appendingPathComponent("tools/http/git.json"))
            return copy.appendingPathComponent("workflows/repo-review-http.json").path
        }

        @Test func theReviewRunsOverStdioAndOverHTTPWithTheSameToolResultsAndReplaysWithNoServer() async throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db]
            let head = try execute("/usr/bin/git", ["-C", Self.root.path, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(head.count == 40, "this checkout has a HEAD: \(head)")
            let parent = try execute("/usr/bin/git", ["-C", Self.root.path, "rev-parse", "-q", "--verify", "HEAD~1"])
            try #require(parent.status == 0, "git_diff's default target, HEAD~1, is missing: a full clone is needed, not a shallow one")

            // Over stdio: the shipped files as they are.
            let stdio = try runChorus(["run", Self.root.appendingPathComponent("workflows/repo-review.json").path, "--json"] + trace)
            #expect(stdio.status == 0, "\(stdio.stderr)")
            let stdioID = try #require(try JSONValue(parsing: Array(stdio.stdout.utf8))["run_id"]?.stringValue)
            let store = try TraceStore(path: project.db)
            let viaStdio = try toolOutputs(store, stdioID)
            #expect(viaStdio.count == 12 && Set(viaStdio.map(\.tool)) == ["git_log", "git_show", "git_diff"], "\(viaStdio.map(\.tool))")
            #expect(try store.toolCalls(ofRun: stdioID).allSatisfy { !$0.isError && $0.kind == "mcp" })
            // The file fixed repo_path and defaulted revision to HEAD: the real server showed
            // this checkout's HEAD, and its log.
            #expect(
                viaStdio.contains { $0.tool == "git_show" && $0.output.hasPrefix("commit \(head)") },
                "\(viaStdio.first { $0.tool == "git_show" }?.output.prefix(200) ?? "")")
            #expect(viaStdio.contains { $0.tool == "git_log" && $0.output.contains(String(head.prefix(7))) })
            let inputs = try store.blobs(Set(try store.toolCalls(ofRun: stdioID).map(\.inputHash))).values.map { String(decoding: $0, as: UTF8.self) }
            #expect(!inputs.contains { $0.contains("repo_path") }, "the model never saw repo_path: \(inputs)")

            // Over HTTP: the shipped workflow, agents and tool file, the tool file's port
            // moved to the proxy's and a bearer token added (mcp-proxy ignores it; it must
            // still never reach the trace).
            let proxy = try await MCPProxy(proxy: mcpProxy, serving: [gitServer, "--repository", "."], in: Self.root.path, scratch: project.directory)
            defer { proxy.stop() }
            let workflow = try Self.httpCopy(in: project, port: proxy.port)
            let http = try runChorus(["run", workflow, "--json"] + trace, environment: [Self.tokenVariable: Self.token])
            #expect(http.status == 0, "\(http.stderr)")
            let httpID = try #require(try JSONValue(parsing: Array(http.stdout.utf8))["run_id"]?.stringValue)
            let viaHTTP = try toolOutputs(store, httpID)
            let httpCalls = try store.toolCalls(ofRun: httpID)
            #expect(viaHTTP.count == 12 && httpCalls.allSatisfy { !$0.isError })
            // The same job: the same calls gave the same results, and the same review.
            #expect(viaHTTP.map(\.output).sorted() == viaStdio.map(\.output).sorted(), "the two transports served the same results")
            let reviews = try [http, stdio].map { try JSONValue(parsing: Array($0.stdout.utf8))["output"] }
            #expect(reviews[0] != nil && reviews[0] == reviews[1], "the same review")
            #expect(proxy.requestsAnswered > 0, "the run went through the proxy")

            // The git servers stopped: a fork from the review serves every tool result from
            // the trace and runs the writer live; then, the simulator stopped too, replays.
            proxy.stop()
            let fork = try runChorus(["replay", httpID, "--live-from", "review", "--json"] + trace)
            #expect(fork.status == 0, "\(fork.stdout)\(fork.stderr)")
            project.sim.process.terminate()
            for id in [stdioID, httpID] {
                let replay = try runChorus(["replay", id] + trace)
                #expect(replay.status == 0 && replay.stdout.contains("0 made; output reproduced byte for byte"), "\(replay.stdout)\(replay.stderr)")
            }

            // Spans carry the tool calls, kind TOOL; the token is nowhere.
            let spans = try runChorus(["runs", "export", httpID, "--format", "otlp", "--otlp-json"] + trace)
            #expect(spans.status == 0, "\(spans.stderr)")
            #expect(spans.stdout.components(separatedBy: "\"git_show\"").count > 4, "a span per git_show call")
            #expect(spans.stdout.contains("\"TOOL\""))
            for file in [project.db, project.db + "-wal"] where FileManager.default.fileExists(atPath: file) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                #expect(bytes.range(of: Data(Self.token.utf8)) == nil, "the token is not in \(file)")
            }
            #expect(!spans.stdout.contains(Self.token) && !http.stdout.contains(Self.token) && !http.stderr.contains(Self.token))
        }

        /// A run over HTTP killed (SIGKILL) once its first tool calls are in the trace is
        /// resumed by a new process, with a new MCP session: it keeps the finished calls,
        /// makes the rest, and ends with the review an uninterrupted run writes.
        @Test func aReviewOverHTTPKilledMidRunIsResumedToTheSameReview() async throws {
            let project = try CLIProject(simArguments: ["--latency-ms", "150"], subtasks: 1)
            defer { project.stop() }
            let trace = ["--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db]
            let proxy = try await MCPProxy(proxy: mcpProxy, serving: [gitServer, "--repository", "."], in: Self.root.path, scratch: project.directory)
            defer { proxy.stop() }
            let workflow = try Self.httpCopy(in: project, port: proxy.port)
            let environment = [Self.tokenVariable: Self.token]
            let whole = try runChorus(["run", workflow, "--json"] + trace, environment: environment)
            #expect(whole.status == 0, "\(whole.stderr)")
            let wholeID = try #require(try JSONValue(parsing: Array(whole.stdout.utf8))["run_id"]?.stringValue)

            let run = try RunningChorus(["run", workflow, "--json"] + trace, environment: environment)
            let store = try TraceStore(path: project.db)
            var killedID: String?
            var recorded = 0
            for _ in 0..<400 {
                if let id = try store.runs().map(\.id).first(where: { $0 != wholeID }) {
                    killedID = id
                    recorded = try store.toolCalls(ofRun: id).count
                    if recorded >= 1 { break }
                }
                usleep(10_000)
            }
            kill(run.process.processIdentifier, SIGKILL)
            _ = run.finish()
            let id = try #require(killedID)
            recorded = try store.toolCalls(ofRun: id).count
            #expect(recorded >= 1 && recorded < 12, "killed mid-run with \(recorded) of 12 tool calls recorded")
            let resume = try runChorus(["resume", id, "--json"] + trace, environment: environment)
            #expect(resume.status == 0, "\(resume.stderr)")
            let resumed = try JSONValue(parsing: Array(resume.stdout.utf8))
            let resumedID = try #require(resumed["run_id"]?.stringValue)
            let calls = try store.toolCalls(ofRun: resumedID)
            #expect(calls.count == 12 && calls.allSatisfy { !$0.isError }, "\(calls.compactMap(\.error))")
            #expect(try store.verify(resumedID).intact)
            let review = try JSONValue(parsing: Array(whole.stdout.utf8))["output"]
            #expect(resumed["output"] != nil && resumed["output"] == review, "the same review")
        }
    }
}
