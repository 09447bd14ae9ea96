import CCurl
import Glibc
import HTTPTypes
import Synchronization

/// Counts the transfer objects of one client that are still alive, so a test can prove
/// that completed transfers (and their curl handles) are freed.
final class TransferCounter: Sendable {
    let live = Atomic<Int>(0)
}

/// One HTTP request in flight: a curl easy handle and what it has received so far.
///
/// Loop-confined: created, fed by curl callbacks and completed on the loop thread. It is
/// retained as the easy handle's `CURLOPT_PRIVATE` while added to the multi handle, and
/// released exactly once, in `HTTPClient.complete`.
final class Transfer: @unchecked Sendable {
    /// Who waits for the outcome.
    enum Waiter {
        case buffered(CheckedContinuation<Result<HTTPClientResponse, HTTPClientError>, Never>)
        case streaming(CheckedContinuation<Result<HTTPStreamingResponse, HTTPClientError>, Never>)
        /// The body goes to a consumer in curl's write callback; the caller waits for the end.
        case consuming(CheckedContinuation<Result<HTTPResponseHead, HTTPClientError>, Never>, any HTTPBodyConsumer)
    }

    let easy: UnsafeMutableRawPointer
    private let method: String
    private let url: String
    /// Method and redacted URL for error messages; built only when an error needs it.
    var label: String { "\(method) \(HTTPClientRequest.redact(url))" }
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    private var waiter: Waiter?
    private var machine: StateMachine
    private var headerFields = HTTPFields()
    private var body: [UInt8] = []
    private var bodyStream: AsyncThrowingStream<[UInt8], Error>.Continuation?
    private let timeout: Duration?
    private let connectTimeout: Duration?
    private var hasIdleTimeout = false
    /// Body bytes received so far, and the limit on them (see `HTTPClientRequest.maxResponseBytes`).
    private var received = 0
    private let maxResponseBytes: Int?
    private var exceededLimit = false
    /// How much of an error response's body is kept.
    static let maxErrorBody = 64 * 1024
    /// Whether the caller waits for a whole response, a streamed one, or its end while a
    /// consumer takes the body.
    enum WaiterKind { case buffered, streaming, consuming }

    /// Which kind of caller waits, fixed at creation.
    let waiterKind: WaiterKind

    /// Called when the caller stops reading a streamed body early, or a consumer has all it needs.
    var onStreamCancelled: (@Sendable () -> Void)?
    /// The body consumer said it has all it needs: what follows is dropped, and the transfer
    /// ends as a success however curl ends it (it is removed on the loop's next turn unless
    /// curl finishes it first, keeping the connection).
    private var consumerEnded = false
    /// Set while the transfer is added to the multi handle.
    var isAdded = false

    private let counter: TransferCounter

    /// False once the client has taken the easy handle back for reuse.
    var ownsHandle = true

    /// A transfer on `easy`, a fresh or reset easy handle the transfer now owns.
    init(request: HTTPClientRequest, waiter: Waiter, easy: UnsafeMutableRawPointer, counter: TransferCounter) {
        self.counter = counter
        counter.live.add(1, ordering: .relaxed)
        self.easy = easy
        method = request.method.rawValue
        url = request.url
        self.waiter = waiter
        timeout = request.timeout
        connectTimeout = request.connectTimeout
        maxResponseBytes = request.maxResponseBytes
        switch waiter {
        case .buffered: waiterKind = .buffered
        case .streaming: waiterKind = .streaming
        case .consuming: waiterKind = .consuming
        }
        machine = StateMachine(streaming: waiterKind != .buffered)
        errorBuffer[0] = 0
        configure(request)
    }

