import ChorusJSON
import Foundation

/// Where the loader reads spec files: the file system, or — for a project built in code —
/// files held in memory for the duration of one load, so both go through the same schemas
/// and cross-file checks and report problems the same way.
enum SpecFiles {
    @TaskLocal static var inMemory: [String: Data]?

    static func contents(_ path: String) -> Data? {
        if let files = inMemory { return files[path] }
        return FileManager.default.contents(atPath: path)
    }

    static func exists(_ path: String) -> Bool {
        if let files = inMemory { return files[path] != nil }
        return FileManager.default.fileExists(atPath: path)
    }
}

extension Project {
    /// The project of the workflow file at `workflow`, with the models of `config` (default:
    /// chorus.json here, else the nearest above the workflow file), its agents and tools
    /// from the folders the workflow names; every problem found is in the error.
    public init(loading workflow: String, config: String? = nil) throws(ValidationFailure) {
        self = try SpecLoader.loadProject(workflow: workflow, config: config ?? SpecLoader.configPath(forWorkflow: workflow)).get()
    }

    /// A project built in code: the same JSON a project's files hold — a workflow, its
    /// agents and tools (each named by its `name`), and the models (`{"models": {…}}`, as
    /// chorus.json) — checked exactly as files are. Problems name the file each would be,
    /// under `/inline` (`/inline/agents/researcher.json: $.model: …`).
    public init(workflow: JSONValue, agents: [JSONValue], models: JSONValue, tools: [JSONValue] = []) throws(ValidationFailure) {
        let root = "/inline"
        let name = workflow["name"]?.stringValue ?? "workflow"
        var files: [String: Data] = ["\(root)/chorus.json": Data(models.text.utf8), "\(root)/workflows/\(name).json": Data(workflow.text.utf8)]
        for (folder, specs) in [("agents", agents), ("tools", tools)] {
            for (i, spec) in specs.enumerated() {
                guard let specName = spec["name"]?.stringValue, !specName.isEmpty, !specName.contains("/") else {
                    throw ValidationFailure([ValidationIssue(file: "\(root)/\(folder)[\(i)]", path: "$.name", message: "expected a name (the file's name)")])
                }
                files["\(root)/\(folder)/\(specName).json"] = Data(spec.text.utf8)
            }
        }
        let result = SpecFiles.$inMemory.withValue(files) {
            SpecLoader.loadProject(workflow: "\(root)/workflows/\(name).json", config: "\(root)/chorus.json")
        }
        self = try result.get()
    }
}
