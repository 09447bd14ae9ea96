import Glibc
import GRDB

/// Where a run is. Stored as its raw value.
public enum RunStatus: String, Codable, Sendable, CaseIterable {
    /// Started, and neither finished nor found abandoned.
    case running
    /// Finished with an output.
    case succeeded
    /// Finished without one; `RunRecord.error` says why.
    case failed
    /// Stopped by Ctrl-C or SIGTERM, or found abandoned by its owner's death.
    case interrupted
    /// Paused at a node that waits for a person's decision (chorus approve/deny, then resume).
    case awaitingApproval = "awaiting_approval"
}

/// How a step ended, or that it has not. Stored as its raw value.
public enum StepStatus: String, Codable, Sendable, CaseIterable {
    /// Started and not finished (or its run was abandoned while it ran).
    case running
    /// Finished with an accepted answer.
    case succeeded
    /// Finished without one; `StepRecord.error` says why.
    case failed
    /// Stopped before it finished: the run was interrupted or stopped making calls.
    case cancelled
    /// Not run: its `when` was false, or everything it depends on was skipped. Never a failure.
    case skipped

    /// Whether the step will not change any more.
    public var isFinal: Bool { self != .running }
}

/// How a run relates to the run it was made from. Stored as its raw value.
public enum RunRelation: String, Codable, Sendable, CaseIterable {
    /// Every call served from the parent's trace.
    case replay
    /// The calls upstream of a live point served from the parent's trace, the rest live.
    case fork
    /// The parent's finished steps reused, the others executed.
    case resume
}

/// What one model request came to. Stored as its raw value (schema v6; older rows have
/// none, and `ModelCallRecord.outcome` derives it from their status and error).
public enum CallOutcome: String, Codable, Sendable, CaseIterable {
    /// An answer that passed every check.
    case answered
    /// An answer arrived but failed a check (malformed, not JSON, fails the schema, cut short).
    case invalid
    /// The model asked for tools; the step continues with their results.
    case toolCalls = "tool_calls"
    /// No usable response: an error status, a transport failure, a broken stream.
    case failed
    /// The request was cancelled (Ctrl-C, a deadline, the run stopping).
    case cancelled
}

/// One run of a workflow, as the trace keeps it.
public struct RunRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "run"
    /// Sortable id: start time plus randomness (`20261123-172503-a1b2c3`).
    public var id: String
    /// The workflow's name.
    public var workflow: String
    /// Path of the workflow file as given.
    public var workflowPath: String
    /// Inputs as JSON text.
    public var inputsJSON: String
    /// Where the run is.
    public var status: RunStatus
    /// Seconds since 1970, as every time in the trace.
    public var startedAt: Double
    /// When it finished; nil while it runs.
    public var endedAt: Double?
    /// The final output as JSON text, once succeeded.
    public var outputJSON: String?
    /// Why the run failed, one line.
    public var error: String?
    /// Tokens read, over every call of the run.
    public var tokensIn: Int
    /// Tokens written, over every call of the run.
    public var tokensOut: Int
    /// US dollars, from the models' prices in chorus.json.
    public var cost: Double
    /// The run this one replays or resumes, when it does.
    public var parentRunID: String?
    /// How this run relates to its parent.
    public var relation: RunRelation?
    /// The process running it and that process's host: a run left `running` is abandoned
    /// only once its owner is gone.
    public var ownerPID: Int32?
    /// The owner's host name: a process on another host is never taken for dead.
    public var ownerHost: String?
    /// The chorus.json the run was recorded with, as given (never its contents or secrets):
    /// replay uses it unless told otherwise.
    public var configPath: String?

    /// A new run record in the `running` state, owned by `ownerPID` (this process by default).
    public init(
        id: String, workflow: String, workflowPath: String, inputsJSON: String, startedAt: Double,
        ownerPID: Int32? = getpid()
    ) {
        self.id = id
        self.workflow = workflow
        self.workflowPath = workflowPath
        self.inputsJSON = inputsJSON
        status = .running
        self.startedAt = startedAt
        tokensIn = 0
        tokensOut = 0
        cost = 0
        self.ownerPID = ownerPID
        ownerHost = ownerPID == nil ? nil : TraceStore.hostName
    }
}

