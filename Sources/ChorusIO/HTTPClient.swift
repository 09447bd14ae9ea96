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
    /// curl's multi handle and the libuv handles driving it; what C points at.
    private nonisolated let curl: CurlMulti
    private var multi: UnsafeMutableRawPointer { curl.handle }
    private var isShutDown = false
    private let counter = TransferCounter()
    /// Reset easy handles kept for the next requests: curl_easy_init allocates and clears
    /// several kilobytes, which showed up as malloc churn under load. Touched on the loop
    /// thread only (`nonisolated(unsafe)` so that `deinit` may hand them to it).
    private nonisolated(unsafe) var spareHandles: [UnsafeMutableRawPointer] = []
    private let maxSpareHandles: Int

    /// Transfer objects of this client still in memory. Zero once every request has
    /// completed and its caller has let go of it; anything else is a leak.
    public nonisolated var liveTransferObjects: Int { counter.live.load(ordering: .relaxed) }

    /// Every job of this actor runs on the event loop.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Creates a client on `loop`. Raises the open-file soft limit to the hard limit.
    /// Call on the loop thread (libuv handles may be created only there), for instance
    /// inside `loop.runBlocking { try HTTPClient(loop: loop) }` or from a task on the loop.
    /// Throws when libcurl cannot be set up (out of memory, say).
    public init(loop: EventLoop, configuration: Configuration = .init()) throws(HTTPClientError) {
        loop.preconditionInEventLoop()
        _ = FileDescriptorLimit.raised
        self.loop = loop
        maxSpareHandles = configuration.maxIdleConnections
        curl = try CurlMulti(loop: loop, configuration: configuration)
        curl.client = self
    }

    /// Creates a client on `loop` from any thread other than the loop's: the bridge for
    /// command-line entry points and tests.
    public static func make(on loop: EventLoop, configuration: Configuration = .init()) throws(HTTPClientError) -> HTTPClient {
        try loop.runBlocking { Result { () throws(HTTPClientError) in try HTTPClient(loop: loop, configuration: configuration) } }.get()
    }

    /// A client dropped without `shutdown()` frees its curl and libuv resources on the loop
    /// thread: C only ever points at `curl`, which outlives this object until then.
    deinit {
        guard !isShutDown else { return }
        let curl = self.curl
        let transfers = Array(byIdentifier.values)
        let spares = spareHandles.map { Int(bitPattern: $0) }  // addresses, to cross into the loop's closure
        curl.loop.execute {
            for transfer in transfers {
                _ = curl_multi_remove_handle(curl.handle, transfer.easy)
                transfer.finish(curlResult: nil)
                Unmanaged.passUnretained(transfer).release()  // retained in add()
            }
            for easy in spares { curl_easy_cleanup(UnsafeMutableRawPointer(bitPattern: easy)) }
            curl.close()
        }
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

    /// Sends `request` and hands the body to `consumer` on the loop thread as it arrives
    /// (see `HTTPBodyConsumer`); returns the head once the body has ended, or once the
    /// consumer has all it needs. A status of 400 or more throws `HTTPClientError.httpStatus`
    /// with the body, which the consumer never sees. Cancelling the calling task removes the
    /// transfer.
    public func receive(_ request: HTTPClientRequest, into consumer: some HTTPBodyConsumer) async throws(HTTPClientError) -> HTTPResponseHead {
        try await run(request) { .consuming($0, consumer) }
    }

    private func run<T: Sendable>(
        _ request: HTTPClientRequest,
        _ waiter: (CheckedContinuation<Result<T, HTTPClientError>, Never>) -> Transfer.Waiter
    ) async throws(HTTPClientError) -> T {
        let box = TransferBox()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, HTTPClientError>, Never>) in
                guard let easy = spareHandles.popLast() ?? curl_easy_init() else {
                    continuation.resume(
                        returning: .failure(
                            HTTPClientError(
                                .transport, request: "\(request.method.rawValue) \(HTTPClientRequest.redact(request.url))",
                                detail: "libcurl could not create a handle (out of memory)")))
                    return
                }
                let transfer = Transfer(request: request, waiter: waiter(continuation), easy: easy, counter: counter)
                box.transfer = transfer
                if box.cancelled || isShutDown {
                    transfer.finish(curlResult: nil)
                    return
                }
                if transfer.waiterKind != .buffered {
                    // A reader that stops early, or a consumer with all it needs: the transfer
                    // is removed on the loop's next turn (not inside curl's callback), unless
                    // curl has finished it by then.
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
        for easy in spareHandles { curl_easy_cleanup(easy) }
        spareHandles.removeAll()
        curl.close()
    }

    // MARK: transfers

    private var byIdentifier: [ObjectIdentifier: Transfer] = [:]

    private func add(_ transfer: Transfer) {
        _ = Unmanaged.passRetained(transfer)  // released in complete()
        transfer.isAdded = true
        byIdentifier[ObjectIdentifier(transfer)] = transfer
        if let failure = transfer.setupFailure {
            complete(transfer, curlResult: CURLE_FAILED_INIT, multiError: CURLM_BAD_EASY_HANDLE, failure: failure)
            return
        }
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
    private func complete(
        _ transfer: Transfer, curlResult: CURLcode?, multiError: CURLMcode? = nil,
        failure: HTTPClientError? = nil
    ) {
        guard transfer.isAdded else { return }
        transfer.isAdded = false
        byIdentifier[ObjectIdentifier(transfer)] = nil
        let removed = multiError == nil && curl_multi_remove_handle(multi, transfer.easy) == CURLM_OK
        transfer.finish(curlResult: curlResult, failure: failure)
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
            // Every easy handle added here carries its Transfer as CURLOPT_PRIVATE.
            guard ccurl_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &privatePointer) == CURLE_OK,
                let privatePointer
            else { continue }
            let transfer = Unmanaged<Transfer>.fromOpaque(privatePointer).takeUnretainedValue()
            complete(transfer, curlResult: result)
        }
    }

    /// Lets curl act on `socket` (or on its timeout) and completes what finished; called by
    /// `CurlMulti` under libuv's callbacks.
    func socketAction(_ socket: curl_socket_t, _ flags: Int32) {
        var running: Int32 = 0
        // An error here (a socket curl no longer knows) concerns curl's bookkeeping only: the
        // transfers it affects complete with their own result codes below.
        _ = curl_multi_socket_action(multi, socket, flags, &running)
        drainCompletions()
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
