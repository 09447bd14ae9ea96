import ChorusJSON

/// Spans as an OTLP `ExportTraceServiceRequest`: protobuf (OTLP/HTTP's default, the only
/// encoding Arize Phoenix accepts) or OTLP/JSON.
///
/// Why not swift-otel (with swift-distributed-tracing), the Swift server ecosystem's own:
/// measured on this 2-core machine (2026-12-02), a package whose only code bootstraps
/// swift-otel 1.6.0 with the OTLP/HTTP trait alone took 684 s to build in release (693 s of
/// CPU: SwiftNIO, nio-ssl, swift-certificates, AsyncHTTPClient, swift-protobuf and their
/// dependencies, 26 checkouts), and its binary is 148 MB — more than all of chorus (120 MB).
/// CI builds from a clean clone every time, so that is about six more minutes a run; and
/// swift-otel's batch processor neither reports how many spans it dropped nor writes a
/// file, both of which the CLI needs (`otlp: … dropped`, `runs export -o`). This exporter
/// rides Chorus's own libcurl client on an event loop of its own and adds nothing to build.
///
/// The protobuf is written here by hand. The alternatives cost more than the 9 messages'
/// wire format: swift-protobuf's generated types need protoc and protoc-gen-swift (the
/// plugin's first build took 9.5 minutes on this kind of machine) or about 3,000 lines of
/// generated code committed; swift-otel's own generated copies are internal to its module.
/// The bytes are checked by the official Python `opentelemetry-proto` package (a decoder
/// written by others) and by a real receiver in the tests.
public enum OTLPTraces {
    /// The resource every span belongs to: `service.name` and the SDK's name.
    public static func resource(serviceName: String) -> [(key: String, value: TelemetrySpan.Value)] {
        [("service.name", .string(serviceName)), ("telemetry.sdk.name", .string("chorus")), ("telemetry.sdk.language", .string("swift"))]
    }

    static let scopeName = "chorus"

    // MARK: protobuf

    /// The `ExportTraceServiceRequest` bytes.
    public static func protobuf(_ spans: [TelemetrySpan], resource: [(key: String, value: TelemetrySpan.Value)]) -> [UInt8] {
        var scope = ProtobufWriter()
        scope.message(1) { $0.string(1, scopeName) }
        for span in spans { scope.message(2) { encode(span, into: &$0) } }
        var resourceSpans = ProtobufWriter()
        resourceSpans.message(1) { writer in for attribute in resource { writer.message(1) { keyValue(attribute, into: &$0) } } }
        resourceSpans.bytesField(2, scope.bytes)
        var request = ProtobufWriter()
        request.bytesField(1, resourceSpans.bytes)
        return request.bytes
    }

    private static func encode(_ span: TelemetrySpan, into writer: inout ProtobufWriter) {
        writer.bytesField(1, span.traceID)
        writer.bytesField(2, span.spanID)
        if let parent = span.parentSpanID { writer.bytesField(4, parent) }
        writer.string(5, span.name)
        writer.varintField(6, UInt64(span.kind.rawValue))
        writer.fixed64(7, span.startNanos)
        writer.fixed64(8, max(span.startNanos, span.endNanos))
        for attribute in span.attributes { writer.message(9) { keyValue(attribute, into: &$0) } }
        writer.message(15) { status in
            if let error = span.error { status.string(2, error) }
            status.varintField(3, statusCode(span.status))
        }
    }

    /// OTLP's `Status.StatusCode`: UNSET 0, OK 1, ERROR 2.
    private static func statusCode(_ status: TelemetrySpan.Status) -> UInt64 {
        switch status {
        case .unset: 0
        case .ok: 1
        case .error: 2
        }
    }

    private static func keyValue(_ attribute: (key: String, value: TelemetrySpan.Value), into writer: inout ProtobufWriter) {
        writer.string(1, attribute.key)
        writer.message(2) { anyValue(attribute.value, into: &$0) }
    }

    private static func anyValue(_ value: TelemetrySpan.Value, into writer: inout ProtobufWriter) {
        switch value {
        case .string(let text): writer.string(1, text, always: true)
        case .bool(let flag): writer.varintField(2, flag ? 1 : 0, always: true)
        case .int(let number): writer.varintField(3, UInt64(bitPattern: number), always: true)
        case .double(let number): writer.fixed64(4, number.bitPattern, always: true)
        case .strings(let texts):
            writer.message(5) { array in for text in texts { array.message(1) { $0.string(1, text, always: true) } } }
        }
    }

    // MARK: JSON

    /// The OTLP/JSON form: ids in hex, 64-bit integers as strings, enums as numbers.
    public static func json(_ spans: [TelemetrySpan], resource: [(key: String, value: TelemetrySpan.Value)]) -> JSONValue {
        let hex = { (bytes: [UInt8]) in JSONValue.string(bytes.map { String(format: "%02x", $0) }.joined()) }
        let spanObjects: [JSONValue] = spans.map { span in
            var object: [String: JSONValue] = [
                "traceId": hex(span.traceID), "spanId": hex(span.spanID), "name": .string(span.name),
                "kind": .number(Double(span.kind.rawValue)), "startTimeUnixNano": .string(String(span.startNanos)),
                "endTimeUnixNano": .string(String(max(span.startNanos, span.endNanos))),
                "attributes": .array(span.attributes.map(jsonKeyValue)),
                "status": span.error.map { ["code": 2, "message": .string($0)] } ?? ["code": .number(Double(statusCode(span.status)))],
            ]
            if let parent = span.parentSpanID { object["parentSpanId"] = hex(parent) }
            return .object(object)
        }
        return [
            "resourceSpans": [
                [
                    "resource": ["attributes": .array(resource.map(jsonKeyValue))],
                    "scopeSpans": [["scope": ["name": .string(scopeName)], "spans": .array(spanObjects)]],
                ]
            ]
        ]
    }

    private static func jsonKeyValue(_ attribute: (key: String, value: TelemetrySpan.Value)) -> JSONValue {
        ["key": .string(attribute.key), "value": jsonValue(attribute.value)]
    }

    private static func jsonValue(_ value: TelemetrySpan.Value) -> JSONValue {
        switch value {
        case .string(let text): ["stringValue": .string(text)]
        case .bool(let flag): ["boolValue": .bool(flag)]
        case .int(let number): ["intValue": .string(String(number))]
        case .double(let number): ["doubleValue": .number(number)]
        case .strings(let texts): ["arrayValue": ["values": .array(texts.map { ["stringValue": .string($0)] })]]
        }
    }
}

/// Protocol Buffers' wire format, the four field kinds OTLP traces use.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    private mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    private mutating func tag(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    /// A varint field; zero is the default and left out unless `always` (a oneof member).
    mutating func varintField(_ field: Int, _ value: UInt64, always: Bool = false) {
        guard value != 0 || always else { return }
        tag(field, 0)
        varint(value)
    }

    mutating func fixed64(_ field: Int, _ value: UInt64, always: Bool = false) {
        guard value != 0 || always else { return }
        tag(field, 1)
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        varint(UInt64(value.count))
        bytes += value
    }

    mutating func string(_ field: Int, _ value: String, always: Bool = false) {
        guard !value.isEmpty || always else { return }
        bytesField(field, Array(value.utf8))
    }

    /// A nested message, written by `body`.
    mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var nested = ProtobufWriter()
        body(&nested)
        bytesField(field, nested.bytes)
    }
}
