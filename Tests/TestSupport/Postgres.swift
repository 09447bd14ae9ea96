import Foundation
import ChorusTrace
import PostgresClient

/// The PostgreSQL server scripts/test starts (lib-postgres.sh), when there is one.
public let postgresURL = ProcessInfo.processInfo.environment["CHORUS_TEST_POSTGRES_URL"]

public struct NoPostgres: Error, CustomStringConvertible {
    public var description: String { "scripts/test starts a PostgreSQL server and sets CHORUS_TEST_POSTGRES_URL" }
}

/// Creates an empty database on the test server and returns its URL.
/// A new database on the test server, with Chorus's tables unless `migrated` is false (a
/// database no run has written to yet).
public func newPostgresDatabase(migrated: Bool = true) throws -> String {
    guard let admin = postgresURL, var components = URLComponents(string: admin) else { throw NoPostgres() }
    let name = "chorus_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
    components.path = "/" + name
    guard let url = components.string else { throw NoPostgres() }
    if migrated { _ = try PostgresTraceStore(url: url) }
    return url
}

/// Has PostgreSQL count the calls of the functions in the database at `url` (connections
/// opened later): `functionCalls` then says how often every process called one.
public func trackFunctionCalls(_ url: String) throws {
    guard let name = URLComponents(string: url)?.path.dropFirst(), !name.isEmpty else { throw NoPostgres() }
    try PostgresConnection(url: url).execute("ALTER DATABASE \(name) SET track_functions = 'all'")
}

/// How many times the function `name` was called in the database at `url`, by every process
/// (the statistics reach the view within about a second of a call).
public func functionCalls(_ url: String, _ name: String) throws -> Int {
    let result = try PostgresConnection(url: url).query("SELECT calls FROM pg_stat_user_functions WHERE funcname = $1", [.text(name)])
    guard case .text(let text)? = result.rows.first?[0] else { return 0 }
    return Int(text) ?? 0
}
