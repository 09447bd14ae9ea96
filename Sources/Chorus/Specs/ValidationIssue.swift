/// One thing wrong with a file a user wrote: the file, where in it, and what was expected.
public struct ValidationIssue: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file, as the user named it.
    public var file: String
    /// JSON path inside the file (`$.nodes.plan.agent`), or `line L, column C` for syntax.
    public var path: String
    /// What was expected, or what is wrong.
    public var message: String

    /// An issue at `path` of `file`.
    public init(file: String, path: String, message: String) {
        self.file = file
        self.path = path
        self.message = message
    }

    public var description: String { "\(file): \(path): \(message)" }
}

/// Several issues at once: `chorus validate` and `chorus run` report them all together.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    /// Every issue found, in file order.
    public var issues: [ValidationIssue]

    /// A failure made of `issues`.
    public init(_ issues: [ValidationIssue]) { self.issues = issues }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
