/// What one call may be charged, from what its provider reported and what arrived. A
/// provider's usage is its word, and a careless or hostile one can say anything: a call is
/// charged at most what Chorus reserved for it (every request byte a token, plus
/// `max_tokens`), and an answer that cannot fit in `max_tokens` is a provider fault — the
/// call fails as malformed (retried, then escalated) instead of being paid for as asked.
struct ReportedUsage: Equatable {
    /// The tokens to charge and record.
    var tokensIn: Int
    var tokensOut: Int
    /// Why the provider's report was not taken as is (capped or estimated past the bound), or nil.
    var capped: String?
    /// Why the answer is not acceptable: it is longer than `max_tokens` allows.
    var fault: String?

    /// No current tokenizer averages more bytes per token over a whole answer (English is
    /// about 4, code 3, long runs of spaces or symbols up to 16): an answer past this many
    /// bytes per `max_tokens` token must hold more tokens than were allowed.
    static let maxBytesPerToken = 16

    /// `reportedIn`/`reportedOut` (zero both when the provider reported nothing: some
    /// servers do not, llama-cpp-python's streams among them) for a request of
    /// `requestBytes` allowed `maxTokens` output tokens, whose answer was `answerBytes` long.
    init(reportedIn: Int, reportedOut: Int, requestBytes: Int, answerBytes: Int, maxTokens: Int) {
        let maxTokens = max(0, maxTokens)
        // What arrived bounds the count from below, whatever was reported: an answer of B bytes
        // holds at least B / maxBytesPerToken tokens.
        let arrived = (answerBytes + Self.maxBytesPerToken - 1) / Self.maxBytesPerToken
        let tooLong = answerBytes > maxTokens * Self.maxBytesPerToken
        if reportedIn == 0 && reportedOut == 0 {
            // Nothing reported: estimate at four bytes a token rather than record a free call.
            tokensIn = requestBytes / 4
            tokensOut = min((answerBytes + 3) / 4, maxTokens)
            if tooLong {
                fault =
                    "the answer is \(answerBytes) bytes with no usage reported, more than max_tokens \(maxTokens) can hold: "
                    + "a provider fault (charged as \(maxTokens) output tokens)"
            }
            return
        }
        tokensIn = min(reportedIn, requestBytes)
        tokensOut = min(max(reportedOut, arrived), maxTokens)
        if reportedOut > maxTokens {
            fault =
                "the provider reported \(reportedOut) output tokens for max_tokens \(maxTokens): a provider fault "
                + "(charged as \(maxTokens))"
        } else if tooLong {
            fault =
                "the answer is \(answerBytes) bytes, more than max_tokens \(maxTokens) can hold, though \(reportedOut) output "
                + "tokens were reported: a provider fault (charged as \(maxTokens))"
        }
        if reportedIn > requestBytes {
            capped =
                "the provider reported \(reportedIn) input tokens for a request of \(requestBytes) bytes "
                + "(a token is at least a byte): charged as \(requestBytes)"
        }
    }
}
