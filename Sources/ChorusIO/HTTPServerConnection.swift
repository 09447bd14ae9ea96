import CUV
import Glibc
import HTTPTypes

/// One accepted TCP connection of `HTTPServer`: parses requests, hands them to the
/// handler one at a time (pipelined ones wait their turn), writes the responses.
/// Retained by its handle's `data` from `start()` until the close callback.
final class HTTPServerConnection {
    let server: HTTPServer
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private var parser = HTTPRequestParser()
    private var queued: [HTTPServerRequest] = []
    private var current: HTTPResponseWriter?
    private(set) var isClosed = false
    private var isClosing = false

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    init(server: HTTPServer, handle: UnsafeMutablePointer<uv_tcp_t>) {
        self.server = server
        self.handle = handle
    }

    func start() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_read_start(
            stream,
            { handle, _, buf in
                let connection = Unmanaged<HTTPServerConnection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
                let buffer = connection.server.readBuffer
                buf!.pointee = uv_buf_init(buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(buffer.count))
            },
            { stream, nread, buf in
                let connection = Unmanaged<HTTPServerConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
                if nread > 0 {
                    connection.didRead(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
                } else if nread < 0 {
                    connection.close()  // EOF or reset: an unanswered request is abandoned
                }
            })
    }

    private func didRead(_ bytes: UnsafeRawBufferPointer) {
        parser.feed(bytes)
        do {
            while let request = try parser.next() {
                queued.append(request)
            }
        } catch {
            queued.removeAll()
            if current == nil { fail(error) } else { pendingFailure = error }
            return
        }
        dispatchNext()
    }

    private var pendingFailure: HTTPRequestParser.Failure?

    private func fail(_ failure: HTTPRequestParser.Failure) {
        let writer = HTTPResponseWriter(connection: self, keepAlive: false)
        current = writer
        let body = Array("{\"error\":{\"message\":\"\(failure.message)\",\"type\":\"invalid_request_error\"}}".utf8)
        writer.respond(status: .init(code: failure.status), headerFields: [.contentType: "application/json"], body: body)
    }

    private func dispatchNext() {
        guard current == nil, !isClosing else { return }
        if queued.isEmpty {
            if let pendingFailure { self.pendingFailure = nil; fail(pendingFailure) }
            return
        }
        let request = queued.removeFirst()
        let writer = HTTPResponseWriter(connection: self, keepAlive: request.keepAlive)
        current = writer
        server.handler(request, writer)
    }

    /// The current response ended; move on to the next request or close.
    func responseEnded(_ writer: HTTPResponseWriter, keepAlive: Bool) {
        guard writer === current else { return }
        current = nil
        if keepAlive { dispatchNext() } else { shutdownAndClose() }
    }

    // MARK: writing

    /// Writes bytes, directly when the socket takes them, else through a queued uv_write.
    func write(_ bytes: [UInt8]) {
        guard !isClosing, !bytes.isEmpty else { return }
        let written: Int = bytes.withUnsafeBytes { raw in
            var buf = uv_buf_init(
                UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)),
                UInt32(raw.count))
            return Int(uv_try_write(stream, &buf, 1))
        }
        if written == bytes.count { return }
        if written < 0 && written != Int(UV_EAGAIN.rawValue) {
            close()
            return
        }
        // Out of memory or a refused write: drop this connection, not the process.
        if UV.writeCopy(bytes[max(0, written)...], to: stream) != 0 { close() }
    }

    /// Closes after queued writes have gone out (uv_shutdown waits for them).
    func shutdownAndClose() {
        guard !isClosing else { return }
        isClosing = true
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let code = uv_shutdown(request, stream) { request, _ in
            let connection = Unmanaged<HTTPServerConnection>.fromOpaque(request!.pointee.data).takeUnretainedValue()
            request!.deallocate()
            connection.closeHandle()
        }
        if code != 0 {
            request.deallocate()
            closeHandle()
        }
    }

    /// Closes at once, dropping unsent bytes.
    func close() {
        isClosing = true
        closeHandle()
    }

    private func closeHandle() {
        guard !isClosed else { return }
        isClosed = true
        queued.removeAll()
        let abandoned = current
        current = nil
        abandoned?.connectionClosed()
        server.connectionClosed()
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let connection = Unmanaged<HTTPServerConnection>.fromOpaque(handle!.pointee.data)
            handle!.deallocate()
            connection.release()
        }
    }
}
