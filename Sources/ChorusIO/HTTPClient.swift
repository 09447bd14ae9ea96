import CCurl
import CUV
import Glibc

/// An HTTP client on libcurl's multi-socket API, driven by the event loop's `uv_poll`
/// and `uv_timer` handles. Thousands of requests share one thread and reuse connections.
///
/// The actor runs on its loop's executor, so tasks on that loop call it without a hop,
/// and curl's callbacks (which libuv runs on the loop thread) enter it with `assumeIsolated`.
public actor HTTPClient {
    /// Connection limits for one client.
    public struct Configuration: Sendable {
        /// Open connections to one host at most; further requests wait inside curl.
        public var maxConnectionsPerHost: Int
        /// Idle connections kept for reuse.
        public var maxIdleConnections: Int

        /// Limits suited to a scheduler that caps concurrency itself.
        public init(maxConnectionsPerHost: Int = 1024, maxIdleConnections: Int = 1024) {
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.maxIdleConnections = maxIdleConnections
        }
    }

    /// The loop whose thread runs this client.
    public nonisolated let loop: EventLoop
    private nonisolated(unsafe) let multi: UnsafeMutableRawPointer
    private nonisolated(unsafe) let timer: UnsafeMutablePointer<uv_timer_t>
    private var isShutDown = false
    private let counter = TransferCounter()
    /// Reset easy handles kept for the next requests: curl_easy_init allocates and clears
    /// several kilobytes, which showed up as malloc churn under load.
    private var spareHandles: [UnsafeMutableRawPointer] = []
    private let maxSpareHandles: Int

    /// Transfer objects of this client still in memory. Zero once every request has
    /// completed and its caller has let go of it; anything else is a leak.
    public nonisolated var liveTransferObjects: Int { counter.live.load(ordering: .relaxed) }

    /// Every job of this actor runs on the event loop.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Creates a client on `loop`. Raises the open-file soft limit to the hard limit.
    /// Call on the loop thread (libuv handles may be created only there), for instance
    /// inside `loop.runBlocking { HTTPClient(loop: loop) }` or from a task on the loop.
    public init(loop: EventLoop, configuration: Configuration = .init()) {
        loop.preconditionInEventLoop()
        _ = Curl.initialized
        _ = FileDescriptorLimit.raised
        self.loop = loop
        maxSpareHandles = configuration.maxIdleConnections
        multi = curl_multi_init()!
        timer = .allocate(capacity: 1)
        let me = Unmanaged.passUnretained(self).toOpaque()
        Curl.check(ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost),
                   "CURLMOPT_MAX_HOST_CONNECTIONS")
        Curl.check(ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, configuration.maxIdleConnections),
                   "CURLMOPT_MAXCONNECTS")
        Curl.check(ccurl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me), "CURLMOPT_SOCKETDATA")
        Curl.check(ccurl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me), "CURLMOPT_TIMERDATA")
        Curl.check(ccurl_multi_setopt_socket_cb(multi) { _, socket, what, user, socketData in
            let client = Unmanaged<HTTPClient>.fromOpaque(user!).takeUnretainedValue()
            let poll = Int(bitPattern: socketData)  // an address, so that it may cross into the isolated closure
            return client.assumeIsolated { $0.socketChanged(socket, what: what, poll: UnsafeMutableRawPointer(bitPattern: poll)) }
        }, "CURLMOPT_SOCKETFUNCTION")
        Curl.check(ccurl_multi_setopt_timer_cb(multi) { _, timeoutMs, user in
            let client = Unmanaged<HTTPClient>.fromOpaque(user!).takeUnretainedValue()
            return client.assumeIsolated { $0.timerChanged(timeoutMs) }
        }, "CURLMOPT_TIMERFUNCTION")
        UV.check(uv_timer_init(loop.uvLoop, timer), "uv_timer_init")
        timer.pointee.data = me
    }

    /// Sends `request` and returns the whole response. Throws `HTTPClientError` for
    /// transport failures and for statuses of 400 or more (with the response attached).
    /// Cancelling the calling task removes the transfer.
    public func execute(_ request: HTTPClientRequest) async throws(HTTPClientError) -> HTTPClientResponse {
        try await run(request) { .buffered($0) }
    }

    /// Sends `request` and returns once the response head arrives; the body follows as
    /// chunks. A status of 400 or more throws `HTTPClientError.httpStatus` with the body.
    public func stream(_ request: HTTPClientRequest) async throws(HTTPClientError) -> HTTPStreamingResponse {
        try await run(request) { .streaming($0) }
    }

    private func run<T: Sendable>(
        _ request: HTTPClientRequest,
        _ waiter: (CheckedContinuation<Result<T, HTTPClientError>, Never>) -> Transfer.Waiter
    ) async throws(HTTPClientError) -> T {
        let box = TransferBox()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, HTTPClientError>, Never>) in
                let transfer = Transfer(request: request, waiter: waiter(continuation),
                                        easy: spareHandles.popLast() ?? curl_easy_init()!, counter: counter)
                box.transfer = transfer
                if box.cancelled || isShutDown {
                    transfer.finish(curlResult: nil)
                    return
                }
                if case .streaming = transfer.waiterKind {
                    let reference = WeakTransfer(transfer)  // weak: the transfer owns this closure
                    transfer.onStreamCancelled = { [self] in
                        loop.execute { if let transfer = reference.transfer { self.assumeIsolated { $0.cancel(transfer) } } }
                    }
                }
                add(transfer)
            }
        } onCancel: {
            loop.execute { [self] in
                assumeIsolated { client in
                    box.cancelled = true
                    if let transfer = box.transfer { client.cancel(transfer) }
                }
            }
        }
        return try result.get()
    }

    /// Requests in flight on this client right now.
    public var activeTransfers: Int { byIdentifier.count }

    /// Cancels every transfer and frees curl's and libuv's resources. The client cannot
    /// be used afterwards.
    public func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        for transfer in Array(byIdentifier.values) { cancel(transfer) }
        curl_multi_cleanup(multi)
        for easy in spareHandles { curl_easy_cleanup(easy) }
        spareHandles.removeAll()
        uv_timer_stop(timer)
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self), UV.freeOnClose)
    }

    // MARK: transfers

    private var byIdentifier: [ObjectIdentifier: Transfer] = [:]

    private func add(_ transfer: Transfer) {
        _ = Unmanaged.passRetained(transfer)  // released in complete()
        transfer.isAdded = true
        byIdentifier[ObjectIdentifier(transfer)] = transfer
        let code = curl_multi_add_handle(multi, transfer.easy)
        // Never a trap here: the transfer fails and its caller hears why.
        if code != CURLM_OK { complete(transfer, curlResult: CURLE_FAILED_INIT, multiError: code) }
    }

    private func cancel(_ transfer: Transfer) {
        guard transfer.isAdded else { return }
        complete(transfer, curlResult: nil)
    }

    /// Ends `transfer`. Runs under curl's and libuv's callbacks, so it never traps: a handle
    /// curl will not give back is simply not reused.
    private func complete(_ transfer: Transfer, curlResult: CURLcode?, multiError: CURLMcode? = nil) {
        guard transfer.isAdded else { return }
        transfer.isAdded = false
        byIdentifier[ObjectIdentifier(transfer)] = nil
        let removed = multiError == nil && curl_multi_remove_handle(multi, transfer.easy) == CURLM_OK
        transfer.finish(curlResult: curlResult)
        if removed && spareHandles.count < maxSpareHandles && !isShutDown {
            transfer.ownsHandle = false
            curl_easy_reset(transfer.easy)
            spareHandles.append(transfer.easy)
        }
        Unmanaged.passUnretained(transfer).release()
    }

    /// Reads curl's completion messages, all of them before removing any handle:
    /// curl_multi_remove_handle (7.88) walks the remaining message list, so removing while
    /// messages are queued costs O(n²) when thousands finish together (perf: 77% of CPU
    /// for 10,000 refused connections). Each `CURLMsg` is copied before its handle goes.
    private func drainCompletions() {
        var remaining: Int32 = 0
        var finished: [(easy: UnsafeMutableRawPointer, result: CURLcode)] = []
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            finished.append((easy, message.pointee.data.result))
        }
        for (easy, result) in finished {
            var privatePointer: UnsafeMutableRawPointer?
            _ = ccurl_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &privatePointer)
            let transfer = Unmanaged<Transfer>.fromOpaque(privatePointer!).takeUnretainedValue()
            complete(transfer, curlResult: result)
        }
    }

    private func socketAction(_ socket: curl_socket_t, _ flags: Int32) {
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, socket, flags, &running)
        drainCompletions()
    }

    // MARK: curl → libuv

    private func socketChanged(_ socket: curl_socket_t, what: Int32, poll: UnsafeMutableRawPointer?) -> Int32 {
        var handle = poll?.assumingMemoryBound(to: uv_poll_t.self)
        if what == CURL_POLL_REMOVE {
            if let handle {
                uv_poll_stop(handle)
                uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self), UV.freeOnClose)
                curl_multi_assign(multi, socket, nil)
            }
            return 0
        }
        if handle == nil {
            let created = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
            guard uv_poll_init_socket(loop.uvLoop, created, socket) == 0 else {
                created.deallocate()
                return -1  // curl fails the transfers on this socket
            }
            created.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            curl_multi_assign(multi, socket, created)
            handle = created
        }
        var events: Int32 = 0
        if what == CURL_POLL_IN || what == CURL_POLL_INOUT { events |= Int32(UV_READABLE.rawValue) }
        if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { events |= Int32(UV_WRITABLE.rawValue) }
        uv_poll_start(handle, events) { handle, status, events in
            let client = Unmanaged<HTTPClient>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            var fd: uv_os_fd_t = -1
            uv_fileno(UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_handle_t.self), &fd)
            var flags: Int32 = 0
            if status < 0 { flags = CURL_CSELECT_ERR } else {
                if events & Int32(UV_READABLE.rawValue) != 0 { flags |= CURL_CSELECT_IN }
                if events & Int32(UV_WRITABLE.rawValue) != 0 { flags |= CURL_CSELECT_OUT }
            }
            client.assumeIsolated { $0.socketAction(fd, flags) }
        }
        return 0
    }

    private func timerChanged(_ timeoutMs: Int) -> Int32 {
        if timeoutMs < 0 {
            uv_timer_stop(timer)
        } else {
            // curl asks for 0 to mean "act now"; doing that from inside its own callback
            // is not allowed, so a 0 ms timer defers it to the next loop iteration.
            uv_timer_start(timer, { timer in
                let client = Unmanaged<HTTPClient>.fromOpaque(timer!.pointee.data).takeUnretainedValue()
                client.assumeIsolated { $0.socketAction(CURL_SOCKET_TIMEOUT, 0) }
            }, UInt64(timeoutMs), 0)
        }
        return 0
    }
}

/// A weak reference to a transfer that may cross to another thread.
private final class WeakTransfer: @unchecked Sendable {
    weak var transfer: Transfer?
    init(_ transfer: Transfer) { self.transfer = transfer }
}

/// Shares one transfer between the request path and its cancellation handler.
private final class TransferBox: @unchecked Sendable {
    var transfer: Transfer?
    var cancelled = false
}
