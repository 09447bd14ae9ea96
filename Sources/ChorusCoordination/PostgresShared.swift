import ChorusTrace
import Foundation
import PostgresClient

/// Budgets and rate windows in PostgreSQL (migration 5). Each decision is one call of a
/// PL/pgSQL function that takes a transaction-scoped advisory lock on its key, reads the
/// key's state and writes the hold or window entry: one round trip, and two processes
/// never both take the last of a limit.
final class PostgresShared: SharedBudgets, SharedRates {
    private let database: PostgresLink

    init(url: String, location: String) {
        database = PostgresLink(url: url, location: location)
    }

    @discardableResult
    private func locked<T>(_ body: (PostgresConnection) throws -> T) throws -> T { try database.use(body) }

    private static func number(_ value: (some BinaryInteger)?) -> PostgresValue? { value.map { .text(String($0)) } }

    // MARK: Rates

    func take(key: String, requestsPerMinute: Int?, tokensPerMinute: Int?, tokens: Int, now: Double) throws -> RateDecision {
        try locked { connection in
            let result = try connection.query(
                "SELECT chorus_rate_take($1, $2, $3, $4, $5)",
                [
                    .text(key), Self.number(requestsPerMinute), Self.number(tokensPerMinute),
                    .text(String(tokens)), .text(String(now)),
                ])
            guard case .text(let text)? = result.rows.first?[0], let value = Double(text) else { return .wait(seconds: 0.05) }
            return value > 0 ? .admitted(Int64(value)) : .wait(seconds: -value)
        }
    }

    func settle(entry: Int64, tokens: Int) throws {
        try locked { connection in
            try connection.query("UPDATE rateUse SET tokens = $2 WHERE id = $1", [.text(String(entry)), .text(String(tokens))])
        }
    }

    // MARK: Budgets

    func open(key: String, limitMicroUSD: Int64?, limitTokens: Int?, limitCalls: Int?, spent: (microUSD: Int64, tokens: Int, calls: Int)) throws {
        try locked { connection in
            try connection.query(
                """
                INSERT INTO sharedBudget (key, limitMicroUSD, limitTokens, limitCalls, spentMicroUSD, spentTokens, spentCalls)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (key) DO UPDATE SET limitMicroUSD = excluded.limitMicroUSD, limitTokens = excluded.limitTokens,
                limitCalls = excluded.limitCalls
                """,
                [
                    .text(key), Self.number(limitMicroUSD), Self.number(limitTokens), Self.number(limitCalls),
                    .text(String(spent.microUSD)), .text(String(spent.tokens)), .text(String(spent.calls)),
                ])
        }
    }

    func reserve(key: String, microUSD: Int64, tokens: Int, holder: String, leaseSeconds: Double, now: Double) throws -> BudgetDecision {
        try locked { connection in
            let result = try connection.query(
                "SELECT chorus_budget_reserve($1, $2, $3, $4, $5, $6)",
                [
                    .text(key), .text(String(microUSD)), .text(String(tokens)), .text(holder),
                    .text(String(now)), .text(String(leaseSeconds)),
                ])
            guard let value = result.int(0, 0) else { return .unknown }
            switch value {
            case 1...: return .held(Int64(value))
            case 0: return .wait
            case -1: return .refused
            default: return .unknown
            }
        }
    }

    func settle(key: String, hold: Int64, microUSD: Int64, tokens: Int, madeCall: Bool) throws {
        try locked { connection in
            try connection.query(
                """
                WITH gone AS (DELETE FROM budgetHold WHERE id = $2)
                UPDATE sharedBudget SET spentMicroUSD = spentMicroUSD + $3, spentTokens = spentTokens + $4, spentCalls = spentCalls + $5
                WHERE key = $1
                """, [.text(key), .text(String(hold)), .text(String(microUSD)), .text(String(tokens)), .text(madeCall ? "1" : "0")])
        }
    }

    func spent(key: String) throws -> (microUSD: Int64, tokens: Int, calls: Int) {
        try locked { connection in
            let result = try connection.query("SELECT spentMicroUSD, spentTokens, spentCalls FROM sharedBudget WHERE key = $1", [.text(key)])
            return (Int64(result.int(0, 0) ?? 0), result.int(0, 1) ?? 0, result.int(0, 2) ?? 0)
        }
    }
}
