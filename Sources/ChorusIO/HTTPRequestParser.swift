import HTTPTypes

/// A request as the server received it.
public struct HTTPServerRequest: Sendable {
    /// The request method as sent (`GET`, `POST`, …).
    public var method: String
    /// The request target: path and query, as sent.
    public var target: String
    /// The header fields as sent.
    public var headerFields: HTTPFields
    /// The body (Content-Length bytes; empty when there is none).
    public var body: [UInt8]
    /// Whether the client wants the connection kept open after the response.
    public var keepAlive: Bool

    /// The target without its query string.
    public var path: Substring {
        target.firstIndex(of: "?").map { target[..<$0] } ?? Substring(target)
    }
}

/// Incremental HTTP/1.1 request parser for the loop's small server.
///
/// Written by hand because the parsers in the Swift ecosystem (NIO's llhttp) come tied
/// to their own event loop; the simulator needs only request line, headers and a
/// Content-Length body, so this stays small. Chunked request bodies are refused (501).
struct HTTPRequestParser {
    /// Why a request could not be parsed; each maps to a status the server answers with.
    enum Failure: Error, Equatable {
        case malformed(String)
        case headTooLarge
        case bodyTooLarge
        case chunkedBodyUnsupported

        var status: Int {
            switch self {
            case .malformed: return 400
            case .headTooLarge: return 431
            case .bodyTooLarge: return 413
            case .chunkedBodyUnsupported: return 501
            }
        }

        var message: String {
            switch self {
            case .malformed(let what): return "malformed request: \(what)"
            case .headTooLarge: return "request head larger than \(HTTPRequestParser.maxHeadBytes) bytes"
            case .bodyTooLarge: return "request body larger than \(HTTPRequestParser.maxBodyBytes) bytes"
            case .chunkedBodyUnsupported: return "chunked request bodies are not supported; send Content-Length"
            }
        }
    }

    static let maxHeadBytes = 64 * 1024
    static let maxBodyBytes = 32 * 1024 * 1024

    private var buffer: [UInt8] = []
    private var start = 0

    /// Adds received bytes.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet consumed by a complete request.
    var bufferedCount: Int { buffer.count - start }

    /// The next complete request, nil if more bytes are needed, or a failure.
    mutating func next() throws(Failure) -> HTTPServerRequest? {
        let available = buffer.count - start
        guard available > 0 else { return nil }
        guard let headEnd = findHeadEnd() else {
            if available > Self.maxHeadBytes { throw .headTooLarge }
            return nil
        }
        if headEnd - start > Self.maxHeadBytes { throw .headTooLarge }
        var request = try parseHead(buffer[start..<headEnd])
        let contentLength = try bodyLength(request.headerFields)
        let bodyStart = headEnd + 4
        guard buffer.count - bodyStart >= contentLength else { return nil }
        request.body = Array(buffer[bodyStart..<(bodyStart + contentLength)])
        start = bodyStart + contentLength
        if start > 1 << 16 && start * 2 > buffer.count {  // compact now and then
            buffer.removeFirst(start)
            start = 0
        }
        return request
    }

    private func findHeadEnd() -> Int? {
        buffer.withUnsafeBufferPointer { bytes in
            var i = start
            let end = bytes.count - 3
            while i < end {
                if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { return i }
                i += 1
            }
            return nil
        }
    }

    private func parseHead(_ head: ArraySlice<UInt8>) throws(Failure) -> HTTPServerRequest {
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).makeIterator()
        guard let requestLine = lines.next() else { throw .malformed("empty request line") }
        let parts = requestLine.split(separator: 32)
        guard parts.count == 3 else { throw .malformed("request line must be METHOD TARGET VERSION") }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        var version = String(decoding: parts[2], as: UTF8.self)
        if version.hasSuffix("\r") { version.removeLast() }
        guard method.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }), target.hasPrefix("/") || target == "*" else {
            throw .malformed("bad method or target")
        }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { throw .malformed("unsupported version \(version)") }
        var fields = HTTPFields()
        while var line = lines.next() {
            if line.last == 13 { line = line.dropLast() }
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")),
                let name = HTTPField.Name(String(decoding: line[line.startIndex..<colon], as: UTF8.self))
            else {
                throw .malformed("bad header line")
            }
            var value = line[(colon + 1)...]
            while let c = value.first, c == 32 || c == 9 { value = value.dropFirst() }
            while let c = value.last, c == 32 || c == 9 { value = value.dropLast() }
            fields.append(HTTPField(name: name, value: String(decoding: value, as: UTF8.self)))
        }
        let connection = fields[.connection]?.lowercased()
        let keepAlive = version == "HTTP/1.1" ? connection != "close" : connection == "keep-alive"
        return HTTPServerRequest(method: method, target: target, headerFields: fields, body: [], keepAlive: keepAlive)
    }

    private func bodyLength(_ fields: HTTPFields) throws(Failure) -> Int {
        if fields[.transferEncoding] != nil { throw .chunkedBodyUnsupported }
        guard let value = fields[.contentLength] else { return 0 }
        guard let length = Int(value), length >= 0 else { throw .malformed("bad Content-Length") }
        if length > Self.maxBodyBytes { throw .bodyTooLarge }
        return length
    }
}
