import ChorusIO
import ChorusJSON
import Foundation

/// Entry points for `chorus-fuzz` (scripts/fuzz): each takes arbitrary bytes and runs one
/// parser or checker on them the way a run would. Any crash or hang is a bug; an error
/// result is the expected answer to bad input.
package enum FuzzTargets {
    /// The target names.
    package static let names = ["json", "spec", "template", "answer", "eval", "governance"]

    /// Runs `target` on `input`; returns a short verdict (for the driver's statistics).
    package static func run(_ target: String, _ input: [UInt8], scratch: String) -> String {
        switch target {
        case "json":
            // The cursor (streamed events) must accept exactly what the parser accepts.
            let skipped = input.withUnsafeBufferPointer { bytes in
                var cursor = JSONCursor(bytes)
                return (try? cursor.skip()).flatMap { try? cursor.finish() } != nil
            }
            guard let value = try? JSONValue(parsing: input) else { return skipped ? "MISMATCH: the cursor accepts what the parser refuses" : "rejected" }
            if !skipped { return "MISMATCH: the cursor refuses what the parser accepts" }
            _ = value.serialized()
            for schema in [SpecSchemas.agentValue, SpecSchemas.workflowValue, SpecSchemas.chorusValue] {
                _ = JSONSchemaValidator(schema: schema).validate(value)
            }
            // The document as a schema, validating itself: schemas come from users too.
            _ = JSONSchemaValidator(schema: value).validate(value)
            return "parsed"
        case "spec":
            // One file, read as each kind Chorus loads, the way `chorus validate` does.
            let path = scratch + "/fuzz.json"
            writeWithoutSync(input, to: path)
            let agent = SpecLoader.loadAgent(path)
            _ = SpecLoader.loadConfig(path)
            if case .success(let tool) = SpecLoader.loadTool(path) {
                _ = ToolSpec.host(ofTemplate: tool.name)
                return "valid tool"
            }
            _ = SpecLoader.loadProject(workflow: path, config: path)
            if case .success = agent { return "valid agent" }
            return "checked"
        case "template":
            let text = String(decoding: input, as: UTF8.self)
            if TemplateReferences.limitProblem(in: text) != nil { return "too large" }
            guard (try? TemplateReferences.compile(text)) != nil else { return "rejected" }
            _ = TemplateReferences.references(in: text)
            let variables: [String: JSONValue] = ["inputs": ["question": "q"], "item": "x", "findings": ["a", "b"], "round": 1]
            _ = try? TemplateContext.render(text, variables)
            return "rendered"
        case "answer":
            // Answers go through the output guards: the PII scan must stay linear on hostile text.
            _ = PIIDetector.redact(String(decoding: input, as: UTF8.self))
            var verdicts = 0
            for provider in [ProviderKind.openai, .anthropic] {
                if let answer = try? ModelAnswerParser.parse(input, provider: provider) {
                    _ = try? ModelAnswerParser.json(from: answer.text)
                    verdicts += 1
                }
                var parser = ServerSentEventParser()
                var assembler = StreamAssembler(provider: provider)
                for event in parser.feed(input) { _ = assembler.consume(event) }
                _ = assembler.assembled()
            }
            _ = ProviderMessage.extract(input)
            _ = SecretRedactor("sk-fuzz-key")?.redact(input)
            return verdicts > 0 ? "answer" : "rejected"
        case "eval":
            // An eval dataset, each case's expectations graded against outputs a model could
            // give: the file's own values, their text, and nothing.
            guard case .success(let cases) = EvalCases.parse(input, file: "fuzz.jsonl", workflow: nil) else { return "rejected" }
            for evalCase in cases.prefix(64) {
                let outputs: [JSONValue?] = [evalCase.inputs, .string(evalCase.inputs.text), .string(String(decoding: input.prefix(4096), as: UTF8.self)), nil]
                for expectation in evalCase.expectations { for output in outputs { _ = expectation.grade(output) } }
            }
            return "graded"
        case "governance":
            return governance(input, scratch: scratch)
        default:
            return "unknown target"
        }
    }
}

/// Writes `bytes` to `path` with plain POSIX calls. Foundation's file writes fsync, and on a
/// busy disk one fsync outlasted the driver's 2 s hang watchdog (a "hang" in the fuzzer's
/// own scratch write, not in Chorus).
private func writeWithoutSync(_ bytes: [UInt8], to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        offset += n
    }
}