/// One step of a run: a node, a fan-out item or a planning call, identified by its path.
public struct StepRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "step"
    /// The run the step belongs to.
    public var runID: String
    /// Step identity within the run: `node`, `node/3`, `node/round-2/plan`, `node/round-2/7`.
    public var path: String
    /// The workflow node the step is part of.
    public var node: String
    /// agent, foreach, lead, plan, item, reconcile.
    public var kind: String
    /// Fan-out index, for items.
    public var itemIndex: Int?
    /// The agent that answered, for a step that called a model.
    public var agent: String?
    /// The model that produced the accepted answer, for agent calls.
    public var model: String?
    /// How it ended, or that it has not.
    public var status: StepStatus
    /// Seconds since 1970.
    public var startedAt: Double
    /// When it finished; nil while it runs.
    public var endedAt: Double?
    /// The accepted answer (or a node's result) as JSON text.
    public var outputJSON: String?
    /// Which step produced which part of a reconciled output, as JSON.
    public var provenanceJSON: String?
    /// Why it failed, one line.
    public var error: String?
    /// Model requests made for it, retries and escalations included.
    public var attempts: Int
    /// Tokens read over its calls.
    public var tokensIn: Int
    /// Tokens written over its calls.
    public var tokensOut: Int
    /// US dollars over its calls.
    public var cost: Double

    /// The row holding a node's reconciled output (`node#result`), which is not a step of
    /// its own: `runs show`, diff, resume and the spans leave it out.
    public var isNodeResult: Bool { StepPath(path)?.suffix == .result }

    /// A new step record in the `running` state.
    public init(
        runID: String, path: String, node: String, kind: StepKind, itemIndex: Int? = nil,
        agent: String? = nil, startedAt: Double
    ) {
        self.init(runID: runID, path: path, node: node, kind: kind.rawValue, itemIndex: itemIndex, agent: agent, startedAt: startedAt)
    }

    /// A new step record in the `running` state, its kind as stored (a shared step's, copied).
    public init(
        runID: String, path: String, node: String, kind: String, itemIndex: Int? = nil,
        agent: String? = nil, startedAt: Double
    ) {
        self.runID = runID
        self.path = path
        self.node = node
        self.kind = kind
        self.itemIndex = itemIndex
        self.agent = agent
        status = .running
        self.startedAt = startedAt
        attempts = 0
        tokensIn = 0
        tokensOut = 0
        cost = 0
    }
}

