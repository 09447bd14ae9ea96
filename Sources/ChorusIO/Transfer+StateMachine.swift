extension Transfer {
    /// The life of one transfer, kept free of I/O so it can be tested without sockets:
    /// running → (head delivered, when streaming) → finished. Each event returns what
    /// the I/O shell must do; events after `finished` are ignored.
    struct StateMachine {
        private enum State {
            case running(streaming: Bool)
            case streamingBody
            case finished
        }

        /// What to do when the final response head (status ≥ 200) is complete.
        enum HeadAction: Equatable {
            /// Keep buffering (buffered mode, or an error status that will fail at the end).
            case buffer
            /// Hand the head and the body stream to the caller; chunks flow from now on.
            case deliverHead
        }

        /// What to do when curl reports the transfer done, or it is cancelled.
        enum FinishAction: Equatable {
            /// Resume the caller with the whole response.
            case succeed
            /// Resume the caller, who is still waiting for a head, with an error.
            case failWaitingCaller
            /// Finish the body stream the caller is reading.
            case finishStream
            /// End the body stream the caller is reading with an error.
            case failStream
            /// Already finished: nothing to do.
            case none
        }

        private var state: State

        init(streaming: Bool) {
            state = .running(streaming: streaming)
        }

        var isFinished: Bool {
            if case .finished = state { return true }
            return false
        }

        /// Whether body bytes go to the caller's stream rather than the buffer.
        var isStreamingBody: Bool {
            if case .streamingBody = state { return true }
            return false
        }

        mutating func headComplete(status: Int) -> HeadAction {
            switch state {
            case .running(streaming: true) where status < 400:
                state = .streamingBody
                return .deliverHead
            case .running, .streamingBody, .finished:
                return .buffer
            }
        }

        /// The transfer ended; `succeeded` is curl's verdict plus a status below 400.
        mutating func finish(succeeded: Bool) -> FinishAction {
            switch state {
            case .running:
                state = .finished
                return succeeded ? .succeed : .failWaitingCaller
            case .streamingBody:
                state = .finished
                return succeeded ? .finishStream : .failStream
            case .finished:
                return .none
            }
        }
    }
}
