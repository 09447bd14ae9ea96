import ChorusIO
import Foundation
import HTTPTypes

/// Where and how spans are sent: OTLP/HTTP, protobuf (the protocol's default) or JSON,
/// configured as every OpenTelemetry SDK is, by the standard variables.
public struct OTLPConfiguration: Sendable {
    /// How spans are encoded on the wire (`OTEL_EXPORTER_OTLP_PROTOCOL`): `http/protobuf`, the
    /// protocol's default, or `http/json`.
    public enum Encoding: String, Sendable {
        /// `http/protobuf`: binary, what receivers expect by default.
        case protobuf = "http/protobuf"
        /// `http/json`: the same messages as JSON.
        case json = "http/json"
    }

    /// The traces URL (`…/v1/traces`).
    public var endpoint: String
    /// Sent with every request (an API key, often): never printed or recorded.
    public var headers: [(name: String, value: String)]
    /// Protobuf or JSON.
    public var encoding: Encoding
    /// `service.name` of the resource.
    public var serviceName: String
    /// Limit on one export request.
    public var timeout: Duration = .seconds(10)

    /// A configuration sending to `endpoint` (the full traces URL).
    public init(endpoint: String, headers: [(name: String, value: String)] = [], encoding: Encoding = .protobuf, serviceName: String = "chorus") {
        self.endpoint = endpoint
        self.headers = headers
        self.encoding = encoding
        self.serviceName = serviceName
    }

    /// From `endpoint` (a base URL, `/v1/traces` appended unless it is there) or else the
    /// environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base), `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`
    /// (`k=v,k2=v2`, values percent-decoded), `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`
    /// (`http/protobuf` or `http/json`) and `OTEL_SERVICE_NAME`. Nil when no endpoint is set;
    /// the error names the variable and what was expected.
    public static func resolve(
        endpoint: String?, encoding: Encoding? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(OTLPError) -> OTLPConfiguration? {
        let url: String
        if let endpoint {
            url = Self.traces(endpoint)
        } else if let traces = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !traces.isEmpty {
            url = traces
        } else if let base = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !base.isEmpty {
            url = Self.traces(base)
        } else {
            return nil
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), URLComponents(string: url)?.host?.isEmpty == false else {
            throw OTLPError("OTLP endpoint \(HTTPClientRequest.redact(url)): expected an http:// or https:// URL")
        }
        var resolvedEncoding = encoding ?? .protobuf
        if encoding == nil, let text = environment["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] ?? environment["OTEL_EXPORTER_OTLP_PROTOCOL"] {
            guard let parsed = Encoding(rawValue: text) else {
                throw OTLPError("OTEL_EXPORTER_OTLP_PROTOCOL=\(text): chorus sends http/protobuf or http/json (not grpc)")
            }
            resolvedEncoding = parsed
        }
        var headers: [(String, String)] = []
        for variable in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            guard let text = environment[variable], !text.isEmpty else { continue }
            for pair in text.split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingWhitespace }
                guard parts.count == 2, !parts[0].isEmpty, HTTPField.Name(parts[0]) != nil else {
                    // The pair may hold a key: name only its position.
                    throw OTLPError("\(variable): entry \(headers.count + 1) is not name=value")
                }
                headers.append((parts[0], parts[1].removingPercentEncoding ?? parts[1]))
            }
        }
        let service = environment["OTEL_SERVICE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "chorus"
        return OTLPConfiguration(endpoint: url, headers: headers, encoding: resolvedEncoding, serviceName: service)
    }

    private static func traces(_ base: String) -> String {
        var url = base
        while url.hasSuffix("/") { url.removeLast() }
        return url.hasSuffix("/v1/traces") ? url : url + "/v1/traces"
    }
}

/// Why spans could not be exported, one line (no header values, no query strings).
public struct OTLPError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// Sends spans to an OTLP/HTTP receiver in requests of at most `batchSize` spans.
public struct OTLPExporter: Sendable {
    /// Where and how it sends.
    public let configuration: OTLPConfiguration
    let client: HTTPClient
    /// OTLP's default maximum export batch.
    public var batchSize = 512
    /// Limit on one request (the configuration's unless shortened).
    public var timeout: Duration

    /// An exporter sending through `client` (the runtime's, or one of the CLI's).
    public init(configuration: OTLPConfiguration, client: HTTPClient) {
        self.configuration = configuration
        self.client = client
        timeout = configuration.timeout
    }

    /// The request body for `spans` in the configured encoding.
    public func body(_ spans: [TelemetrySpan]) -> [UInt8] {
        let resource = OTLPTraces.resource(serviceName: configuration.serviceName)
        switch configuration.encoding {
        case .protobuf: return OTLPTraces.protobuf(spans, resource: resource)
        case .json: return OTLPTraces.json(spans, resource: resource).serialized()
        }
    }

    /// Exports `spans`; throws at the first request the receiver refuses or cannot take.
    public func export(_ spans: [TelemetrySpan]) async throws(OTLPError) {
        var start = 0
        while start < spans.count {
            let batch = Array(spans[start..<min(spans.count, start + batchSize)])
            start += batch.count
            try await send(batch)
        }
    }

    private func send(_ batch: [TelemetrySpan]) async throws(OTLPError) {
        var fields: HTTPFields = [.contentType: configuration.encoding == .protobuf ? "application/x-protobuf" : "application/json"]
        for header in configuration.headers { if let name = HTTPField.Name(header.name) { fields[name] = header.value } }
        let request = HTTPClientRequest(
            method: .post, url: configuration.endpoint, headerFields: fields, body: body(batch),
            timeout: timeout, connectTimeout: min(timeout, .seconds(5)))
        let target = HTTPClientRequest.redact(configuration.endpoint)
        do {
            let response = try await client.execute(request)
            guard (200..<300).contains(response.status.code) else {
                let text = String(decoding: response.body.prefix(200), as: UTF8.self)
                throw OTLPError("\(target): HTTP \(response.status.code): \(text)")
            }
        } catch let error as OTLPError {
            throw error
        } catch {
            // The client's errors name the method and URL (without its query) already.
            throw OTLPError("\(error)")
        }
    }
}