/// One HTTP call to a model: what was sent, what came back, what it cost.
public struct ModelCallRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "modelCall"
    /// The run the call belongs to.
    public var runID: String
    /// The step that made it (`StepRecord.path`).
    public var stepPath: String
    /// 1-based attempt number across retries and escalations of the step.
    public var attempt: Int
    /// The model's name in chorus.json.
    public var model: String
    /// The provider's model id.
    public var providerModel: String
    /// The endpoint, without query string or credentials.
    public var url: String
    /// SHA-256 of the request body (the body is in `blob`).
    public var requestHash: String
    /// SHA-256 of the response body, when one arrived.
    public var responseHash: String?
    /// The HTTP status; nil when no response arrived.
    public var httpStatus: Int?
    /// What went wrong, one line; nil for an accepted answer.
    public var error: String?
    /// Input tokens charged (the provider's count, capped where it was implausible).
    public var tokensIn: Int
    /// Output tokens charged.
    public var tokensOut: Int
    /// US dollars, from the model's price.
    public var cost: Double
    /// From sending the request to the end of the response.
    public var latencyMs: Double
    /// Seconds since 1970.
    public var startedAt: Double
    /// Why the model stopped: `finish_reason` (OpenAI: stop, length, tool_calls) or
    /// `stop_reason` (Anthropic: end_turn, max_tokens, tool_use); nil when no answer came.
    public var finishReason: String?
    /// Milliseconds from sending the request to the first answer token, for streamed calls.
    public var firstTokenMs: Double?
    /// What the request came to, as recorded (schema v6); nil in older rows — read
    /// `callOutcome`, which derives theirs.
    public var outcome: CallOutcome?

    /// What the request came to: as recorded, or for a row older than schema v6, derived
    /// from its error and status as the Chorus that wrote it meant them.
    public var callOutcome: CallOutcome {
        if let outcome { return outcome }
        guard let error else { return .answered }
        if error == "cancelled" { return .cancelled }
        if let status = httpStatus, status < 400, responseHash != nil { return .invalid }
        return .failed
    }

    /// The answer was cut at `max_tokens`.
    public var truncated: Bool { finishReason == "length" || finishReason == "max_tokens" }

    /// A call record; `TraceWriter` stores the bodies as blobs.
    public init(
        runID: String, stepPath: String, attempt: Int, model: String, providerModel: String, url: String,
        requestHash: String, responseHash: String?, httpStatus: Int?, error: String?, tokensIn: Int,
        tokensOut: Int, cost: Double, latencyMs: Double, startedAt: Double, finishReason: String? = nil,
        firstTokenMs: Double? = nil, outcome: CallOutcome? = nil
    ) {
        self.outcome = outcome
        self.runID = runID
        self.stepPath = stepPath
        self.attempt = attempt
        self.model = model
        self.providerModel = providerModel
        self.url = url
        self.requestHash = requestHash
        self.responseHash = responseHash
        self.httpStatus = httpStatus
        self.error = error
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.cost = cost
        self.latencyMs = latencyMs
        self.startedAt = startedAt
        self.finishReason = finishReason
        self.firstTokenMs = firstTokenMs
    }
}

/// An entry in a run's ordered event log (start, finish, escalation, …).
public struct EventRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "event"
    /// The run whose log it is.
    public var runID: String
    /// Position in the run's log, from 1.
    public var seq: Int
    /// Seconds since 1970.
    public var at: Double
    /// An `EventKind`'s raw value; `TraceEvent` reads kind and detail back typed.
    public var kind: String
    /// The step it concerns, when it concerns one.
    public var stepPath: String?
    /// The event's details as a JSON object's text.
    public var detailJSON: String?

    /// Whether this event is of `kind`.
    public func isKind(_ kind: EventKind) -> Bool { self.kind == kind.rawValue }

    /// An entry as a trace store reads it back (a writer appends `TraceChange.event`, whose
    /// `seq` the writer assigns).
    public init(runID: String, seq: Int, at: Double, kind: String, stepPath: String?, detailJSON: String?) {
        self.runID = runID
        self.seq = seq
        self.at = at
        self.kind = kind
        self.stepPath = stepPath
        self.detailJSON = detailJSON
    }
}

/// What a step row records, named once and stored as the raw value: an agent node's call,
/// a fan-out item, a lead's plan, a synthesis, a judge's calls; a node's result row
/// (`NODE#result`) has its node's kind.
public enum StepKind: String, Sendable, CaseIterable {
    /// An agent node's call.
    case agent
    /// A foreach's item.
    case item
    /// A lead's plan for a round.
    case plan
    /// A reconcile node's synthesis.
    case reconcile
    /// A judge's calls on a step's input or output.
    case judge
    /// A foreach node's result row.
    case foreach
    /// A lead node's result row.
    case lead
    /// A route node's call.
    case route
}

extension StepRecord {
    /// The kind, typed; nil for a kind this version does not know.
    public var stepKind: StepKind? { StepKind(rawValue: kind) }
}