    deinit {
        counter.live.subtract(1, ordering: .relaxed)
        if ownsHandle { curl_easy_cleanup(easy) }
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    /// The first option curl refused while the transfer was set up (a URL or header over
    /// curl's 8 MB input limit, say); `HTTPClient` fails the transfer with it instead of adding it.
    private(set) var setupFailure: HTTPClientError?

    private func record(_ code: CURLcode, _ option: CURLoption) {
        guard code != CURLE_OK, setupFailure == nil else { return }
        setupFailure = HTTPClientError(
            .invalidRequest, request: label, curlCode: Int(code.rawValue),
            detail: "curl refused option \(option.rawValue): \(String(cString: curl_easy_strerror(code)))")
    }

    private func set(_ option: CURLoption, _ value: Int) { record(Curl.set(easy, option, value), option) }
    private func set(_ option: CURLoption, _ value: UnsafeRawPointer?) { record(Curl.set(easy, option, value), option) }
    private func set(_ option: CURLoption, _ value: String) { record(Curl.set(easy, option, value), option) }

    private func configure(_ request: HTTPClientRequest) {
        let me = Unmanaged.passUnretained(self).toOpaque()
        set(CURLOPT_URL, request.url)
        set(CURLOPT_NOSIGNAL, 1)
        record(ccurl_easy_set_cloexec_sockets(easy), CURLOPT_SOCKOPTFUNCTION)
        set(CURLOPT_ERRORBUFFER, UnsafeRawPointer(errorBuffer))
        set(CURLOPT_PRIVATE, UnsafeRawPointer(me))
        set(CURLOPT_WRITEDATA, UnsafeRawPointer(me))
        set(CURLOPT_HEADERDATA, UnsafeRawPointer(me))
        record(
            ccurl_easy_setopt_write_cb(easy, CURLOPT_WRITEFUNCTION) { data, size, count, user in
                // Returning less than was given makes curl abort with CURLE_WRITE_ERROR.
                Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
                    .didReceiveBody(UnsafeRawBufferPointer(start: data, count: size * count)) ? size * count : 0
            }, CURLOPT_WRITEFUNCTION)
        record(
            ccurl_easy_setopt_write_cb(easy, CURLOPT_HEADERFUNCTION) { data, size, count, user in
                Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
                    .didReceiveHeaderLine(UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            }, CURLOPT_HEADERFUNCTION)
        if let timeout { set(CURLOPT_TIMEOUT_MS, Int(max(1, timeout.milliseconds))) }
        if let connectTimeout { set(CURLOPT_CONNECTTIMEOUT_MS, Int(max(1, connectTimeout.milliseconds))) }
        if let idleTimeout = request.idleTimeout {
            // curl's low-speed check: under 1 byte/s for N seconds ends the transfer with
            // CURLE_OPERATION_TIMEDOUT ("Operation too slow"), head or body alike.
            set(CURLOPT_LOW_SPEED_LIMIT, 1)
            set(CURLOPT_LOW_SPEED_TIME, Int(max(1, min(idleTimeout.milliseconds / 1000, 86_400))))
            hasIdleTimeout = true
        }

        switch request.method {
        case .get: set(CURLOPT_HTTPGET, 1)
        case .head: set(CURLOPT_NOBODY, 1)
        case .post: set(CURLOPT_POST, 1)
        default: set(CURLOPT_CUSTOMREQUEST, request.method.rawValue)
        }
        if !request.body.isEmpty || request.method == .post {
            record(
                ccurl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)),
                CURLOPT_POSTFIELDSIZE_LARGE)
            // COPYPOSTFIELDS: curl keeps its own copy, so the Swift array need not outlive this call.
            request.body.withUnsafeBytes { set(CURLOPT_COPYPOSTFIELDS, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!) }
        }
        // An empty "Expect:" stops curl from waiting for 100-continue on large bodies.
        var lines = ["Expect:"]
        for field in request.headerFields { lines.append("\(field.name.rawName): \(field.value)") }
        for line in lines { headerList = curl_slist_append(headerList, line) }
        set(CURLOPT_HTTPHEADER, UnsafeRawPointer(headerList))
    }

    // MARK: curl callbacks (loop thread)

    private func didReceiveHeaderLine(_ line: UnsafeRawBufferPointer) {
        if line.starts(with: "HTTP/".utf8) {
            headerFields = HTTPFields()  // a new response (after 1xx): forget the last one's fields
            return
        }
        if line.count <= 2 {  // the blank line ending the head
            let status = Curl.responseCode(easy)
            guard status >= 200 else { return }
            if machine.headComplete(status: status) == .deliverHead { deliverHead(status: status) }
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")),
            let name = HTTPField.Name(String(decoding: line[..<colon], as: UTF8.self))
        else { return }
        var value = Substring(String(decoding: line[(colon + 1)...], as: UTF8.self))
        while let c = value.first, c == " " || c == "\t" { value.removeFirst() }
        while let c = value.last, c == "\r" || c == "\n" || c == " " || c == "\t" { value.removeLast() }
        headerFields.append(HTTPField(name: name, value: String(value)))
    }

    /// Returns false to abort the transfer: the body passed the request's byte limit.
    private func didReceiveBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
        received += chunk.count
        if let limit = maxResponseBytes, received > limit {
            exceededLimit = true
            return false
        }
        if machine.isStreamingBody {
            if case .consuming(_, let consumer) = waiter {
                if !consumerEnded && !consumer.body(chunk) {
                    consumerEnded = true
                    onStreamCancelled?()
                }
            } else {
                bodyStream?.yield(Array(chunk))
            }
        } else {
            body.append(contentsOf: chunk)
        }
        return true
    }

