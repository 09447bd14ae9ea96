import ChorusIO
import ChorusJSON

/// Turns a streamed answer (server-sent events, OpenAI or Anthropic) back into the body a
/// non-streamed call would have returned, so the trace, replay, diff and search see one
/// shape whichever way an answer travelled. Pure: fed events, no I/O.
///
/// Real providers send one token per event, so this runs for every token of every answer
/// streamed, inside curl's write callback on the loop. Each event is read with a
/// `JSONCursor`: the few fields an answer needs are taken as they pass (a delta's text is
/// unescaped straight into its choice's buffer) and everything else is checked and
/// skipped, without building a `JSONValue` tree. A 200-byte chunk parsed whole costs
/// dictionaries, strings and their release; read this way it costs a scan. Only the rare,
/// small parts (an id, usage, an error, a block's start) are built as values. Text is
/// kept as bytes and made a `String` once, when the answer is assembled.
struct StreamAssembler {
    /// What one event meant.
    enum Step: Equatable {
        /// Nothing the caller needs to act on (a ping, a role delta).
        case progress
        /// The event carried answer text or tool input: the first one marks time to first token.
        case content
        /// The stream is complete.
        case done
        /// The provider reported an error inside the stream (`overloaded_error`, say).
        case error(String)
        /// The event is not what the API promises.
        case malformed(String)
    }

    private let provider: ProviderKind
    private var id: JSONValue = .null
    private var model: JSONValue = .null
    private var created: JSONValue = .null
    private var text: [UInt8] = []
    private var finishReason: String?
    private var usage: [String: JSONValue] = [:]
    /// Tool calls (OpenAI) or content blocks (Anthropic) by index.
    private var blocks: [Int: Block] = [:]
    private(set) var isDone = false
    /// One event's fields as the cursor reads them, applied only once the whole event has
    /// been read and found well formed (a malformed event changes nothing). Kept between
    /// events so its buffers are reused.
    private var event = EventFields()

    private struct Block {
        var type = "text"
        var id: JSONValue = .null
        var name: JSONValue = .null
        var text: [UInt8] = []
    }

    private struct EventFields {
        /// Anthropic's `type` in the data, when it is a string.
        var type: [UInt8] = []
        var hasType = false
        var index: Int?
        /// A delta's text (`content`, Anthropic's `text`) and Anthropic's `partial_json`.
        var piece: [UInt8] = []
        var hasPiece = false
        var partialJSON: [UInt8] = []
        var hasPartialJSON = false
        var hasChoice = false
        var finishReason: String?
        var usage: JSONValue?
        var error: JSONValue?
        var head: (id: JSONValue, model: JSONValue, created: JSONValue)?
        var message: JSONValue?
        var contentBlock: JSONValue?
        var calls: [CallDelta] = []

        mutating func reset() {
            type.removeAll(keepingCapacity: true)
            piece.removeAll(keepingCapacity: true)
            partialJSON.removeAll(keepingCapacity: true)
            calls.removeAll(keepingCapacity: true)
            (index, hasType, hasPiece, hasPartialJSON, hasChoice, finishReason) = (nil, false, false, false, false, nil)
            (usage, error, head, message, contentBlock) = (nil, nil, nil, nil, nil)
        }
    }

    /// One OpenAI tool call's delta.
    private struct CallDelta {
        var index = 0
        var id: JSONValue = .null
        var name: JSONValue = .null
        var arguments: [UInt8] = []
    }

    init(provider: ProviderKind) { self.provider = provider }

    /// Consumes one event, as `ServerSentEventParser` gives it.
    mutating func consume(_ event: ServerSentEvent) -> Step {
        Array(event.event.utf8).withUnsafeBufferPointer { type in
            Array(event.data.utf8).withUnsafeBufferPointer { consume(type: type, data: $0) }
        }
    }

    /// Consumes one event: its type (empty for none) and data, as `ServerSentEventScanner`
    /// hands them over.
    mutating func consume(type: UnsafeBufferPointer<UInt8>, data: UnsafeBufferPointer<UInt8>) -> Step {
        if provider == .openai, data.count == 6, data.elementsEqual("[DONE]".utf8) {
            isDone = true
            return .done
        }
        event.reset()
        do {
            var cursor = JSONCursor(data)
            try cursor.enterObject()
            if provider == .openai { try readOpenAI(&cursor) } else { try readAnthropic(&cursor) }
            try cursor.finish()
        } catch {
            return .malformed("stream event is not a JSON object: " + String(decoding: data.prefix(120), as: UTF8.self))
        }
        return provider == .openai ? applyOpenAI() : applyAnthropic(type: type)
    }

