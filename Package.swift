// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Chorus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chorus", targets: ["chorus"]),
        .library(name: "ChorusIO", targets: ["ChorusIO"]),
        .library(name: "ChorusSim", targets: ["ChorusSim"]),
        .library(name: "ChorusJSON", targets: ["ChorusJSON"]),
        .library(name: "Chorus", targets: ["Chorus"]),
        .library(name: "ChorusTrace", targets: ["ChorusTrace"]),
        .library(name: "ChorusCoordination", targets: ["ChorusCoordination"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
    ],
    targets: [
        .systemLibrary(name: "CUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // The PostgreSQL trace store's client on libpq (see PostgresConnection.swift).
        .target(name: "PostgresClient", dependencies: ["CPQ"]),
        .target(
            name: "ChorusIO",
            dependencies: ["CUV", "CCurl", .product(name: "HTTPTypes", package: "swift-http-types")]
        ),
        .target(name: "ChorusJSON"),
        .target(name: "ChorusSim", dependencies: ["ChorusIO", "ChorusJSON"]),
        // The trace writer's prepared statements on SQLite's C API (see RowInsert.swift);
        // ChorusTrace itself speaks to SQLite through GRDB only.
        .target(
            name: "SQLiteStatement",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift")]
        ),
        .target(
            name: "ChorusTrace",
            dependencies: [
                "ChorusJSON", "SQLiteStatement", "PostgresClient", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // What processes sharing a trace database coordinate through it: slots, rate windows,
        // budgets, the step table and the run queue (see Coordination.swift).
        .target(
            name: "ChorusCoordination",
            dependencies: ["ChorusTrace", "PostgresClient", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "Chorus",
            dependencies: [
                "ChorusIO", "ChorusJSON", "ChorusTrace", "ChorusCoordination",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        .executableTarget(
            name: "chorus",
            dependencies: [
                "ChorusIO", "ChorusSim", "Chorus", "ChorusTrace", "ChorusCoordination", "ChorusJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "chorus-fuzz", dependencies: ["Chorus"]),
        .executableTarget(
            name: "chorus-bench",
            dependencies: [
                "ChorusIO", "ChorusJSON", "ChorusTrace", "Chorus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        .testTarget(name: "ChorusJSONTests", dependencies: ["ChorusJSON"]),
        .testTarget(
            name: "ChorusTests",
            dependencies: [
                "Chorus", "ChorusIO", "ChorusJSON", "ChorusSim", "ChorusTrace", "ChorusCoordination", "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "ChorusIOTests", dependencies: ["ChorusIO", "ChorusSim", "ChorusJSON"]),
        .testTarget(name: "ChorusSimTests", dependencies: ["ChorusIO", "ChorusSim", "ChorusJSON"]),
        .testTarget(name: "ChorusTraceTests", dependencies: ["ChorusTrace", "ChorusJSON", "PostgresClient", "TestSupport"]),
        .testTarget(
            name: "ChorusCoordinationTests", dependencies: ["ChorusCoordination", "ChorusTrace", "ChorusJSON", "PostgresClient", "TestSupport"]),
        .testTarget(name: "ChorusCLITests", dependencies: ["chorus", "ChorusJSON", "ChorusTrace", "ChorusCoordination", "TestSupport"]),
        // How every test starts a child process (posix_spawn, nothing inherited).
        .target(name: "TestSupport", dependencies: ["PostgresClient", "ChorusTrace"], path: "Tests/TestSupport"),
    ],
    swiftLanguageModes: [.v6]
)
