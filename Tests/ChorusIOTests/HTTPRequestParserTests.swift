@testable import ChorusIO
import Testing

@Suite struct HTTPRequestParserTests {
    private func feed(_ parser: inout HTTPRequestParser, _ text: String) {
        Array(text.utf8).withUnsafeBytes { parser.feed($0) }
    }

    @Test func aRequestSplitAcrossReadsIsParsedWhenComplete() throws {
        var parser = HTTPRequestParser()
        feed(&parser, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        #expect(try parser.next() == nil)
        feed(&parser, "ngth: 5\r\n\r\nhel")
        #expect(try parser.next() == nil)
        feed(&parser, "lo")
        let request = try #require(try parser.next())
        #expect(request.method == "POST")
        #expect(request.path == "/v1/chat/completions")
        #expect(request.body == Array("hello".utf8))
        #expect(request.keepAlive)
    }

    @Test func pipelinedRequestsComeOutInOrder() throws {
        var parser = HTTPRequestParser()
        feed(&parser, "GET /a HTTP/1.1\r\n\r\nGET /b?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n")
        #expect(try parser.next()?.target == "/a")
        let second = try #require(try parser.next())
        #expect(second.path == "/b")
        #expect(!second.keepAlive)
        #expect(try parser.next() == nil)
    }

    @Test func malformedHeadsAreRejectedWithTheRightStatus() {
        let cases: [(String, Int)] = [
            ("NOT A REQUEST LINE AT ALL\r\n\r\n", 400),
            ("GET /x HTTP/2.0\r\n\r\n", 400),
            ("GET /x HTTP/1.1\r\nbad header line\r\n\r\n", 400),
            ("POST /x HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400),
            ("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            ("POST /x HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", 413),
        ]
        for (text, status) in cases {
            var parser = HTTPRequestParser()
            feed(&parser, text)
            do {
                _ = try parser.next()
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.status == status, "\(text)")
            }
        }
    }

    @Test func anEndlessHeadIsRefused() {
        var parser = HTTPRequestParser()
        feed(&parser, "GET /x HTTP/1.1\r\n" + String(repeating: "X-Pad: aaaaaaaa\r\n", count: 5000))
        #expect(throws: HTTPRequestParser.Failure.headTooLarge) { try parser.next() }
    }
}

@Suite struct ServerSentEventParserTests {
    @Test func eventsSplitAnywhereAreReassembled() {
        let text = "event: a\r\ndata: one\r\ndata: two\r\n\r\n: comment\n\ndata:three\rid: 7\r\r"
        for split in 1..<text.utf8.count {
            var parser = ServerSentEventParser()
            let bytes = Array(text.utf8)
            let events = parser.feed(bytes[..<split]) + parser.feed(bytes[split...])
            #expect(
                events == [
                    ServerSentEvent(event: "a", data: "one\ntwo", id: nil),
                    ServerSentEvent(event: "message", data: "three", id: "7"),
                ], "split at \(split)")
        }
    }

    @Test func anUnterminatedEventIsDiscarded() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array("data: partial".utf8)).isEmpty)
        parser.finish()
        #expect(parser.feed(Array("\n\n".utf8)).isEmpty)
    }

    /// `retry:` sets the reconnection time for the stream (not one event); a value that is
    /// not all digits is ignored, per the spec.
    @Test func retryIsKeptForTheStream() {
        var parser = ServerSentEventParser()
        #expect(parser.retry == nil)
        _ = parser.feed(Array("retry: 1500\nid: 1\ndata:\n\nretry: 2x\n\n".utf8))
        #expect(parser.retry == 1500)
        _ = parser.feed(Array("retry: 12345678901234567890\n\n".utf8))
        #expect(parser.retry == 999_999_999)
    }
}
