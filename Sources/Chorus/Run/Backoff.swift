/// The pause of a poll against the database (a shared slot, a shared budget, the step
/// table): short at first, doubling while nothing changes, up to a ceiling, and short again
/// once something does. One helper for the four polls that each wrote it out.
struct Backoff: Sendable {
    let first: Duration
    let ceiling: Duration
    /// The pause to take now.
    private(set) var pause: Duration

    init(from first: Duration = .milliseconds(5), upTo ceiling: Duration) {
        self.first = first
        self.ceiling = ceiling
        pause = first
    }

    /// Nothing changed: the next pause is twice as long, at most the ceiling.
    mutating func grow() { pause = min(pause * 2, ceiling) }

    /// Something changed: the next pause is the first again.
    mutating func reset() { pause = first }
}
