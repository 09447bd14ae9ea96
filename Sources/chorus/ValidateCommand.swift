import ArgumentParser
import Chorus
import Foundation

/// `chorus validate`: checks workflow, agent and configuration files without running them.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check chorus.json, agent and workflow files; report every problem with file, JSON path and what was expected.",
        discussion: "A workflow is checked together with its agents and the models file (--config). Exit status 2 when anything is wrong."
    )

    @Argument(help: "Files to check: workflows, agents, chorus.json or eval datasets (.jsonl).")
    var files: [String]

    @Option(
        name: .customLong("config"),
        help: "The models file used to check workflows and agents (default: chorus.json here, else the nearest above the workflow file).")
    var configPath: String?

    @Option(help: "The workflow eval datasets are for: each case's inputs are checked against its declared inputs.")
    var workflow: String?

    func run() throws {
        var issues: [ValidationIssue] = []
        var warnings: [ValidationIssue] = []
        for file in files {
            switch Self.kind(of: file) {
            case .config:
                if case .failure(let failure) = SpecLoader.loadConfig(file) { issues += failure.issues }
            case .tool:
                if case .failure(let failure) = SpecLoader.loadTool(file) { issues += failure.issues }
            case .agent:
                switch SpecLoader.loadAgent(file) {
                case .success(let agent): warnings += SpecLoader.warnings(for: agent)
                case .failure(let failure): issues += failure.issues
                }
            case .workflow:
                switch SpecLoader.loadProject(workflow: file, config: configPath ?? SpecLoader.configPath(forWorkflow: file)) {
                case .success(let project): warnings += project.agents.values.sorted { $0.path < $1.path }.flatMap(SpecLoader.warnings(for:))
                case .failure(let failure): issues += failure.issues
                }
            case .evalCases:
                var project: Project?
                if let workflow {
                    switch SpecLoader.loadProject(workflow: workflow, config: configPath ?? SpecLoader.configPath(forWorkflow: workflow)) {
                    case .success(let loaded): project = loaded
                    case .failure(let failure): issues += failure.issues
                    }
                }
                switch EvalCases.load(file, workflow: project?.workflow, agents: project?.agents ?? [:]) {
                case .success(let cases):
                    warnings += EvalCases.warnings(cases, file: file)
                    // Judges load, and may see what they judge (the data boundary).
                    if let project {
                        do { _ = try EvalPlan.judges(for: cases, project: project) } catch {
                            issues.append(ValidationIssue(file: file, path: "$", message: error.description))
                        }
                    }
                case .failure(let failure): issues += failure.issues
                }
            }
        }
        var shown = Set<ValidationIssue>()
        for warning in warnings where shown.insert(warning).inserted { printError("warning: \(warning.description)") }
        var seen = Set<ValidationIssue>()
        let unique = issues.filter { seen.insert($0).inserted }
        for issue in unique { printError(issue.description) }
        if !unique.isEmpty {
            printError("\(unique.count) problem\(unique.count == 1 ? "" : "s") found")
            throw ExitCode(2)
        }
        print("\(files.count) file\(files.count == 1 ? "" : "s") OK")
    }

    enum Kind { case config, agent, workflow, tool, evalCases }

    /// A file's kind from its top-level keys: `models` → configuration, `nodes` →
    /// workflow, `subprocess`/`http`/`mcp` without a prompt (or a file in tools/) → tool,
    /// anything else → agent (so a broken file still gets the right checks).
    static func kind(of file: String) -> Kind {
        if URL(fileURLWithPath: file).lastPathComponent == "chorus.json" { return .config }
        if file.hasSuffix(".jsonl") { return .evalCases }
        let text = (FileManager.default.contents(atPath: file)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        if text.contains("\"models\"") && !text.contains("\"nodes\"") && !text.contains("\"prompt\"") { return .config }
        if text.contains("\"nodes\"") { return .workflow }
        // A tool file names how it runs (and has no prompt); its folder says so too.
        let runs = ["\"subprocess\"", "\"http\"", "\"mcp\""].contains { text.contains($0) }
        if !text.contains("\"prompt\"") && (runs || URL(fileURLWithPath: file).deletingLastPathComponent().lastPathComponent == "tools") { return .tool }
        return .agent
    }
}
