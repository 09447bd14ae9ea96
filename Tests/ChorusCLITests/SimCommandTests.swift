import ChorusJSON
import Foundation
import Testing
import TestSupport

/// The `chorus` binary built next to this test bundle.
let chorusBinary: URL = {
    let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidate = products.appendingPathComponent("chorus")
    if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    // When run from a bundle directory (`*.xctest/…`), look one level further up.
    return products.deletingLastPathComponent().appendingPathComponent("chorus")
}()

/// A running `chorus` process with its output pipes.
final class RunningChorus: @unchecked Sendable {
    let process: ChildPID
    let stdout: FileHandle
    let stderr: FileHandle
    /// Set by `finish`: whether a signal ended the process.
    private(set) var signalled = false

    /// Starts `chorus arguments` (or another `binary`); `environment` entries are added to this process's for the child only.
    init(_ arguments: [String], environment: [String: String] = [:], binary: String = chorusBinary.path) throws {
        let out = try closeOnExecPipe()
        let err = try closeOnExecPipe()
        defer { close(out.write); close(err.write) }
        stdout = FileHandle(fileDescriptor: out.read, closeOnDealloc: true)
        stderr = FileHandle(fileDescriptor: err.read, closeOnDealloc: true)
        process = ChildPID(
            processIdentifier: try spawnChild(
                binary, arguments, environment: environment,
                stdout: out.write, stderr: err.write))
    }

    /// The first line the process writes to stdout (read byte by byte, unbuffered).
    func firstLine() -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(stdout.fileDescriptor, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == 10 { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The rest of stdout, to EOF.
    func readStdout() -> Data { readToEnd(stdout.fileDescriptor) }

    /// Waits for exit and returns status (128 + the signal when one ended it) and the rest of stderr.
    func finish() -> (status: Int32, stderr: String) {
        let errors = readToEnd(stderr.fileDescriptor)
        let (status, signalled) = waitForExit(process.processIdentifier)
        self.signalled = signalled
        return (status, String(decoding: errors, as: UTF8.self))
    }
}

/// Runs `chorus` to completion. posix_spawn with output in files (`execute`), not
/// Foundation's Process and pipes: with other tests starting processes at the same time
/// (chromium among them), Process.run() crashed in a memmove and FileHandle's
/// readDataToEndOfFile trapped on EINTR, each now and then.
func runChorus(
    _ arguments: [String], environment: [String: String] = [:], in directory: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    try execute(chorusBinary.path, arguments, scratch: FileManager.default.temporaryDirectory, environment: environment, workingDirectory: directory)
}

/// A blocking HTTP request for CLI tests, via curl's command-line tool-free path: a raw socket.
func httpRequest(port: Int, _ raw: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    _ = raw.withCString { send(fd, $0, strlen($0), 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
    }
    return String(decoding: response, as: UTF8.self)
}

extension CLI {
    @Suite(.serialized) struct SimCommandTests {
        @Test func theFirstLineNamesThePortAndTheServerAnswers() throws {
            let sim = try RunningChorus(["sim", "--port", "0", "--max-seconds", "20"])
            let line = sim.firstLine()
            let port = try #require(Int(line.replacingOccurrences(of: "listening on ", with: "")), "first line was '\(line)'")
            let body = #"{"model":"planner-3","messages":[{"role":"user","content":"topic"}]}"#
            let response = try httpRequest(
                port: port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(response.hasPrefix("HTTP/1.1 200 OK"))
            #expect(response.contains("subtasks"))
            sim.process.terminate()
            #expect(sim.finish().status == 0, "SIGTERM is a clean stop")
        }

        @Test func aMalformedRequestGetsA400AndTheServerStaysUp() throws {
            let sim = try RunningChorus(["sim", "--max-seconds", "20"])
            let port = Int(sim.firstLine().replacingOccurrences(of: "listening on ", with: ""))!
            let bad = try httpRequest(port: port, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{{")
            #expect(bad.hasPrefix("HTTP/1.1 400"))
            let garbage = try httpRequest(port: port, "\u{1}\u{2} nonsense\r\n\r\n")
            #expect(garbage.hasPrefix("HTTP/1.1 400"))
            let stats = try httpRequest(port: port, "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
            #expect(stats.hasPrefix("HTTP/1.1 200"))
            sim.process.interrupt()
            #expect(sim.finish().status == 0)
        }

        @Test func aPortInUseIsAOneLineErrorAndExitOne() throws {
            let first = try RunningChorus(["sim", "--max-seconds", "20"])
            let port = first.firstLine().replacingOccurrences(of: "listening on ", with: "")
            let second = try runChorus(["sim", "--port", port])
            #expect(second.status == 1)
            let lines = second.stderr.split(separator: "\n")
            #expect(lines.count == 1)
            #expect(second.stderr.contains("127.0.0.1:\(port)") && second.stderr.contains("address already in use"), "\(second.stderr)")
            first.process.terminate()
            _ = first.finish()
        }

        @Test(arguments: [
            (["sim", "--no-such-flag"], "--no-such-flag"),
            (["sim", "--error-rate", "1.5"], "--error-rate"),
            (["sim", "--error-rate", "0.6", "--hang-rate", "0.6"], "add up to more than 1"),
            (["sim", "--port", "70000"], "--port"),
            (["sim", "--latency-ms", "soon"], "--latency-ms"),
            (["sim", "--tokens-per-event", "0"], "--tokens-per-event"),
            (["sim", "--tokens-per-second=-5"], "--tokens-per-second"),
            (["sim", "--slow-rate", "1.1"], "--slow-rate must be between 0 and 1"),
            (["sim", "--slow-ms=-100"], "--slow-ms must be between 0 and 3600000"),
        ])
        func badFlagsAreRefusedBeforeStarting(_ arguments: [String], _ mention: String) throws {
            let result = try runChorus(arguments)
            #expect(result.status == 2, "usage errors exit 2")
            #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.contains(mention), "\(result.stderr)")
        }

        @Test func maxSecondsEndsTheSimulatorByItself() throws {
            let sim = try RunningChorus(["sim", "--max-seconds", "0.3"])
            #expect(sim.firstLine().hasPrefix("listening on "))
            #expect(sim.finish().status == 0)
        }
    }
}
