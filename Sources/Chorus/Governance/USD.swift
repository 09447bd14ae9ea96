/// An amount of money in whole pico-dollars (10⁻¹² $): what a call costs, and what a step's
/// and a run's calls add up to. Inside Chorus every cost is one of these, worked out once
/// per call (`cost(tokensIn:tokensOut:…)`); dollars as a `Double` appear only at the edges
/// (the trace's `cost` columns, reports, spans).
///
/// Integers, so a sum of many calls does not drift, and pico rather than micro so a call's
/// cost is exact, not rounded: a price per million tokens is pico-dollars per token times
/// 10⁶, so any price with up to six decimals (`0.0375` per MTok is 37,500 pico-dollars a
/// token) costs a whole number. A 33-token call at $0.15/MTok is 4,950,000 pico-dollars,
/// $0.00000495, as the trace has always shown it; in whole micro-dollars it would read
/// $0.000005. Budgets charge whole micro-dollars, rounded up (`microRoundedUp`), as they
/// always have. An Int64 holds $9.2 million; arithmetic saturates there rather than trap.
public struct USD: Sendable, Hashable, Comparable {
    /// The amount in pico-dollars.
    public var pico: Int64

    /// Nothing: what a sum starts from.
    public static let zero = USD(pico: 0)

    /// An amount of `pico` pico-dollars.
    public init(pico: Int64) { self.pico = pico }

    /// `dollars` to the nearest pico-dollar (a cost read back from the trace); zero for a value
    /// that is not a finite non-negative number, saturated past $9.2 million.
    public init(dollars: Double) {
        let scaled = (dollars * 1e12).rounded()
        guard scaled.isFinite, scaled > 0 else {
            self.init(pico: 0)
            return
        }
        self.init(pico: scaled < 9.2e18 ? Int64(scaled) : .max)
    }

    /// What a call with these token counts costs at these prices (dollars per million tokens).
    public static func cost(tokensIn: Int, tokensOut: Int, inputPerMTok: Double, outputPerMTok: Double) -> USD {
        perToken(inputPerMTok).times(tokensIn) + perToken(outputPerMTok).times(tokensOut)
    }

    /// A price per million tokens as pico-dollars per token.
    static func perToken(_ perMTok: Double) -> USD { USD(dollars: perMTok / 1e6) }

    /// The amount in dollars, for the edges.
    public var dollars: Double { Double(pico) / 1e12 }

    /// The amount in whole micro-dollars, rounded up: what a budget charges (a budget is never
    /// rounded in the run's favour).
    public var microRoundedUp: Int64 { pico / 1_000_000 + (pico % 1_000_000 > 0 ? 1 : 0) }

    func times(_ count: Int) -> USD {
        let (product, overflow) = pico.multipliedReportingOverflow(by: Int64(max(0, count)))
        return USD(pico: overflow ? .max : product)
    }

    /// The sum, saturated at `Int64.max` pico-dollars rather than trapping.
    public static func + (a: USD, b: USD) -> USD {
        let (sum, overflow) = a.pico.addingReportingOverflow(b.pico)
        return USD(pico: overflow ? .max : sum)
    }

    /// Adds `b`, saturating as `+` does.
    public static func += (a: inout USD, b: USD) { a = a + b }

    public static func < (a: USD, b: USD) -> Bool { a.pico < b.pico }
}
