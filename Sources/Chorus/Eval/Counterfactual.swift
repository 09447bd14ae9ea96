import ChorusJSON
import ChorusTrace

/// What a run would have cost had every call gone to the most expensive model configured
/// for its step, beside what it did cost: the saving the small-first configuration bought,
/// on every run. Each call is re-priced with its own token counts (a larger model's
/// answers would differ in length; the prompt, most of the tokens, would not).
public enum Counterfactual {
    /// What a run records (in its `run_started` event) to be re-priced later, whatever
    /// chorus.json says by then: each agent's model chain, after any swaps, and each model's
    /// prices per million tokens.
    static func pricing(_ project: Project, swaps: [String: String]) -> JSONValue {
        var chains: [String: JSONValue] = [:]
        for (name, agent) in project.agents {
            var seen = Set<String>()
            let chain = agent.models.map { swaps[$0] ?? $0 }.filter { project.config.models[$0] != nil && seen.insert($0).inserted }
            chains[name] = .array(chain.map { .string($0) })
        }
        let prices = project.config.models.mapValues { spec -> JSONValue in
            [.number(spec.inputPerMTok), .number(spec.outputPerMTok)]
        }
        return ["chains": .object(chains), "prices": .object(prices)]
    }

    /// A run's cost and its ceiling.
    public struct Estimate: Sendable, Equatable {
        /// What the live calls cost.
        public var actual: Double
        /// The same calls, each on the most expensive model its step's agent was configured with.
        public var ceiling: Double
        /// The models the ceiling prices calls on, by name.
        public var ceilingModels: [String]
    }

    /// The estimate for a run's `calls`, from the `pricing` its `run_started` event
    /// recorded; nil for runs recorded before Chorus kept it. Calls served from a recording
    /// cost nothing either way.
    public static func estimate(pricing: JSONValue?, steps: [StepRecord], calls: [ModelCallRecord]) -> Estimate? {
        guard let pricing, let chains = pricing["chains"]?.objectValue, let prices = pricing["prices"]?.objectValue else { return nil }
        let agentOf = Dictionary(steps.compactMap { step in step.agent.map { (step.path, $0) } }, uniquingKeysWith: { $1 })
        func cost(_ model: String, _ call: ModelCallRecord) -> Double? {
            guard let price = prices[model]?.arrayValue, price.count == 2,
                let input = price[0].numberValue, let output = price[1].numberValue
            else { return nil }
            return USD.cost(tokensIn: call.tokensIn, tokensOut: call.tokensOut, inputPerMTok: input, outputPerMTok: output).dollars
        }
        var estimate = Estimate(actual: 0, ceiling: 0, ceilingModels: [])
        var used = Set<String>()
        for call in calls where !call.url.hasPrefix("replay:") {
            estimate.actual += call.cost
            // A guard's judge call (`PATH#guard-input`) is priced on its own model.
            let chain = call.stepPath.contains("#") ? [] : agentOf[call.stepPath].flatMap { chains[$0]?.arrayValue?.compactMap(\.stringValue) } ?? []
            var best = (model: call.model, cost: call.cost)
            for model in chain { if let priced = cost(model, call), priced > best.cost { best = (model, priced) } }
            estimate.ceiling += best.cost
            // A call with no tokens (an HTTP 500) costs nothing on any model: it names none.
            if call.tokensIn + call.tokensOut > 0 { used.insert(best.model) }
        }
        estimate.ceilingModels = used.sorted()
        return estimate
    }
}
