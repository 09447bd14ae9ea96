import ChorusTrace
import Foundation
import PostgresClient

/// `max_concurrency` across every process on one PostgreSQL database: one row per slot,
/// taken with `FOR UPDATE SKIP LOCKED`. A slot's lease (10 minutes) outlives any call; a
/// holder on this host whose process is gone is freed at once, one elsewhere when its
/// lease lapses.
final class PostgresSlots: SharedConcurrency, @unchecked Sendable {
    private let database: PostgresLink
    /// Keys whose slot rows exist (touched only under the link's lock).
    private var prepared = Set<String>()

    init(url: String, location: String) { database = PostgresLink(url: url, location: location) }

    @discardableResult
    private func locked<T>(_ body: (PostgresConnection) throws -> T) throws -> T { try database.use(body) }

    func tryAcquire(key: String, limit: Int, holder: String, leaseSeconds: Double) throws -> Int? {
        try locked { connection in
            let now = Date().timeIntervalSince1970
            if prepared.insert("\(key)\u{0}\(limit)").inserted {
                try connection.query(
                    "INSERT INTO modelSlot (key, slot) SELECT $1, g FROM generate_series(0, $2 - 1) g ON CONFLICT DO NOTHING",
                    [.text(key), .text(String(limit))])
            }
            let take = """
                UPDATE modelSlot SET holder = $3, expiresAt = $4 WHERE (key, slot) = (
                    SELECT key, slot FROM modelSlot WHERE key = $1 AND slot < $2 AND (holder IS NULL OR expiresAt < $5)
                    ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING slot
                """
            let parameters: [PostgresValue?] = [.text(key), .text(String(limit)), .text(holder), .text(String(now + leaseSeconds)), .text(String(now))]
            if let slot = try connection.query(take, parameters).int(0, 0) { return slot }
            // All taken: free the slots of processes on this host that are gone, then try once more.
            let host = TraceStore.hostName + ":"
            var freed = false
            for row in try connection.query("SELECT slot, holder FROM modelSlot WHERE key = $1 AND holder LIKE $2", [.text(key), .text(host + "%")]).rows {
                guard case .text(let slot)? = row[0], case .text(let owner)? = row[1],
                    let pid = owner.dropFirst(host.count).split(separator: ":").first.flatMap({ Int32($0) }),
                    TraceStore.processIsGone(pid, host: TraceStore.hostName)
                else { continue }
                freed =
                    try connection.query(
                        "UPDATE modelSlot SET holder = NULL WHERE key = $1 AND slot = $2 AND holder = $3",
                        [.text(key), .text(slot), .text(owner)]
                    ).affected > 0 || freed
            }
            return freed ? try connection.query(take, parameters).int(0, 0) : nil
        }
    }

    func release(key: String, slot: Int, holder: String) throws {
        try locked { connection in
            try connection.query(
                "UPDATE modelSlot SET holder = NULL, expiresAt = NULL WHERE key = $1 AND slot = $2 AND holder = $3",
                [.text(key), .text(String(slot)), .text(holder)])
        }
    }
}
