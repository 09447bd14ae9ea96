import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

// triage-server: POST /triage {"ticket": "..."} runs workflows/triage.json for the ticket and
// answers with the run (id, status, the route taken, the output, cost); GET /runs/ID reads a
// recorded run back. The Chorus runtime is a service of the server's ServiceGroup: SIGTERM
// stops the server, then the runtime (its HTTP client, its trace writer, its loop), in order.
//
//   triage-server --workflow ../../workflows/triage.json --config ../../chorus.json --db runs.db --port 8080

struct Options {
    var workflow = "workflows/triage.json"
    var config: String?
    var db = "triage-server.db"
    var port = 8080

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { throw UsageError("\(flag) needs a value") }
            switch flag {
            case "--workflow": workflow = value
            case "--config": config = value
            case "--db": db = value
            case "--port":
                guard let number = Int(value), (0...65535).contains(number) else { throw UsageError("--port \(value): expected 0 to 65535") }
                port = number
            default: throw UsageError("unknown option \(flag) (options: --workflow, --config, --db, --port)")
            }
        }
    }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The request body: the ticket to triage.
struct TriageRequest: Decodable {
    var ticket: String
}

func serve(_ options: Options) async throws {
    let project = try Project(loading: options.workflow, config: options.config)
    let runtime = try ChorusRuntime(RuntimeConfiguration(store: try TraceLocation(options.db).open(), maxParallel: 64))
    let router = Router()
    router.post("/triage") { request, context -> Response in
        let body = try await request.decode(as: TriageRequest.self, context: context)
        let summary = try await runtime.run(project, inputs: ["ticket": .string(body.ticket)])
        // The route the run took, from its recorded steps: a UI shows which specialist answered.
        let steps = try await runtime.recorded(summary.runID)?.steps ?? []
        let route = steps.first { $0.node == "triage" && !$0.isNodeResult }?.outputJSON.flatMap { try? JSONValue(parsing: $0) }
        var answer = summary.json.objectValue ?? [:]
        answer["route"] = route?["label"] ?? .null
        answer["skipped"] = .array(steps.filter { $0.status == .skipped }.map { .string($0.node) })
        return json(answer, status: summary.status == .succeeded ? .ok : .internalServerError)
    }
    router.get("/runs/:id") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let recorded = try await runtime.recorded(id) else { return json(["error": .string("no run \(id)")], status: .notFound) }
        return json(
            [
                "run_id": .string(recorded.run.id), "status": .string(recorded.run.status.rawValue),
                "steps": .number(Double(recorded.steps.count)),
            ], status: .ok)
    }
    var logger = Logger(label: "triage-server")
    logger.logLevel = .warning
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: options.port)),
        services: [runtime],
        onServerRunning: { channel in
            // The first line on stdout, as chorus sim does: a parent reads the port from it.
            FileHandle.standardOutput.write(Data("listening on \(channel.localAddress?.port ?? options.port)\n".utf8))
        },
        logger: logger)
    try await app.runService()
}

func json(_ object: [String: JSONValue], status: HTTPResponse.Status) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).text)))
}

do {
    try await serve(try Options(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write(Data("triage-server: \(error)\n".utf8))
    exit(1)
}
