import ArgumentParser
import Chorus
import ChorusJSON
import ChorusTrace
import Foundation

extension RunsCommand.Export {
    /// `--format finetune`: the examples as JSONL, one summary line on stderr, and with -o
    /// FILE the same summary as FILE.manifest.json.
    ///
    /// The file holds only examples, though issue 28 asked for a header line saying what was
    /// left out: OpenAI's uploader rejects a file with any line that is not a training
    /// example, so what was exported and why the rest was not goes beside it instead.
    func exportFineTune(store: any TraceBackend) throws {
        let runs = try fineTuneRuns(store: store)
        let options = FineTuneExport.Options(
            only: FineTuneExport.Only(rawValue: only.rawValue) ?? .accepted, agent: agent, includeLabels: Set(includeLabels),
            redactors: Self.redactors(for: runs.records))
        let outcome = try FineTuneExport.examples(of: runs.records, store: store, options: options)
        if let agent, !runs.records.isEmpty, !outcome.agentSeen {
            printError("chorus runs export: no step of agent '\(agent)' in the runs exported")
            throw ExitCode(1)
        }
        var excluded = outcome.excluded
        if runs.missing > 0 { excluded["run pruned"] = runs.missing }
        var bytes: [UInt8] = []
        for example in outcome.examples {
            bytes += example.json.serialized()
            bytes.append(10)
        }
        try write(bytes, newline: false)
        let why = excluded.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let count = outcome.examples.count
        printError(
            "chorus runs export: \(count) example\(count == 1 ? "" : "s") from \(runs.records.count) run\(runs.records.count == 1 ? "" : "s")"
                + (output.map { " written to \($0)" } ?? "") + "; " + (runs.records.isEmpty ? runs.none : why.isEmpty ? "nothing left out" : "left out: \(why)")
        )
        guard let output else { return }
        var selection: [String: JSONValue] = [
            "only": .string(only.rawValue), "include_labels": .array(includeLabels.sorted().map { .string($0) }),
        ]
        if let agent { selection["agent"] = .string(agent) }
        if let evalID { selection["eval"] = .string(evalID) }
        if passed { selection["passed"] = true }
        let manifest: JSONValue = [
            "format": "openai-chat-finetune", "file": .string(URL(fileURLWithPath: output).lastPathComponent), "examples": .number(Double(count)),
            "runs": .array(runs.records.map { .string($0.id) }), "selection": .object(selection),
            "excluded": .object(excluded.mapValues { .number(Double($0)) }),
        ]
        guard FileManager.default.createFile(atPath: output + ".manifest.json", contents: Data(manifest.serialized() + [10])) else {
            printError("chorus runs export: cannot write \(output).manifest.json")
            throw ExitCode(1)
        }
    }

    /// The runs to draw from, oldest first, and how many an eval names that are gone (pruned);
    /// `none` says why there are none.
    private func fineTuneRuns(store: any TraceBackend) throws -> (records: [RunRecord], missing: Int, none: String) {
        if let evalID {
            guard let eval = try store.eval(matching: evalID) else {
                printError("chorus runs export: no eval '\(evalID)' in \(store.path) (or the prefix is not unique)")
                throw ExitCode(1)
            }
            let results = try store.evalResults(of: eval.id).filter { !passed || $0.passed }
            var records: [RunRecord] = []
            var missing = 0
            for id in results.compactMap(\.runID) {
                if let record = try store.run(matching: id) { records.append(record) } else { missing += 1 }
            }
            return (records, missing, passed ? "no run of eval \(eval.id) passed" : "eval \(eval.id) has no runs")
        }
        if runIDs.isEmpty { return (Array(try store.runs(limit: Int(Int32.max)).reversed()), 0, "no runs in the trace") }
        return (try runIDs.map { try RunsCommand.find($0, in: store, command: "runs export") }, 0, "")
    }

    /// Masks for every secret the trace's redaction knows: values of the environment's
    /// key-like variables (as every diagnostic line is masked) and the keys the runs' models
    /// were called with (a provider may echo its key back in an answer).
    private static func redactors(for runs: [RunRecord]) -> [SecretRedactor] {
        let environment = ProcessInfo.processInfo.environment
        var keys: Set<String> = []
        for path in Set(runs.compactMap(\.configPath)) {
            guard case .success(let config) = SpecLoader.loadConfig(path) else { continue }
            for model in config.models.values {
                if let variable = model.apiKeyEnv, let key = environment[variable] { keys.insert(key) }
            }
        }
        // Longest first, so a key that holds another is masked whole.
        return SecretRedactor.fromEnvironment(environment) + keys.sorted { $0.utf8.count > $1.utf8.count }.compactMap(SecretRedactor.init)
    }
}
