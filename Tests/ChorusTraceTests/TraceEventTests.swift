import ChorusJSON
import ChorusTrace
import Testing

/// Every typed event writes the kind and detail the log always held, and reads back as
/// itself: old runs' events are read by the same code, and their digests do not change.
@Suite struct TraceEventTests {
    static let events: [TraceEvent] = [
        .runStarted(["workflow": "brief", "budget": ["usd": 0.5]]), .runEnded(.succeeded, error: nil),
        .runEnded(.failed, error: "budget exhausted"), .runEnded(.failed, error: "budget exhausted", code: "budget_exhausted"),
        .runEnded(.awaitingApproval, error: "awaiting approval of write"),
        .runEnded(.interrupted, error: nil), .nodeStarted, .nodeSucceeded, .nodeSkipped(reason: "when x is false"),
        .routeChosen(label: "billing", nodes: ["billing"]), .roundPlanned(subtasks: 4),
        .planTruncated(planned: 9, kept: 4), .stepSucceeded,
        .stepFailed(error: "research/2: small: not JSON (after 2 attempts)"), .stepFailed(error: nil), .stepReused(from: "run-1"),
        .stepShared(worker: "w1/123", leases: 2), .escalated(from: "small", to: "large", reason: "small: not JSON"),
        .escalationHeld(from: "small", to: "large", reason: "small: HTTP 400"),
        .circuitOpened(model: "small", status: 401, error: "HTTP 401"), .circuitOpened(model: "small", status: nil, error: "unknown model"),
        .answerTruncated(model: "small", attempt: 2, maxTokens: 64),
        .usageCapped(.init(model: "small", reportedIn: 10, reportedOut: 9000, chargedIn: 10, chargedOut: 64, reason: "over max_tokens")),
        .boundaryRefused(model: "cloud", label: "pii", from: "inputs.ticket"),
        .guardVerdict(stage: "input", guardName: "pii", .redacted(what: "2 emails")),
        .guardVerdict(stage: "output", guardName: "regex", .denied(reason: "matched /secret/")),
        .approvalRequested(node: "write", reason: "the node requires approval"),
        .approvalDecided(node: "write", approved: false, by: "ann", note: "not today"),
        .approvalDecided(node: "write", approved: true, by: "bob", note: nil),
        .approvalDecided(node: "write", approved: true, by: "bob", note: nil, unverifiedSource: "run-1: event 4 does not verify"),
        .toolsOffered(agent: "researcher", tools: [["name": "git_log", "remote": "git_log"]]), .toolCallReused(tool: "clock", from: "run-1"),
    ]

    @Test func everyEventReadsBackAsItselfFromItsStoredText() throws {
        for event in Self.events {
            let stored = event.detail?.text
            let read = TraceEvent(kind: event.kind.rawValue, detail: try stored.map { try JSONValue(parsing: Array($0.utf8)) })
            #expect(read == event, "\(event.kind.rawValue): \(stored ?? "nil")")
        }
        #expect(Set(Self.events.map(\.kind)) == Set(EventKind.allCases), "every kind has a case here")
    }

    /// The detail text is what the writers wrote before the events were typed.
    @Test func theStoredDetailIsWhatItAlwaysWas() {
        #expect(TraceEvent.escalated(from: "small", to: "large", reason: "small: x").detail?.text == #"{"from":"small","reason":"small: x","to":"large"}"#)
        #expect(TraceEvent.circuitOpened(model: "m", status: nil, error: "e").detail?.text == #"{"error":"e","model":"m","status":null}"#)
        #expect(TraceEvent.approvalDecided(node: "n", approved: true, by: "b", note: nil).detail?.text == #"{"by":"b","decision":"approved","node":"n"}"#)
        #expect(TraceEvent.stepFailed(error: nil).detail == nil)
        #expect(TraceEvent.roundPlanned(subtasks: 3).detail?.text == #"{"subtasks":3}"#)
    }

    @Test func aDamagedOrUnknownEventIsNotGuessedAt() {
        #expect(TraceEvent(kind: "no_such_kind", detail: nil) == nil)
        #expect(TraceEvent(kind: "boundary_refused", detail: ["label": "pii"]) == nil, "no model")
        #expect(TraceEvent(kind: "guard_verdict", detail: ["stage": "input", "guard": "pii", "verdict": "maybe"]) == nil)
    }
}
