@testable import Chorus
import ChorusJSON
import ChorusTrace
import Foundation
import Testing

/// Spans from a recorded run and the OTLP configuration, without a receiver (the CLI tests
/// send them to a real one).
struct GenAISpansTests {
    @Test func aRunBecomesOneSpanPerRunStepAndCallWithTheirParents() async throws {
        let harness = try RunHarness()
        try harness.writeConfig(["planner": ["model": "planner-3"], "small": ["model": "sim-small"]])
        try harness.agent("lead", model: "planner", prompt: "Plan: {{inputs.question}}", extra: ["output_schema": planSchema])
        try harness.agent("worker", model: "small", prompt: "{{item}}", extra: ["output_schema": findingSchema, "temperature": 0.4, "max_tokens": 77])
        let workflow = try harness.workflow(
            "w",
            nodes: [
                "plan": ["kind": "agent", "agent": "lead"],
                "work": ["kind": "foreach", "agent": "worker", "over": "plan.subtasks"],
            ], output: "work")
        let (summary, store) = try await harness.run(workflow)
        #expect(summary.status == .succeeded)
        let recording = try GenAISpans.Recording(run: try #require(try store.run(matching: summary.runID)), store: store)
        let spans = GenAISpans.spans(recording)
        #expect(spans.count == 1 + 4 + 4)
        #expect(Set(spans.map(\.traceID)) == [GenAISpans.traceID(run: summary.runID)])
        #expect(Set(spans.map(\.spanID)).count == spans.count)
        let root = spans[0]
        #expect(root.name == "invoke_workflow w" && root.parentSpanID == nil && root["chorus.run_id"] == .string(summary.runID))
        let steps = spans.filter { $0.name.hasPrefix("invoke_agent ") }
        #expect(steps.count == 4 && steps.allSatisfy { $0.parentSpanID == root.spanID })
        #expect(steps.filter { $0["chorus.fan_out_index"] != nil }.count == 3)
        let call = try #require(spans.first { $0.name == "chat sim-small" })
        #expect(call.kind == .client)
        #expect(steps.contains { $0.spanID == call.parentSpanID && $0["gen_ai.agent.name"] == .string("worker") })
        #expect(call["gen_ai.request.temperature"] == .double(0.4) && call["gen_ai.request.max_tokens"] == .int(77))
        #expect(call["gen_ai.response.finish_reasons"] == .strings(["stop"]) && call["gen_ai.provider.name"] == .string("openai"))
        #expect(call["gen_ai.input.messages"] == nil)
        // What Phoenix reads: OpenInference kinds, the model and tokens it prices, statuses.
        #expect(root.status == .ok && root["openinference.span.kind"] == .string("CHAIN") && steps.allSatisfy { $0.status == .ok })
        #expect(call.status == .ok && call["openinference.span.kind"] == .string("LLM") && call["llm.model_name"] == .string("sim-small"))
        #expect(call["llm.token_count.prompt"] == call["gen_ai.usage.input_tokens"] && call["llm.cost.total"] == call["chorus.cost_usd"])
        #expect(call.startNanos <= call.endNanos && root.startNanos <= call.startNanos)
        #expect(GenAISpans.spans(recording) == spans, "the same run gives the same spans, ids included")
        let withContent = GenAISpans.spans(recording, content: true).first { $0.name == "chat sim-small" }
        #expect(withContent?["gen_ai.input.messages"] != nil && withContent?["gen_ai.output.messages"] != nil)
        await harness.shutdown()
    }

    @Test func anAsCompletedLeadCallsSpanSaysWhatItSawAndHowMuchOfItsPlanWasCut() async throws {
        let harness = try RunHarness {
            $0.latencyMs = 5; $0.jitterMs = 40; $0.seed = 3
        }
        try harness.writeConfig(["planner": ["model": "planner-4"], "small": ["model": "sim-small"]])
        // No `subtasks` in the schema, so no maxItems is sent: the second plan of 4 overruns
        // the 2 subtasks left and is cut.
        try harness.agent(
            "lead", model: "planner", prompt: "Plan: {{inputs.question}} {{{findings_json}}}",
            extra: ["output_schema": ["type": "object", "required": ["subtasks"]]])
        try harness.agent("worker", model: "small", prompt: "{{item}}", extra: ["output_schema": findingSchema])
        let workflow = try harness.workflow(
            "live",
            nodes: [
                "research": [
                    "kind": "lead", "lead": "lead", "worker": "worker", "schedule": "as_completed", "replan_after": 2,
                    "max_rounds": 3, "max_subtasks": 6, "max_parallel": 4,
                ]
            ], output: "research")
        let (summary, store) = try await harness.run(workflow)
        #expect(summary.status == .succeeded, "\(summary.error ?? "")")
        let spans = GenAISpans.spans(try GenAISpans.Recording(run: try #require(try store.run(matching: summary.runID)), store: store))
        let steps = try store.steps(ofRun: summary.runID).filter { $0.kind == "plan" }.sorted { $0.path < $1.path }
        #expect(steps.count == 2, "a plan of 4, then one cut to the 2 left")
        let plans = steps.compactMap { step in spans.first { $0["chorus.step"] == .string(step.path) } }
        #expect(plans.count == 2)
        for (span, step) in zip(plans, steps) {
            let saw = try #require(step.leadSaw)
            #expect(span["chorus.lead.saw"] == .strings(saw) && span["chorus.lead.saw_count"] == .int(Int64(saw.count)), "\(step.path)")
        }
        #expect(plans.first?["chorus.lead.saw_count"] == .int(0) && plans.first?["chorus.lead.dropped"] == nil)
        let second = try #require(plans.last)
        guard case .int(let count)? = second["chorus.lead.saw_count"] else { Issue.record("no saw count"); return }
        #expect(count >= 2, "the second call waited for 2 findings")
        #expect(second["chorus.lead.planned"] == .int(4) && second["chorus.lead.kept"] == .int(2) && second["chorus.lead.dropped"] == .int(2))
        // And on the wire: the step ids as an OTLP string array.
        let json = OTLPTraces.json([second], resource: OTLPTraces.resource(serviceName: "svc"))
        let attributes =
            json["resourceSpans"]?.arrayValue?.first?["scopeSpans"]?.arrayValue?.first?["spans"]?.arrayValue?.first?["attributes"]?.arrayValue ?? []
        let sawAttribute = attributes.first { $0["key"] == "chorus.lead.saw" }?["value"]?["arrayValue"]?["values"]?.arrayValue
        #expect(sawAttribute?.count == Int(count) && sawAttribute?.first?["stringValue"]?.stringValue?.hasPrefix("research/round-1/") == true)
        await harness.shutdown()
    }

    @Test func theJSONFormHasHexIdsAndStringIntegers() {
        let span = TelemetrySpan(
            traceID: Array(repeating: 0xAB, count: 16), spanID: [1, 2, 3, 4, 5, 6, 7, 8], parentSpanID: nil, name: "chat m",
            kind: .client, startNanos: 5, endNanos: 9, attributes: [("n", .int(3)), ("s", .strings(["a"]))], status: .error("HTTP 500"))
        let json = OTLPTraces.json([span], resource: OTLPTraces.resource(serviceName: "svc"))
        let encoded = json["resourceSpans"]?.arrayValue?.first?["scopeSpans"]?.arrayValue?.first?["spans"]?.arrayValue?.first
        #expect(encoded?["traceId"] == .string(String(repeating: "ab", count: 16)) && encoded?["spanId"] == "0102030405060708")
        #expect(encoded?["startTimeUnixNano"] == "5" && encoded?["kind"] == 3)
        #expect(encoded?["attributes"]?.arrayValue?.first?["value"]?["intValue"] == "3")
        #expect(encoded?["status"]?["code"] == 2 && encoded?["status"]?["message"] == "HTTP 500")
        let protobuf = OTLPTraces.protobuf([span], resource: OTLPTraces.resource(serviceName: "svc"))
        #expect(protobuf.first == 0x0A, "field 1 (resource_spans), length-delimited")
    }

    @Test func theStandardVariablesConfigureTheExporter() throws {
        #expect(try OTLPConfiguration.resolve(endpoint: nil, environment: [:]) == nil)
        let base = try #require(
            try OTLPConfiguration.resolve(
                endpoint: nil,
                environment: [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=abc%3D1, other = two",
                    "OTEL_SERVICE_NAME": "research", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                ]))
        #expect(base.endpoint == "http://collector:4318/v1/traces" && base.serviceName == "research" && base.encoding == .json)
        #expect(base.headers.map(\.name) == ["x-honeycomb-team", "other"] && base.headers.map(\.value) == ["abc=1", "two"])
        let traces = try #require(
            try OTLPConfiguration.resolve(
                endpoint: nil,
                environment: [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/custom/path",
                ]))
        #expect(traces.endpoint == "http://b:2/custom/path" && traces.encoding == .protobuf)
        #expect(try OTLPConfiguration.resolve(endpoint: "http://c:3/v1/traces", environment: [:])?.endpoint == "http://c:3/v1/traces")
        #expect(throws: OTLPError.self) { try OTLPConfiguration.resolve(endpoint: "collector:4318", environment: [:]) }
        #expect(throws: OTLPError.self) {
            try OTLPConfiguration.resolve(endpoint: nil, environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])
        }
        do {
            _ = try OTLPConfiguration.resolve(
                endpoint: nil, environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_HEADERS": "sk-secret-value"])
            Issue.record("a header without '=' is refused")
        } catch {
            #expect(!error.description.contains("sk-secret-value"), "the message names the entry, never its text")
        }
    }
}
