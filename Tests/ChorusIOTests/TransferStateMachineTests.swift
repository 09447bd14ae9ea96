@testable import ChorusIO
import Testing

@Suite struct TransferStateMachineTests {
    @Test func aBufferedTransferSucceedsOnceAndIgnoresLaterEvents() {
        var machine = Transfer.StateMachine(streaming: false)
        #expect(machine.headComplete(status: 200) == .buffer)
        #expect(!machine.isStreamingBody)
        #expect(machine.finish(succeeded: true) == .succeed)
        #expect(machine.isFinished)
        #expect(machine.finish(succeeded: false) == .none)
    }

    @Test func aStreamingTransferDeliversTheHeadThenFinishesTheStream() {
        var machine = Transfer.StateMachine(streaming: true)
        #expect(machine.headComplete(status: 200) == .deliverHead)
        #expect(machine.isStreamingBody)
        #expect(machine.finish(succeeded: true) == .finishStream)
    }

    @Test func aStreamingTransferFailingMidBodyFailsTheStream() {
        var machine = Transfer.StateMachine(streaming: true)
        _ = machine.headComplete(status: 200)
        #expect(machine.finish(succeeded: false) == .failStream)
    }

    @Test func anErrorStatusOnAStreamIsBufferedAndFailsTheWaitingCaller() {
        var machine = Transfer.StateMachine(streaming: true)
        #expect(machine.headComplete(status: 503) == .buffer)
        #expect(!machine.isStreamingBody)
        #expect(machine.finish(succeeded: false) == .failWaitingCaller)
    }

    @Test func cancellationBeforeTheHeadFailsTheWaitingCaller() {
        var machine = Transfer.StateMachine(streaming: true)
        #expect(machine.finish(succeeded: false) == .failWaitingCaller)
        #expect(machine.headComplete(status: 200) == .buffer, "events after finishing change nothing")
    }
}
