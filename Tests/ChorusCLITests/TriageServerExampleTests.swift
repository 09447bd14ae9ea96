import ChorusJSON
import ChorusTrace
import Foundation
import Glibc
import Testing
import TestSupport

/// Examples/triage-server (issue 29): Chorus as a library inside a Hummingbird server,
/// built by scripts/test (which sets CHORUS_TRIAGE_SERVER_BIN) and exercised here as a
/// user would: a ticket POSTed, the workflow run per request against `chorus sim`, the
/// run read back, and SIGTERM stopping the server and then the runtime with the trace intact.
extension CLI {
    @Suite struct TriageServerExampleTests {
        static let binary = ProcessInfo.processInfo.environment["CHORUS_TRIAGE_SERVER_BIN"] ?? ""

        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "CHORUS_TRIAGE_SERVER_BIN unset: scripts/test builds the example"))
        func theExampleServerRunsTheTriageWorkflowPerRequestAndStopsCleanly() throws {
            let project = try CLIProject(subtasks: 1)
            defer { project.stop() }
            let root = ShippedToolExampleTests.root
            let server = try RunningChorus(
                [
                    "--workflow", root.appendingPathComponent("workflows/triage.json").path,
                    "--config", try ShippedToolExampleTests.shippedConfig(for: project), "--db", project.db, "--port", "0",
                ], binary: Self.binary)
            let line = server.firstLine()
            let port = try #require(Int(line.replacingOccurrences(of: "listening on ", with: "")), "first line: \(line)")

            let ticket = #"{"ticket": "I was charged twice for order KX-48213; please refund the second payment."}"#
            let response = try httpRequest(
                port: port,
                "POST /triage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(ticket.utf8.count)\r\nConnection: close\r\n\r\n\(ticket)"
            )
            #expect(response.hasPrefix("HTTP/1.1 200"), "\(response)")
            let body = try JSONValue(parsing: String(response.split(separator: "\r\n\r\n", maxSplits: 1).last ?? ""))
            #expect(body["status"] == "succeeded" && body["route"] == "billing", "\(body.text)")
            #expect(body["skipped"]?.arrayValue?.compactMap(\.stringValue).sorted() == ["expert", "general", "technical"])
            let id = try #require(body["run_id"]?.stringValue)

            let read = try httpRequest(port: port, "GET /runs/\(id) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(read.hasPrefix("HTTP/1.1 200") && read.contains(#""status":"succeeded""#), "\(read)")
            let missing = try httpRequest(port: port, "GET /runs/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(missing.hasPrefix("HTTP/1.1 404"), "\(missing)")

            kill(server.process.processIdentifier, SIGTERM)
            let exit = server.finish()
            #expect(exit.status == 0, "a graceful stop: \(exit.stderr)")
            let store = try TraceStore(path: project.db, readOnly: true)
            #expect(try store.run(matching: id)?.status == .succeeded, "the runtime flushed the trace before it stopped")
        }
    }
}