/// Every kind of event a run's log holds, named once. Stored as the raw value, so the
/// column (and every digest the audit chain sealed) is what it always was.
public enum EventKind: String, Sendable, CaseIterable {
    /// The run started (detail: its configuration).
    case runStarted = "run_started"
    /// The run finished with an output.
    case runSucceeded = "run_succeeded"
    /// The run failed (detail: why).
    case runFailed = "run_failed"
    /// The run was interrupted.
    case runInterrupted = "run_interrupted"
    /// The run paused for a person's decision.
    case runAwaitingApproval = "run_awaiting_approval"
    /// A node started.
    case nodeStarted = "node_started"
    /// A node finished with a result.
    case nodeSucceeded = "node_succeeded"
    /// A node did not run (its `when` was false, or what it needs was skipped).
    case nodeSkipped = "node_skipped"
    /// A route node picked a label.
    case routeChosen = "route_chosen"
    /// A lead planned a round.
    case roundPlanned = "round_planned"
    /// A lead's plan was cut to what was left of `max_subtasks`.
    case planTruncated = "plan_truncated"
    /// A step's answer was accepted.
    case stepSucceeded = "step_succeeded"
    /// A step failed for good.
    case stepFailed = "step_failed"
    /// A resumed or forked run reused a step of its parent.
    case stepReused = "step_reused"
    /// A shared run's step was run by a worker.
    case stepShared = "step_shared"
    /// A step moved to a larger model.
    case escalated = "escalated"
    /// An escalation waits for a person's approval.
    case escalationHeld = "escalation_held"
    /// A provider refused in a way no retry fixes; the run stops making calls.
    case circuitOpened = "circuit_opened"
    /// An answer stopped at its token limit.
    case answerTruncated = "answer_truncated"
    /// A call's reported usage was not charged as reported.
    case usageCapped = "usage_capped"
    /// The data boundary kept a label from a model.
    case boundaryRefused = "boundary_refused"
    /// A guard redacted or denied.
    case guardVerdict = "guard_verdict"
    /// A node waits for a person's decision.
    case approvalRequested = "approval_requested"
    /// A person decided.
    case approvalDecided = "approval_decided"
    /// The tools an agent was offered.
    case toolsOffered = "tools_offered"
    /// A resumed step's tool call was served from the parent run.
    case toolCallReused = "tool_call_reused"

    /// The event that ends a run with `status`.
    public static func ended(_ status: RunStatus) -> EventKind {
        switch status {
        case .succeeded: .runSucceeded
        case .failed: .runFailed
        case .interrupted: .runInterrupted
        case .awaitingApproval: .runAwaitingApproval
        case .running: .runStarted
        }
    }
}

/// One tool call: which answer asked for it, the tool, what went in and came out.
public struct ToolCallRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "toolCall"
    /// The run the call belongs to.
    public var runID: String
    /// The step whose model asked for it.
    public var stepPath: String
    /// The model call (its attempt number in the step) whose answer asked for the tool.
    public var attempt: Int
    /// The call's place among that answer's tool calls, from 0.
    public var callIndex: Int
    /// The model's id for the call.
    public var callID: String
    /// The tool's name as the model called it.
    public var tool: String
    /// subprocess, http or mcp.
    public var kind: String
    /// SHA-256 of the input (JSON) and of the output the model was given; both are blobs.
    public var inputHash: String
    /// SHA-256 of the output the model was given.
    public var outputHash: String
    /// The output reports a failure (a non-zero exit, an HTTP error, an MCP error, a bad input).
    public var isError: Bool
    /// A subprocess's exit status, or an HTTP tool's status.
    public var exitStatus: Int?
    /// Why the call failed, one line.
    public var error: String?
    /// From starting the call to its output.
    public var latencyMs: Double
    /// Seconds since 1970.
    public var startedAt: Double

    /// A tool call record; `TraceWriter` stores input and output as blobs and fills in the hashes.
    public init(
        runID: String, stepPath: String, attempt: Int, callIndex: Int, callID: String, tool: String, kind: String,
        isError: Bool, exitStatus: Int?, error: String?, latencyMs: Double, startedAt: Double
    ) {
        self.runID = runID
        self.stepPath = stepPath
        self.attempt = attempt
        self.callIndex = callIndex
        self.callID = callID
        self.tool = tool
        self.kind = kind
        inputHash = ""
        outputHash = ""
        self.isError = isError
        self.exitStatus = exitStatus
        self.error = error
        self.latencyMs = latencyMs
        self.startedAt = startedAt
    }
}

extension RunStatus: DatabaseValueConvertible {}
extension StepStatus: DatabaseValueConvertible {}
extension CallOutcome: DatabaseValueConvertible {}
extension RunRelation: DatabaseValueConvertible {}
