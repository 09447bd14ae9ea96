import ChorusJSON
import ChorusTrace
import Foundation

/// The trace store on its own: events appended as fast as a caller can, then the shape a
/// run writes per model call (step started, call with its bodies sharing one system prompt,
/// step finished, its event), through the same group-commit writer `chorus run` uses.
struct TraceBench {
    let path: String
    let calls: Int

    func run() async throws -> JSONValue {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let store = try TraceStore(path: path)
        let writer = TraceWriter(store: store)
        writer.append(.run(RunRecord(id: "events", workflow: "bench", workflowPath: "bench.json", inputsJSON: "{}", startedAt: 0)))
        let events = calls * 5
        var start = ContinuousClock.now
        for i in 0..<events {
            writer.append(.event(runID: "events", kind: "tick", stepPath: "s/\(i)", detailJSON: #"{"n":1}"#, at: Double(i)))
        }
        await writer.flush()
        let eventSeconds = seconds(since: start)

        let sizeBefore = store.fileSize()
        writer.append(.run(RunRecord(id: "calls", workflow: "bench", workflowPath: "bench.json", inputsJSON: "{}", startedAt: 0)))
        let system = "You are a careful researcher. Answer only the subtask you are given, in one JSON object."
        start = ContinuousClock.now
        for i in 0..<calls {
            let path = "work/\(i)"
            var step = StepRecord(runID: "calls", path: path, node: "work", kind: "item", itemIndex: i, agent: "worker", startedAt: Double(i))
            writer.append(.step(step))
            let request: JSONValue = [
                "model": "sim-small",
                "messages": [
                    ["role": "system", "content": .string(system)],
                    ["role": "user", "content": .string("Subtask \(i): what limits fan-out?")],
                ],
            ]
            let answer = #"{"finding":"measured results indicate steady throughput under load \#(i)","confidence":0.8}"#
            let response: JSONValue = [
                "id": .string("chatcmpl-\(i)"), "choices": [["index": 0, "message": ["role": "assistant", "content": .string(answer)]]],
                "usage": ["prompt_tokens": 40, "completion_tokens": 20],
            ]
            writer.append(
                .modelCall(
                    ModelCallRecord(
                        runID: "calls", stepPath: path, attempt: 1, model: "small", providerModel: "sim-small",
                        url: "http://127.0.0.1/v1/chat/completions", requestHash: "", responseHash: nil,
                        httpStatus: 200, error: nil, tokensIn: 40, tokensOut: 20, cost: 0.000001,
                        latencyMs: 50, startedAt: Double(i)),
                    request: request.serialized(), response: response.serialized()))
            step.status = .succeeded
            step.outputJSON = answer
            step.endedAt = Double(i) + 0.05
            writer.append(.step(step))
            writer.append(.event(runID: "calls", kind: "step_succeeded", stepPath: path, detailJSON: nil, at: Double(i)))
        }
        await writer.flush()
        let callSeconds = seconds(since: start)
        writer.close()
        let verified = try store.verify("calls")
        return [
            "events": .number(Double(events)),
            "events_per_s": .number((Double(events) / eventSeconds).rounded()),
            "calls": .number(Double(calls)),
            "calls_per_s": .number((Double(calls) / callSeconds).rounded()),
            "rows_per_s": .number((Double(calls * 4) / callSeconds).rounded()),
            "db_bytes_per_call": .number(Double((store.fileSize() - sizeBefore) / Int64(calls))),
            "blobs": .number(Double(try store.counts()["blob"] ?? 0)),
            "chain_intact": .bool(verified.intact),
        ]
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
