import ChorusIO
import ChorusJSON
import HTTPTypes
import Synchronization
import Testing

@Suite struct HTTPClientTests {
    let server = TestServer()

    @Test func aJSONBodyComesBackWhole() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let response = try await client.execute(.init(url: server.url + "/json"))
            #expect(response.status == .ok)
            #expect(response.headerFields[.contentType] == "application/json")
            #expect(try JSONValue(parsing: response.body) == ["ok": true, "n": 42])
            await client.shutdown()
        }
    }

    @Test func aOneMegabyteBodyArrivesIntactBothWays() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let download = try await client.execute(.init(url: server.url + "/big"))
            #expect(download.body == TestServer.bigBody)
            let upload = try await client.execute(.init(method: .post, url: server.url + "/echo", body: TestServer.bigBody))
            #expect(upload.body == TestServer.bigBody)
            await client.shutdown()
        }
    }

    @Test func serverSentEventsArriveIncrementallyAndInOrder() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let response = try await client.stream(.init(url: server.url + "/sse"))
            #expect(response.status == .ok)
            var received: [ServerSentEvent] = []
            for try await event in response.events { received.append(event) }
            #expect(received.count == 6)
            #expect(received.prefix(5).map(\.data) == (0..<5).map { "{\"i\":\($0)}" })
            #expect(received.prefix(5).allSatisfy { $0.event == "tick" })
            #expect(received.last?.data == "[DONE]")
            await client.shutdown()
        }
    }

    /// A body handed to a consumer in curl's write callback: every event in order, the head
    /// returned at the end; a consumer that has all it needs ends the transfer at once, as a
    /// success, even when the server never ends the body; an error status never reaches it;
    /// cancelling the caller cancels the transfer.
    @Test func aConsumerTakesTheBodyAsItArrivesAndCanEndItEarly() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let whole = EventCollector()
            let head = try await client.receive(.init(url: server.url + "/sse"), into: whole)
            #expect(head.status == .ok && whole.head == 200)
            #expect(whole.events == (0..<5).map { "{\"i\":\($0)}" } + ["[DONE]"])
            #expect(whole.chunks > 1, "the events arrived over several writes")

            let early = EventCollector(stopAt: "[DONE]")
            let started = ContinuousClock.now
            _ = try await client.receive(.init(url: server.url + "/sse-then-hang", timeout: .seconds(20)), into: early)
            #expect(early.events == ["{\"i\":0}", "{\"i\":1}", "[DONE]"])
            #expect(ContinuousClock.now - started < .seconds(10), "ended when the consumer had all it needed, not at the timeout")

            let refused = EventCollector()
            let failed = await #expect(throws: HTTPClientError.self) {
                _ = try await client.receive(.init(url: server.url + "/big-error"), into: refused)
            }
            #expect(failed?.code == .httpStatus && failed?.response?.body.count == 65_536 && refused.chunks == 0)

            let limited = await #expect(throws: HTTPClientError.self) {
                _ = try await client.receive(.init(url: server.url + "/sse-forever", maxResponseBytes: 10_000), into: EventCollector())
            }
            #expect(limited?.code == .responseTooLarge)

            let endless = EventCollector()
            let task = Task { try await client.receive(.init(url: server.url + "/sse-forever"), into: endless) }
            #expect(try await eventually(loop) { endless.seen.load(ordering: .relaxed) >= 3 })
            task.cancel()
            let cancelled = await #expect(throws: HTTPClientError.self) { _ = try await task.value }
            #expect(cancelled?.code == .cancelled)
            await client.shutdown()
        }
    }

    /// A body past the request's limit stops the transfer, buffered or streamed, with a
    /// typed error that is not worth retrying; an error response's body is kept to 64 KB.
    @Test func aResponsePastItsLimitIsStoppedAndAnErrorBodyIsCut() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let endless = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/endless", timeout: .seconds(20), maxResponseBytes: 2_000_000))
            }
            #expect(endless?.code == .responseTooLarge && endless?.isTransient == false, "\(String(describing: endless))")
            let stream = try await client.stream(.init(url: server.url + "/sse-forever", timeout: .seconds(20), maxResponseBytes: 10_000))
            let streamed = await #expect(throws: HTTPClientError.self) {
                for try await _ in stream.events {}
            }
            #expect(streamed?.code == .responseTooLarge)
            let failed = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/big-error"))
            }
            #expect(failed?.code == .httpStatus && failed?.response?.body.count == 65_536)
            let fine = try await client.execute(.init(url: server.url + "/big", maxResponseBytes: 1_000_000))
            #expect(fine.body == TestServer.bigBody, "a body exactly at the limit arrives whole")
            await client.shutdown()
        }
    }

    @Test func theTotalTimeoutFires() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/hang", timeout: .milliseconds(150)))
            }
            #expect(error?.code == .timeout)
            #expect(error?.isTransient == true)
            await client.shutdown()
        }
    }

    @Test func aRefusedConnectionIsAConnectError() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: "http://127.0.0.1:1/v1/chat/completions"))
            }
            #expect(error?.code == .connect)
            await client.shutdown()
        }
    }

    @Test func aServerClosingMidBodyIsATruncatedBody() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/truncate"))
            }
            #expect(error?.code == .truncatedBody)
            let closed = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/close"))
            }
            #expect(closed?.code == .connectionClosed)
            await client.shutdown()
        }
    }

    @Test func anErrorStatusCarriesTheResponseAndRetryAfter() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: server.url + "/ratelimited?key=sk-secret"))
            }
            #expect(error?.code == .httpStatus)
            #expect(error?.response?.status.code == 429)
            #expect(error?.response?.retryAfter == .seconds(2))
            #expect(error?.isTransient == true)
            #expect(error.map { !$0.description.contains("sk-secret") } == true, "query strings can hold keys")
            await client.shutdown()
        }
    }

    @Test func cancellingTheTaskRemovesTheTransfer() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let task = Task(executorPreference: loop) {
                try await client.execute(.init(url: server.url + "/hang"))
            }
            let connected = try await eventually(loop) { server.connectionCount == 1 }
            #expect(connected)
            task.cancel()
            do {
                _ = try await task.value
                Issue.record("a cancelled request returned a response")
            } catch let error as HTTPClientError {
                #expect(error.code == .cancelled)
            }
            #expect(await client.activeTransfers == 0)
            let freed = try await eventually(loop) { server.connectionCount == 0 }
            #expect(freed, "the server should see the cancelled transfer's connection close")
            await client.shutdown()
        }
    }

    @Test func stoppingReadingAStreamRemovesTheTransfer() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            do {
                let response = try await client.stream(.init(url: server.url + "/sse-forever"))
                var count = 0
                for try await _ in response.events {
                    count += 1
                    if count == 3 { break }
                }
            }
            let removed = try await eventually(loop) {
                loop.runBlocking { client.assumeIsolated { $0.activeTransfers } } == 0 && client.liveTransferObjects == 0
            }
            #expect(removed)
            await client.shutdown()
        }
    }

    @Test func sequentialRequestsReuseOneConnection() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            for _ in 0..<50 {
                _ = try await client.execute(.init(url: server.url + "/json"))
            }
            #expect(server.peakConnectionCount == 1)
            let freed = try await eventually(loop) { client.liveTransferObjects == 0 }
            #expect(freed, "completed transfers must be freed, curl handles included")
            await client.shutdown()
        }
    }

    @Test func thePerHostConnectionCapHolds() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop, maxConnectionsPerHost: 4)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<100 {
                    group.addTask { try await client.execute(.init(url: server.url + "/slow")).status.code }
                }
                for try await status in group { #expect(status == 200) }
            }
            #expect(server.peakConnectionCount <= 4)
            await client.shutdown()
        }
    }

    @Test func fiveThousandConcurrentRequestsAreAllAnswered() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop, maxConnectionsPerHost: 5000)
            let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<5000 {
                    group.addTask(executorPreference: loop) {
                        try await client.execute(.init(url: server.url + "/slow", timeout: .seconds(60))).body == Array("slow".utf8)
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(ok == 5000)
            #expect(server.peakConnectionCount > 100, "requests should have been in flight together")
            await client.shutdown()
        }
    }

    @Test func aMalformedURLIsAnInvalidRequest() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: "htp:/nowhere"))
            }
            #expect(error?.code == .invalidRequest)
            await client.shutdown()
        }
    }

    /// curl refuses a URL over its 8 MB input limit when the option is set; that used to trap
    /// (a precondition on every curl_easy_setopt). Now the request fails with a typed error.
    @Test func aURLCurlRefusesFailsTheRequestInsteadOfTrapping() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let client = try makeClient(loop)
            let huge = server.url + "/json?q=" + String(repeating: "a", count: 8_100_000)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(.init(url: huge))
            }
            #expect(error?.code == .invalidRequest)
            #expect((error?.description.count ?? .max) < 400, "the message does not quote the 8 MB URL")
            let after = try await client.execute(.init(url: server.url + "/json"))
            #expect(after.status == .ok, "the client still works")
            await client.shutdown()
        }
    }

    /// C points at the client's curl state, never at the client: dropped without
    /// shutdown() after using a kept-alive connection, the client is freed, its handles are
    /// closed on the loop, and later loop activity calls into nothing freed.
    @Test func aClientDroppedWithoutShutdownIsFreedAndLeavesTheLoopWorking() async throws {
        defer { server.shutdown() }
        try await withLoop { loop in
            let reference = WeakClient()
            let before = await loop.openHandles()
            do {
                let client = try makeClient(loop)
                reference.client = client
                _ = try await client.execute(.init(url: server.url + "/json"))
                _ = try await client.execute(.init(url: server.url + "/json"))
                #expect(await loop.openHandles() > before, "the kept-alive connection and curl's timer are handles on the loop")
            }
            #expect(try await eventually(loop) { reference.client == nil }, "the dropped client was freed")
            // curl's connection cache and timer outlive the request: once the client is gone
            // their handles must be closed too, so nothing is left that could fire into freed
            // memory (the server's side of the kept-alive connection closes with it).
            var open = await loop.openHandles()
            for _ in 0..<1000 where open != before {
                try await loop.sleep(for: .milliseconds(5))
                open = await loop.openHandles()
            }
            #expect(open == before, "\(open) handles open on the loop, \(before) before the client")
            let another = try makeClient(loop)
            #expect(try await another.execute(.init(url: server.url + "/json")).status == .ok)
            await another.shutdown()
        }
    }
}

private final class WeakClient: @unchecked Sendable {
    weak var client: HTTPClient?
}

/// Collects a body's server-sent events as a consumer in curl's write callback.
private final class EventCollector: HTTPBodyConsumer, @unchecked Sendable {
    let stopAt: String?
    var scanner = ServerSentEventScanner()
    var head: Int?
    var events: [String] = []
    var chunks = 0
    /// How many events arrived, readable from another thread while the transfer runs.
    let seen = Atomic<Int>(0)

    init(stopAt: String? = nil) { self.stopAt = stopAt }

    func head(status: Int, headerFields: HTTPFields) { head = status }

    func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        chunks += 1
        return scanner.feed(bytes) { event in
            let data = String(decoding: event.data, as: UTF8.self)
            events.append(data)
            seen.add(1, ordering: .relaxed)
            return data != stopAt
        }
    }
}