    private func deliverHead(status: Int) {
        if case .consuming(_, let consumer) = waiter {
            consumer.head(status: status, headerFields: headerFields)
            return
        }
        guard case .streaming(let continuation) = waiter else { return }
        waiter = nil
        let (stream, streamContinuation) = AsyncThrowingStream<[UInt8], Error>.makeStream()
        bodyStream = streamContinuation
        if let onStreamCancelled {
            streamContinuation.onTermination = { termination in
                if case .cancelled = termination { onStreamCancelled() }
            }
        }
        continuation.resume(
            returning: .success(
                HTTPStreamingResponse(
                    status: HTTPResponse.Status(code: status), headerFields: headerFields, body: stream)))
    }

    // MARK: completion

    /// Finishes the transfer with curl's result code (or nil when cancelled), or with
    /// `failure` when the transfer never reached curl.
    func finish(curlResult: CURLcode?, failure: HTTPClientError? = nil) {
        let status = curlResult == CURLE_OK || consumerEnded ? Curl.responseCode(easy) : 0
        // A consumer that had all it needed ends the transfer as a success, whatever came after.
        let error =
            consumerEnded
            ? nil
            : failure ?? curlResult.flatMap { classify($0, status: status) }
                ?? (curlResult == nil
                    ? HTTPClientError(
                        .cancelled, request: label, detail: "cancelled") : nil)
        switch machine.finish(succeeded: error == nil) {
        case .succeed:
            let response = HTTPClientResponse(status: .init(code: status), headerFields: headerFields, body: body)
            switch waiter {
            case .buffered(let continuation): continuation.resume(returning: .success(response))
            case .streaming(let continuation):
                let (stream, streamContinuation) = AsyncThrowingStream<[UInt8], Error>.makeStream()
                if !body.isEmpty { streamContinuation.yield(body) }
                streamContinuation.finish()
                continuation.resume(
                    returning: .success(
                        HTTPStreamingResponse(
                            status: response.status, headerFields: headerFields, body: stream)))
            case .consuming(let continuation, let consumer):
                consumer.head(status: status, headerFields: headerFields)
                _ = body.withUnsafeBytes { consumer.body($0) }
                continuation.resume(returning: .success(HTTPResponseHead(status: response.status, headerFields: headerFields)))
            case nil: break
            }
        case .failWaitingCaller:
            switch waiter {
            case .buffered(let continuation): continuation.resume(returning: .failure(error!))
            case .streaming(let continuation): continuation.resume(returning: .failure(error!))
            case .consuming(let continuation, _): continuation.resume(returning: .failure(error!))
            case nil: break
            }
        case .finishStream:
            bodyStream?.finish()
            if case .consuming(let continuation, _) = waiter {
                continuation.resume(returning: .success(HTTPResponseHead(status: .init(code: status), headerFields: headerFields)))
            }
        case .failStream:
            bodyStream?.finish(throwing: error!)
            if case .consuming(let continuation, _) = waiter { continuation.resume(returning: .failure(error!)) }
        case .none:
            break
        }
        waiter = nil
        bodyStream = nil
        onStreamCancelled = nil
    }

    private func classify(_ code: CURLcode, status: Int) -> HTTPClientError? {
        if exceededLimit, let limit = maxResponseBytes {
            return HTTPClientError(
                .responseTooLarge, request: label, curlCode: Int(code.rawValue),
                detail: "the response passed its limit of \(limit) bytes; the transfer was stopped")
        }
        if code == CURLE_OK {
            guard status >= 400 else { return nil }
            // An error's body is kept for its message and the trace, cut to 64 KB: a 50 MB
            // body of an HTTP 500 became a blob before (issue 17).
            let kept = body.count > Self.maxErrorBody ? Array(body.prefix(Self.maxErrorBody)) : body
            let response = HTTPClientResponse(status: .init(code: status), headerFields: headerFields, body: kept)
            return HTTPClientError(.httpStatus, request: label, detail: "HTTP \(status)", response: response)
        }
        let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
        let kind: HTTPClientError.Code
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: kind = .dns
        case CURLE_COULDNT_CONNECT: kind = .connect
        case CURLE_OPERATION_TIMEDOUT where hasIdleTimeout && detail.contains("too slow"): kind = .idleTimeout
        case CURLE_OPERATION_TIMEDOUT: kind = Curl.pretransferTime(easy) == 0 ? .connectTimeout : .timeout
        case CURLE_PARTIAL_FILE: kind = .truncatedBody
        case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR: kind = .connectionClosed
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT: kind = .invalidRequest
        default: kind = .transport
        }
        return HTTPClientError(kind, request: label, curlCode: Int(code.rawValue), detail: detail)
    }
}
