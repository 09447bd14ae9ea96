import ChorusJSON
import ChorusTrace
import Foundation

extension ApprovalDecision {
    /// Records this decision on `runID`, a run paused for approval, as an `approval_decided`
    /// event in its audit chain; a resume of the run then honours it. Refused when the run
    /// does not wait for this node (`ApprovalDecisionError`), or when its audit chain or an
    /// ancestor's does not verify (`UnverifiedRecord`) unless `forceUnverified`, in which
    /// case the event records the break as `unverified_source`.
    ///
    /// What `chorus approve` and `chorus deny` do; in the library so that every writer of
    /// the trace is one (a decision is a record like any other, through `TraceWriter`).
    public func record(
        onRun runID: String, store: any TraceBackend, forceUnverified: Bool = false,
        at time: Double = Date().timeIntervalSince1970
    ) throws {
        // A decision continues what the run recorded: that record must be intact.
        let unverified = try AuditGate.check(runID, store: store, force: forceUnverified)
        let waiting = Self.pending(in: try store.events(ofRun: runID))
        guard waiting.contains(node) else { throw ApprovalDecisionError(.notWaiting(runID: runID, node: node, waiting: waiting)) }
        let writer = TraceWriter(store: store)
        writer.append(.event(runID: runID, event(unverified: unverified), stepPath: nil, at: time))
        writer.close()
        if let failure = writer.failure { throw ApprovalDecisionError(.unwritable(failure)) }
    }
}

/// A decision that was not recorded: the run does not wait for the node, or the trace
/// could not be written.
public struct ApprovalDecisionError: Error, Sendable, CustomStringConvertible {
    fileprivate enum Code: Sendable {
        case notWaiting(runID: String, node: String, waiting: [String])
        case unwritable(String)
    }

    private let code: Code

    fileprivate init(_ code: Code) { self.code = code }

    public var description: String {
        switch code {
        case .notWaiting(let runID, let node, let waiting):
            "run \(runID) does not wait for node '\(node)'"
                + (waiting.isEmpty ? " (it waits for nothing)" : " (it waits for: \(waiting.joined(separator: ", ")))")
        case .unwritable(let failure): failure
        }
    }
}