    // MARK: OpenAI

    private mutating func readOpenAI(_ cursor: inout JSONCursor) throws(JSONParseError) {
        // The id, model and creation time come from the first event that has an id.
        let wantsHead = id == .null
        var head: (id: JSONValue, model: JSONValue, created: JSONValue) = (.null, .null, .null)
        while let key = try cursor.nextKey() {
            if key.is("choices") {
                guard cursor.kind == .array else {
                    try cursor.skip()
                    continue
                }
                try cursor.enterArray()
                while try cursor.nextElement() {
                    if event.hasChoice { try cursor.skip() } else { try readChoice(&cursor) }
                }
            } else if key.is("usage") {
                event.usage = try cursor.value()
            } else if key.is("error") {
                event.error = try cursor.value()
            } else if wantsHead, key.is("id") {
                head.id = try cursor.value()
            } else if wantsHead, key.is("model") {
                head.model = try cursor.value()
            } else if wantsHead, key.is("created") {
                head.created = try cursor.value()
            } else {
                try cursor.skip()
            }
        }
        if wantsHead { event.head = head }
    }

    private mutating func readChoice(_ cursor: inout JSONCursor) throws(JSONParseError) {
        event.hasChoice = true
        guard cursor.kind == .object else { return try cursor.skip() }
        try cursor.enterObject()
        while let key = try cursor.nextKey() {
            if key.is("finish_reason") {
                event.finishReason = try cursor.string()
            } else if key.is("delta"), cursor.kind == .object {
                try cursor.enterObject()
                while let key = try cursor.nextKey() {
                    if key.is("content"), cursor.kind == .string {
                        try cursor.appendString(to: &event.piece)
                        event.hasPiece = true
                    } else if key.is("tool_calls"), cursor.kind == .array {
                        try cursor.enterArray()
                        while try cursor.nextElement() { event.calls.append(try Self.readCall(&cursor)) }
                    } else {
                        try cursor.skip()
                    }
                }
            } else {
                try cursor.skip()
            }
        }
    }

    private static func readCall(_ cursor: inout JSONCursor) throws(JSONParseError) -> CallDelta {
        var call = CallDelta()
        guard cursor.kind == .object else {
            try cursor.skip()
            return call
        }
        try cursor.enterObject()
        while let key = try cursor.nextKey() {
            if key.is("index") {
                call.index = try cursor.int() ?? 0
            } else if key.is("id") {
                call.id = try cursor.value()
            } else if key.is("function"), cursor.kind == .object {
                try cursor.enterObject()
                while let key = try cursor.nextKey() {
                    if key.is("name") {
                        call.name = try cursor.value()
                    } else if key.is("arguments"), cursor.kind == .string {
                        try cursor.appendString(to: &call.arguments)
                    } else {
                        try cursor.skip()
                    }
                }
            } else {
                try cursor.skip()
            }
        }
        return call
    }

    private mutating func applyOpenAI() -> Step {
        if let error = event.error { return .error(error["message"]?.stringValue ?? error.text) }
        if let head = event.head { (id, model, created) = head }
        if let counted = event.usage?.objectValue { usage = counted }
        guard event.hasChoice else { return .progress }
        if let reason = event.finishReason { finishReason = reason }
        var step = Step.progress
        if !event.piece.isEmpty {
            text += event.piece
            step = .content
        }
        for call in event.calls {
            var block = blocks[call.index] ?? Block(type: "function")
            if call.id != .null { block.id = call.id }
            if call.name != .null { block.name = call.name }
            if !call.arguments.isEmpty {
                block.text += call.arguments
                step = .content
            }
            blocks[call.index] = block
        }
        return step
    }

    // MARK: Anthropic

    private mutating func readAnthropic(_ cursor: inout JSONCursor) throws(JSONParseError) {
        while let key = try cursor.nextKey() {
            if key.is("type"), cursor.kind == .string {
                event.type.removeAll(keepingCapacity: true)
                try cursor.appendString(to: &event.type)
                event.hasType = true
            } else if key.is("index") {
                event.index = try cursor.int()
            } else if key.is("delta"), cursor.kind == .object {
                try cursor.enterObject()
                while let key = try cursor.nextKey() {
                    if key.is("text"), cursor.kind == .string {
                        try cursor.appendString(to: &event.piece)
                        event.hasPiece = true
                    } else if key.is("partial_json"), cursor.kind == .string {
                        try cursor.appendString(to: &event.partialJSON)
                        event.hasPartialJSON = true
                    } else if key.is("stop_reason") {
                        event.finishReason = try cursor.string()
                    } else {
                        try cursor.skip()
                    }
                }
            } else if key.is("message") {
                event.message = try cursor.value()
            } else if key.is("content_block") {
                event.contentBlock = try cursor.value()
            } else if key.is("usage") {
                event.usage = try cursor.value()
            } else if key.is("error") {
                event.error = try cursor.value()
            } else {
                try cursor.skip()
            }
        }
    }

