import ChorusIO
import ChorusJSON
import ChorusTrace
import Foundation

/// What every step of one run shares: the loop, the HTTP client, the trace writer, one
/// limiter per model (shared by all nodes, so no configuration can exceed a provider's
/// limit), the global parallelism cap and the progress counters.
final class RunContext: Sendable {
    let loop: EventLoop
    let client: HTTPClient
    let trace: TraceWriter
    let runID: String
    let project: Project
    let limiters: [String: ModelLimiter]
    let global: LoopSemaphore
    let progress: RunProgress
    let retryPolicy = RetryPolicy()

    init(loop: EventLoop, client: HTTPClient, trace: TraceWriter, runID: String, project: Project,
         maxParallel: Int, progress: RunProgress) {
        self.loop = loop
        self.client = client
        self.trace = trace
        self.runID = runID
        self.project = project
        self.progress = progress
        limiters = project.config.models.mapValues { ModelLimiter(spec: $0, loop: loop) }
        global = LoopSemaphore(permits: maxParallel, loop: loop)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    func event(_ kind: String, step: String? = nil, _ detail: JSONValue? = nil) {
        trace.append(.event(runID: runID, kind: kind, stepPath: step, detailJSON: detail?.text, at: Self.now()))
    }
}

/// How a step ended.
struct StepOutcome: Sendable {
    var output: JSONValue?
    var error: String?
    var cancelled = false
    var model: String?
    var attempts = 0
    var tokensIn = 0
    var tokensOut = 0
    var cost = 0.0

    var succeeded: Bool { output != nil && error == nil }
}

/// Turns JSON values into what swift-mustache renders: strings, numbers, arrays and
/// dictionaries of them (whole numbers without a fraction).
enum TemplateContext {
    static func value(_ json: JSONValue) -> Any {
        switch json {
        case .null: return ""
        case .bool(let b): return b
        case .number(let n): return n == n.rounded() && abs(n) < 9e15 ? Int(n) as Any : n
        case .string(let s): return s
        case .array(let a): return a.map(value)
        case .object(let o): return o.mapValues(value)
        }
    }

    static func render(_ template: String, _ variables: [String: JSONValue]) throws -> String {
        try TemplateReferences.compile(template).render(variables.mapValues(value))
    }
}
