@testable import Chorus
import Testing

/// Money inside Chorus: whole pico-dollars, one price computation, dollars only at the edges.
@Suite struct USDTests {
    @Test func aCallCostsExactlyWhatItsPriceSays() {
        // 33 tokens at $0.15/MTok: $0.00000495 exactly (in Double arithmetic 33 × 0.15 is 4.949999…).
        let cost = USD.cost(tokensIn: 33, tokensOut: 0, inputPerMTok: 0.15, outputPerMTok: 0.6)
        #expect(cost.pico == 4_950_000)
        #expect(cost.dollars == 0.00000495)
        // Six decimals per million tokens are still whole pico-dollars per token.
        #expect(USD.cost(tokensIn: 3, tokensOut: 7, inputPerMTok: 0.0375, outputPerMTok: 0.000001).pico == 3 * 37_500 + 7)
    }

    @Test func manySmallCallsSumWithoutDrift() {
        var total = USD.zero
        var dollars = 0.0
        let call = USD.cost(tokensIn: 123, tokensOut: 45, inputPerMTok: 0.1, outputPerMTok: 0.3)
        for _ in 0..<1_000_000 {
            total += call
            dollars += call.dollars
        }
        #expect(total.pico == 1_000_000 * (123 * 100_000 + 45 * 300_000))
        #expect(total.dollars == 25.8)
        // What summing dollars did before: off in the last digits.
        #expect(dollars != 25.8)
    }

    @Test func aBudgetChargesWholeMicroDollarsRoundedUp() {
        #expect(USD(pico: 0).microRoundedUp == 0)
        #expect(USD(pico: 1).microRoundedUp == 1)
        #expect(USD(pico: 4_950_000).microRoundedUp == 5)
        #expect(USD(pico: 5_000_000).microRoundedUp == 5)
        // 10 tokens at $0.1/MTok is exactly one micro-dollar; Double arithmetic made it 1.0000000000000002, charged 2.
        #expect(USD.cost(tokensIn: 10, tokensOut: 0, inputPerMTok: 0.1, outputPerMTok: 0).microRoundedUp == 1)
    }

    @Test func hostileValuesSaturateOrReadAsNothing() {
        #expect(USD(dollars: .nan) == .zero)
        #expect(USD(dollars: -3) == .zero)
        #expect(USD(dollars: .infinity) == .zero)
        #expect(USD(dollars: 1e30).pico == .max)
        let huge = USD.cost(tokensIn: .max, tokensOut: .max, inputPerMTok: 1e9, outputPerMTok: 1e9)
        #expect(huge.pico == .max)
        #expect(USD.cost(tokensIn: -5, tokensOut: 10, inputPerMTok: 1, outputPerMTok: 1).pico == 10_000_000)
        #expect((USD(pico: .max) + USD(pico: 1)).pico == .max)
    }

    @Test func aRecordedCostReadsBackToTheSameAmount() {
        for pico: Int64 in [1, 4_950_000, 123_456_789_012, 9_000_000_000_000_000] {
            #expect(USD(dollars: USD(pico: pico).dollars).pico == pico)
        }
    }
}
