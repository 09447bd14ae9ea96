import CCurl
import CUV

/// A curl multi handle and the libuv handles that drive it: what curl's socket and timer
/// callbacks, the `uv_poll` handles and the `uv_timer` point at.
///
/// C holds this object, never the `HTTPClient`: it is retained once when created and
/// released in the timer's close callback, so no callback can reach freed memory. The
/// client is only a weak reference; once it is gone, readiness is ignored until `close()`
/// (which a client dropped without `shutdown()` schedules from its `deinit`) frees
/// everything. Loop-confined: every method runs on the loop thread.
final class CurlMulti: @unchecked Sendable {
    let loop: EventLoop
    /// The `CURLM *`.
    let handle: UnsafeMutableRawPointer
    private let timer: UnsafeMutablePointer<uv_timer_t>
    /// Who completes transfers when curl has work; nil once the client is gone.
    weak var client: HTTPClient?
    private var isClosed = false

    /// A multi handle with `configuration`'s connection limits. Throws when curl cannot be
    /// initialised or refuses an option (out of memory, say), never traps.
    init(loop: EventLoop, configuration: HTTPClient.Configuration) throws(HTTPClientError) {
        guard Curl.initialized else {
            throw HTTPClientError(.transport, request: "curl_global_init", detail: "libcurl could not be initialised")
        }
        guard let multi = curl_multi_init() else {
            throw HTTPClientError(.transport, request: "curl_multi_init", detail: "libcurl could not create a multi handle")
        }
        self.loop = loop
        handle = multi
        timer = .allocate(capacity: 1)
        let me = Unmanaged.passUnretained(self).toOpaque()
        do throws(HTTPClientError) {
            try Curl.check(
                ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost),
                "CURLMOPT_MAX_HOST_CONNECTIONS")
            try Curl.check(
                ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, configuration.maxIdleConnections),
                "CURLMOPT_MAXCONNECTS")
            try Curl.check(ccurl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me), "CURLMOPT_SOCKETDATA")
            try Curl.check(ccurl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me), "CURLMOPT_TIMERDATA")
            try Curl.check(
                ccurl_multi_setopt_socket_cb(multi) { _, socket, what, user, socketData in
                    Unmanaged<CurlMulti>.fromOpaque(user!).takeUnretainedValue().socketChanged(socket, what: what, poll: socketData)
                }, "CURLMOPT_SOCKETFUNCTION")
            try Curl.check(
                ccurl_multi_setopt_timer_cb(multi) { _, timeoutMs, user in
                    Unmanaged<CurlMulti>.fromOpaque(user!).takeUnretainedValue().timerChanged(timeoutMs)
                }, "CURLMOPT_TIMERFUNCTION")
            // uv_timer_init only fills in the handle (libuv src/timer.c returns 0).
            let code = uv_timer_init(loop.uvLoop, timer)
            if code != 0 { throw HTTPClientError(.transport, request: "uv_timer_init", detail: UV.error(code, "uv_timer_init").description) }
        } catch {
            curl_multi_cleanup(multi)
            timer.deallocate()
            isClosed = true
            throw error
        }
        timer.pointee.data = Unmanaged.passRetained(self).toOpaque()  // released when the timer closes
    }

    /// Frees the multi handle (curl closes its connections, which removes their poll handles
    /// through `socketChanged`) and the timer. Remove every transfer first. Idempotent.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        curl_multi_cleanup(handle)
        uv_timer_stop(timer)
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self)) { timer in
            Unmanaged<CurlMulti>.fromOpaque(timer!.pointee.data).release()
            timer!.deallocate()
        }
    }

    // MARK: curl → libuv (curl's callbacks; they never trap and report failure as -1)

    private func socketChanged(_ socket: curl_socket_t, what: Int32, poll: UnsafeMutableRawPointer?) -> Int32 {
        var handle = poll?.assumingMemoryBound(to: uv_poll_t.self)
        if what == CURL_POLL_REMOVE {
            if let handle {
                uv_poll_stop(handle)
                uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self), UV.freeOnClose)
                curl_multi_assign(self.handle, socket, nil)
            }
            return 0
        }
        if handle == nil {
            let created = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
            guard uv_poll_init_socket(loop.uvLoop, created, socket) == 0 else {
                created.deallocate()
                return -1  // curl fails the transfers on this socket
            }
            created.pointee.data = Unmanaged.passUnretained(self).toOpaque()  // the poll closes before the multi goes
            guard curl_multi_assign(self.handle, socket, created) == CURLM_OK else {
                uv_close(UnsafeMutableRawPointer(created).assumingMemoryBound(to: uv_handle_t.self), UV.freeOnClose)
                return -1
            }
            handle = created
        }
        var events: Int32 = 0
        if what == CURL_POLL_IN || what == CURL_POLL_INOUT { events |= Int32(UV_READABLE.rawValue) }
        if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { events |= Int32(UV_WRITABLE.rawValue) }
        let code = uv_poll_start(handle, events) { handle, status, events in
            let multi = Unmanaged<CurlMulti>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            guard let client = multi.client else {
                uv_poll_stop(handle)  // the client is gone and close() is queued: stop reporting readiness
                return
            }
            var fd: uv_os_fd_t = -1
            _ = uv_fileno(UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_handle_t.self), &fd)  // a poll handle always has one
            var flags: Int32 = 0
            if status < 0 {
                flags = CURL_CSELECT_ERR
            } else {
                if events & Int32(UV_READABLE.rawValue) != 0 { flags |= CURL_CSELECT_IN }
                if events & Int32(UV_WRITABLE.rawValue) != 0 { flags |= CURL_CSELECT_OUT }
            }
            client.assumeIsolated { $0.socketAction(fd, flags) }
        }
        return code == 0 ? 0 : -1
    }

    private func timerChanged(_ timeoutMs: Int) -> Int32 {
        if timeoutMs < 0 {
            uv_timer_stop(timer)
            return 0
        }
        // curl asks for 0 to mean "act now"; doing that from inside its own callback
        // is not allowed, so a 0 ms timer defers it to the next loop iteration.
        let code = uv_timer_start(
            timer,
            { timer in
                let multi = Unmanaged<CurlMulti>.fromOpaque(timer!.pointee.data).takeUnretainedValue()
                multi.client?.assumeIsolated { $0.socketAction(CURL_SOCKET_TIMEOUT, 0) }
            }, UInt64(timeoutMs), 0)
        return code == 0 ? 0 : -1
    }
}
