import ChorusIO
import ChorusJSON
import ChorusSim
import Testing

/// Each fault flag produces its fault at the configured rate (seeded, so the counts are
/// reproducible; the tolerance allows for any seed).
@Suite struct SimulatorFaultTests {
    static let requests = 1000

    /// Sends `requests` chat requests, 50 at a time, and counts the outcomes by kind.
    private func outcomes(_ sim: SimHarness, timeout: Duration = .seconds(30)) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for batch in 0..<(Self.requests / 50) {
            try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        do {
                            let response = try await sim.chat(userMessage("q\(batch)-\(i)"), timeout: timeout)
                            return (try? JSONValue(parsing: response.body)) == nil ? "malformed" : "ok"
                        } catch let error as HTTPClientError {
                            if error.code == .timeout { return "timeout" }
                            return "status \(error.response?.status.code ?? 0)"
                        }
                    }
                }
                for try await outcome in group { counts[outcome, default: 0] += 1 }
            }
        }
        return counts
    }

    private func expectRate(_ count: Int?, _ rate: Double, _ label: String) {
        let expected = Double(Self.requests) * rate
        let tolerance = 4 * (expected * (1 - rate)).squareRoot() + 5  // four standard deviations
        #expect(abs(Double(count ?? 0) - expected) <= tolerance, "\(label): \(count ?? 0), expected about \(Int(expected))")
    }

    @Test func errorRateGives500s() async throws {
        let sim = try SimHarness {
            $0.errorRate = 0.1; $0.seed = 7
        }
        let counts = try await outcomes(sim)
        expectRate(counts["status 500"], 0.1, "500s")
        #expect(sim.stats()["by_status"]?["500"]?.intValue == counts["status 500"])
        await sim.shutdown()
    }

    @Test func rateLimitRateGives429sWithRetryAfter() async throws {
        let sim = try SimHarness {
            $0.rateLimitRate = 0.2; $0.retryAfterSeconds = 0.25; $0.seed = 8
        }
        let counts = try await outcomes(sim)
        expectRate(counts["status 429"], 0.2, "429s")
        // One more to look at the header itself.
        var seen: HTTPClientError?
        for i in 0..<200 where seen == nil {
            do { _ = try await sim.chat(userMessage("probe \(i)")) } catch let error as HTTPClientError { seen = error }
        }
        #expect(seen?.response?.retryAfter == .milliseconds(250))
        #expect(seen?.isTransient == true)
        await sim.shutdown()
    }

    @Test func malformedRateGivesTruncatedJSON() async throws {
        let sim = try SimHarness {
            $0.malformedRate = 0.05; $0.seed = 9
        }
        let counts = try await outcomes(sim)
        expectRate(counts["malformed"], 0.05, "malformed bodies")
        await sim.shutdown()
    }

    @Test func hangRateGivesRequestsThatNeverAnswer() async throws {
        let sim = try SimHarness {
            $0.hangRate = 0.03; $0.seed = 10
        }
        let counts = try await outcomes(sim, timeout: .milliseconds(300))
        expectRate(counts["timeout"], 0.03, "hangs")
        #expect(sim.stats()["faults"]?["hang"]?.intValue == counts["timeout"])
        await sim.shutdown()
    }

    @Test func theSameSeedGivesTheSameFaultSequence() async throws {
        func sequence(seed: UInt64) async throws -> [String] {
            let sim = try SimHarness {
                $0.errorRate = 0.3; $0.seed = seed
            }
            var result: [String] = []
            for i in 0..<60 {  // one at a time: arrival order is the draw order
                do { _ = try await sim.chat(userMessage("\(i)")); result.append("ok") } catch { result.append("err") }
            }
            await sim.shutdown()
            return result
        }
        let first = try await sequence(seed: 42)
        #expect(try await sequence(seed: 42) == first)
        #expect(try await sequence(seed: 43) != first)
    }

    @Test func statsReportPeakConcurrencyPerModel() async throws {
        let sim = try SimHarness { $0.latencyMs = 600 }  // long enough that all 40 overlap, even on a loaded machine
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<30 { group.addTask { _ = try await sim.chat(userMessage("\(i)", model: "a")) } }
            for i in 0..<10 { group.addTask { _ = try await sim.chat(userMessage("\(i)", model: "b")) } }
            try await group.waitForAll()
        }
        let stats = sim.stats()
        #expect(stats["models"]?["a"]?["peak_in_flight"]?.intValue == 30)
        #expect(stats["models"]?["b"]?["peak_in_flight"]?.intValue == 10)
        #expect(stats["peak_in_flight"]?.intValue == 40)
        #expect(stats["in_flight"]?.intValue == 0)
        #expect(stats["requests"]?.intValue == 40)
        await sim.shutdown()
    }

    @Test func invalidRatesAreRefused() {
        var configuration = SimulatorConfiguration()
        configuration.errorRate = 0.7
        configuration.hangRate = 0.5
        #expect(configuration.problem == "the fault rates add up to more than 1")
        configuration.errorRate = -1
        #expect(configuration.problem?.contains("--error-rate") == true)
    }
}
