// swift-tools-version: 6.1
import PackageDescription

// An HTTP endpoint that runs a Chorus workflow per request: Chorus as a library in a
// Hummingbird server. It depends on Chorus by path, so it builds against this checkout;
// scripts/test builds it and CLITests' TriageServerExampleTests exercises it.
let package = Package(
    name: "triage-server",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Chorus", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        .executableTarget(
            name: "TriageServer",
            dependencies: [
                .product(name: "Chorus", package: "Chorus"),
                .product(name: "ChorusTrace", package: "Chorus"),
                .product(name: "ChorusJSON", package: "Chorus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ]
)
