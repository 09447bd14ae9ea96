import ChorusJSON
import ChorusTrace
import Synchronization

/// Where a replay first stopped matching its recording: the step, and what differs
/// between the request recorded then and the one the workflow builds now.
public struct ReplayDivergence: Sendable, CustomStringConvertible {
    /// The step identity (node path, fan-out index).
    public var step: String
    /// The attempt within the step.
    public var attempt: Int
    /// Why it diverged, one line.
    public var reason: String
    /// `path: recorded → now` for each JSON value that differs (empty when no request was recorded).
    public var differences: [String]

    public var description: String {
        (["replay diverged at step \(step), attempt \(attempt): \(reason)"] + differences.map { "  \($0)" }).joined(separator: "\n")
    }
}

/// Serves every model call from a recorded run: each (step, attempt) gets the response
/// recorded for it, after checking that the request the workflow builds now hashes to the
/// one recorded. Makes no network connection.
final class ReplayTransport: ModelTransport {
    private struct Recorded: Sendable {
        var call: ModelCallRecord
        var request: [UInt8]
        var response: [UInt8]?
    }

    private let calls: [String: Recorded]
    private let firstDivergence = Mutex<ReplayDivergence?>(nil)
    private let servedCount = Atomic<Int>(0)

    /// Loads every call of `runID` and its bodies. Reads the database, so call it before
    /// the run starts, not from the event loop.
    init(store: any TraceBackend, runID: String) throws {
        var calls: [String: Recorded] = [:]
        let recorded = try store.modelCalls(ofRun: runID)
        // One read transaction for every body: a read per body made loading a 10,000-call
        // run take most of its replay (bench).
        let bodies = try store.blobs(Set(recorded.flatMap { [$0.requestHash] + ($0.responseHash.map { [$0] } ?? []) }))
        for call in recorded {
            calls[Self.key(call.stepPath, call.attempt)] = Recorded(
                call: call, request: bodies[call.requestHash] ?? [],
                response: call.responseHash.flatMap { bodies[$0] })
        }
        self.calls = calls
    }

    /// Calls answered from the recording.
    var served: Int { servedCount.load(ordering: .relaxed) }

    /// The first divergence seen, if any.
    var divergence: ReplayDivergence? { firstDivergence.withLock { $0 } }

    private static func key(_ step: String, _ attempt: Int) -> String { "\(step)#\(attempt)" }

    func exchange(_ endpoint: ModelEndpoint, body: [UInt8], step: String, attempt: Int, timeout: Duration) async -> ModelExchange {
        guard let recorded = calls[Self.key(step, attempt)] else {
            return diverge(ReplayDivergence(step: step, attempt: attempt, reason: "the recording has no such call", differences: []))
        }
        guard TraceStore.hash(body) == recorded.call.requestHash else {
            return diverge(
                ReplayDivergence(
                    step: step, attempt: attempt, reason: "the request differs from the recorded one",
                    differences: Self.differences(recorded.request, body)))
        }
        servedCount.add(1, ordering: .relaxed)
        if recorded.call.callOutcome == .cancelled { return .cancelled }
        if let status = recorded.call.httpStatus, status < 400, let response = recorded.response {
            return .response(status: status, body: response, firstTokenMs: nil)
        }
        // The same classification as the live call made, so a replayed failure takes the
        // same path (retry, escalation, or a stopped run).
        if let status = recorded.call.httpStatus {
            var failure = ProviderFailure.status(status, body: recorded.response, retryAfter: nil)
            failure.detail = recorded.call.error ?? failure.detail
            return .failure(failure)
        }
        return .failure(ProviderFailure(kind: .transient, detail: recorded.call.error ?? "recorded failure"))
    }

    private func diverge(_ divergence: ReplayDivergence) -> ModelExchange {
        firstDivergence.withLock { if $0 == nil { $0 = divergence } }
        return .failure(ProviderFailure(kind: .rejected, detail: divergence.reason))
    }

    /// The JSON paths whose values differ between two request bodies, as readable lines.
    static func differences(_ recorded: [UInt8], _ now: [UInt8]) -> [String] {
        guard let a = try? JSONValue(parsing: recorded), let b = try? JSONValue(parsing: now) else {
            return ["- \(String(decoding: recorded.prefix(300), as: UTF8.self))", "+ \(String(decoding: now.prefix(300), as: UTF8.self))"]
        }
        var lines: [String] = []
        compare(a, b, path: "$", into: &lines)
        return lines
    }

    private static func compare(_ a: JSONValue, _ b: JSONValue, path: String, into lines: inout [String]) {
        guard a != b else { return }
        switch (a, b) {
        case (.object(let x), .object(let y)):
            for key in Set(x.keys).union(y.keys).sorted() {
                compare(x[key] ?? .null, y[key] ?? .null, path: path + "." + key, into: &lines)
            }
        case (.array(let x), .array(let y)) where x.count == y.count:
            for i in x.indices { compare(x[i], y[i], path: "\(path)[\(i)]", into: &lines) }
        default:
            func show(_ v: JSONValue) -> String { let t = v.text; return t.count > 200 ? String(t.prefix(200)) + "…" : t }
            lines.append("\(path):")
            lines.append("  - recorded: \(show(a))")
            lines.append("  + now:      \(show(b))")
        }
    }
}
