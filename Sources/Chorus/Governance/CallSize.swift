/// What one request may weigh, worked out once per attempt and read by every stage that
/// needs a size: the limiter's tokens-per-minute window, the budget's reservation, the
/// approval over a cost. (Three stages computed it three ways before.)
struct CallSize: Sendable, Equatable {
    /// The request body's bytes: what goes on the wire, tool definitions and schemas included.
    let requestBytes: Int
    /// The bytes of the conversation's text alone.
    let textBytes: Int
    /// The answer's limit.
    let maxTokens: Int

    /// The most tokens the call can be billed: every request byte a token (a token is at
    /// least one byte in the byte-level tokenizers of current model families, so this never
    /// undercounts) plus `max_tokens`. What a budget reserves and an approval compares.
    var worstTokens: Int { requestBytes + maxTokens }

    /// The tokens the call is expected to use, for a provider's tokens-per-minute window:
    /// about four bytes of text a token, plus `max_tokens` (the window is settled to the
    /// real count when the call ends).
    var expectedTokens: Int { textBytes / 4 + maxTokens }

    /// The worst case at `spec`'s price, in whole micro-dollars (rounded up), with its tokens.
    func worstCase(at spec: ModelSpec) -> BudgetLedger.Amount {
        BudgetLedger.Amount(microUSD: spec.cost(tokensIn: requestBytes, tokensOut: maxTokens).microRoundedUp, tokens: worstTokens)
    }
}