    /// The Anthropic event kinds an answer is assembled from.
    private enum AnthropicEvent: String, CaseIterable {
        // content_block_delta first: nearly every event is one.
        case contentBlockDelta = "content_block_delta", messageStart = "message_start", contentBlockStart = "content_block_start"
        case messageDelta = "message_delta", messageStop = "message_stop", error, other

        init(_ name: some Collection<UInt8>) {
            self = Self.allCases.first { $0.rawValue.utf8.elementsEqual(name) } ?? .other
        }
    }

    private mutating func applyAnthropic(type eventType: UnsafeBufferPointer<UInt8>) -> Step {
        // No `type` in the data: the event's own type says what it is.
        switch event.hasType ? AnthropicEvent(event.type) : AnthropicEvent(eventType) {
        case .messageStart:
            let message = event.message ?? [:]
            id = message["id"] ?? .null
            model = message["model"] ?? .null
            usage = message["usage"]?.objectValue ?? [:]
            return .progress
        case .contentBlockStart:
            let start = event.contentBlock ?? [:]
            var block = Block(type: start["type"]?.stringValue ?? "text", id: start["id"] ?? .null, name: start["name"] ?? .null)
            block.text = Array((start["text"]?.stringValue ?? "").utf8)
            blocks[event.index ?? blocks.count] = block
            return .progress
        case .contentBlockDelta:
            let index = event.index ?? 0
            guard event.hasPiece || event.hasPartialJSON else { return .progress }
            let piece = event.hasPiece ? event.piece : event.partialJSON
            blocks[index, default: Block()].text += piece
            return piece.isEmpty ? .progress : .content
        case .messageDelta:
            if let reason = event.finishReason { finishReason = reason }
            for (key, value) in event.usage?.objectValue ?? [:] where value != .null { usage[key] = value }
            return .progress
        case .messageStop:
            isDone = true
            return .done
        case .error:
            let error = event.error ?? [:]
            return .error(error["message"]?.stringValue ?? error.text)
        case .other:  // ping, content_block_stop, and event types added later
            return .progress
        }
    }

    /// The equivalent non-streamed response body; nil when the stream never completed.
    func assembled() -> [UInt8]? {
        // A server that ends its stream after the finishing chunk without `[DONE]` still
        // gave a whole answer.
        guard isDone || finishReason != nil else { return nil }
        let ordered = blocks.keys.sorted().compactMap { blocks[$0] }
        switch provider {
        case .openai:
            let content = String(decoding: text, as: UTF8.self)
            var message: [String: JSONValue] = ["role": "assistant", "content": ordered.isEmpty || !content.isEmpty ? .string(content) : .null]
            if !ordered.isEmpty {
                message["tool_calls"] = .array(
                    ordered.map { call in
                        [
                            "id": call.id, "type": "function",
                            "function": ["name": call.name, "arguments": .string(String(decoding: call.text, as: UTF8.self))],
                        ]
                    })
            }
            var body: [String: JSONValue] = [
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [["index": 0, "message": .object(message), "finish_reason": finishReason.map(JSONValue.string) ?? .null]],
            ]
            if !usage.isEmpty { body["usage"] = .object(usage) }
            return JSONValue.object(body).serialized()
        case .anthropic:
            let content: [JSONValue] = ordered.map { block in
                let text = String(decoding: block.text, as: UTF8.self)
                if block.type == "tool_use" {
                    let input = block.text.isEmpty ? [:] : (try? JSONValue(parsing: block.text)) ?? .string(text)
                    return ["type": "tool_use", "id": block.id, "name": block.name, "input": input]
                }
                return ["type": .string(block.type), "text": .string(text)]
            }
            return JSONValue.object([
                "id": id, "type": "message", "role": "assistant", "model": model, "content": .array(content),
                "stop_reason": finishReason.map(JSONValue.string) ?? .null, "stop_sequence": .null, "usage": .object(usage),
            ]).serialized()
        }
    }
}
