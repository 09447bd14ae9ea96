import CUV
import Glibc
import HTTPTypes

/// A small HTTP/1.1 server on the event loop: keep-alive, Content-Length and chunked
/// responses, pipelined requests answered in order. Only as big as `chorus sim` needs.
public final class HTTPServer: @unchecked Sendable {
    /// Handles one request on the loop thread. Answer through the writer, now or later
    /// (from a timer, say); a request never answered holds its connection open.
    public typealias Handler = (HTTPServerRequest, HTTPResponseWriter) -> Void

    let loop: EventLoop
    let handler: Handler
    private let listener = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
    /// One read buffer for all connections: reads are handled synchronously on the loop.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// The port the server listens on (useful after binding port 0).
    public private(set) var port: Int = 0
    /// Open connections right now. Loop thread only.
    public private(set) var connectionCount = 0
    /// The most connections open at once since start. Loop thread only.
    public private(set) var peakConnectionCount = 0
    private var isClosed = false

    private init(loop: EventLoop, handler: @escaping Handler) {
        self.loop = loop
        self.handler = handler
    }

    /// Binds `host:port` (port 0 picks a free one) and starts accepting. Call on the loop
    /// thread. Throws `IOError` when the address is in use or cannot be bound.
    public static func start(
        on loop: EventLoop, host: String = "127.0.0.1", port: Int,
        backlog: Int32 = 4096, handler: @escaping Handler
    ) throws(IOError) -> HTTPServer {
        loop.preconditionInEventLoop()
        _ = FileDescriptorLimit.raised
        let server = HTTPServer(loop: loop, handler: handler)
        try server.listen(host: host, port: port, backlog: backlog)
        return server
    }

    private func listen(host: String, port: Int, backlog: Int32) throws(IOError) {
        try UV.check(uv_tcp_init(loop.uvLoop, listener), "uv_tcp_init")
        listener.pointee.data = Unmanaged.passRetained(self).toOpaque()  // released on close
        var storage = sockaddr_storage()
        let code: Int32 = withUnsafeMutablePointer(to: &storage) { pointer in
            let address = UnsafeMutableRawPointer(pointer)
            var result =
                host.contains(":")
                ? uv_ip6_addr(host, Int32(port), address.assumingMemoryBound(to: sockaddr_in6.self))
                : uv_ip4_addr(host, Int32(port), address.assumingMemoryBound(to: sockaddr_in.self))
            if result == 0 { result = uv_tcp_bind(listener, address.assumingMemoryBound(to: sockaddr.self), 0) }
            return result
        }
        if code != 0 { closeListener(); throw UV.error(code, "bind \(host):\(port)") }
        let stream = UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self)
        let listenCode = uv_listen(stream, backlog) { stream, status in
            let server = Unmanaged<HTTPServer>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            if status == 0 { server.accept() }
        }
        if listenCode != 0 { closeListener(); throw UV.error(listenCode, "listen \(host):\(port)") }
        var bound = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &bound) { pointer in
            let address = UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr.self)
            _ = uv_tcp_getsockname(listener, address, &length)
            if Int32(pointer.pointee.ss_family) == AF_INET6 {
                self.port = Int(UInt16(bigEndian: UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port))
            } else {
                self.port = Int(UInt16(bigEndian: UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port))
            }
        }
    }

    private func accept() {
        let client = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        // Under libuv's accept callback: a failure drops this one connection, never traps.
        guard uv_tcp_init(loop.uvLoop, client) == 0 else {
            client.deallocate()
            return
        }
        let stream = UnsafeMutableRawPointer(client).assumingMemoryBound(to: uv_stream_t.self)
        let listenerStream = UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self)
        guard uv_accept(listenerStream, stream) == 0 else {
            uv_close(UnsafeMutableRawPointer(client).assumingMemoryBound(to: uv_handle_t.self), UV.freeOnClose)
            return
        }
        _ = uv_tcp_nodelay(client, 1)  // only latency depends on it
        connectionCount += 1
        peakConnectionCount = max(peakConnectionCount, connectionCount)
        HTTPServerConnection(server: self, handle: client).start()
    }

    func connectionClosed() {
        connectionCount -= 1
    }

    /// Stops accepting connections. Open connections stay until their clients close them.
    /// Call on the loop thread; idempotent.
    public func close() {
        loop.preconditionInEventLoop()
        closeListener()
    }

    private func closeListener() {
        guard !isClosed else { return }
        isClosed = true
        uv_close(UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let server = Unmanaged<HTTPServer>.fromOpaque(handle!.pointee.data)
            handle!.deallocate()
            server.release()
        }
    }

    deinit {
        readBuffer.deallocate()
    }
}
