import GRDB

/// One `chorus eval`: a workflow graded on a dataset under several model configurations.
/// Each case under each variant is a run of its own, linked by an `EvalResultRecord`.
public struct EvalRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "eval"
    /// Sortable id, like a run's (`20261202-190512-a1b2c3`).
    public var id: String
    /// The workflow's name and file.
    public var workflow: String
    /// The workflow file as given.
    public var workflowPath: String
    /// The dataset file as given, and the SHA-256 of its bytes when the eval ran.
    public var casesPath: String
    /// SHA-256 of the dataset's bytes when the eval ran: a re-grade checks it is the same dataset.
    public var casesDigest: String
    /// The chorus.json used, as given (never its contents).
    public var configPath: String?
    /// The variants, in order: `[{"name": …, "swaps": {…}}]`.
    public var variantsJSON: String
    /// How it ran: reuse_plan, parallel cases, the eval it re-grades.
    public var optionsJSON: String?
    /// running, finished or interrupted.
    public var status: String
    /// Seconds since 1970, as every time in the trace.
    public var startedAt: Double
    /// When it finished or was interrupted; nil while it runs.
    public var endedAt: Double?
    /// The eval this one re-grades (`chorus eval --replay`), when it does.
    public var sourceEvalID: String?

    /// A new eval, `running`.
    public init(
        id: String, workflow: String, workflowPath: String, casesPath: String, casesDigest: String, configPath: String?,
        variantsJSON: String, optionsJSON: String?, startedAt: Double, sourceEvalID: String? = nil
    ) {
        self.id = id
        self.workflow = workflow
        self.workflowPath = workflowPath
        self.casesPath = casesPath
        self.casesDigest = casesDigest
        self.configPath = configPath
        self.variantsJSON = variantsJSON
        self.optionsJSON = optionsJSON
        status = "running"
        self.startedAt = startedAt
        self.sourceEvalID = sourceEvalID
    }
}

/// One case under one variant: its run, its grades and what it cost.
public struct EvalResultRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
    public static let databaseTableName = "evalResult"
    /// The eval it belongs to.
    public var evalID: String
    /// The variant's name (`as-configured`, or one of `--variant`).
    public var variant: String
    /// The case's id in the dataset.
    public var caseID: String
    /// The case's position in the dataset, from 0.
    public var caseIndex: Int
    /// The run (nil when it could not start); runs pruned since are gone from the trace.
    public var runID: String?
    /// The run's status.
    public var runStatus: String
    /// Every expectation held and the run succeeded.
    public var passed: Bool
    /// Mean of the expectations' scores (0…1).
    public var score: Double
    /// `[{"expectation", "passed", "score", "reason"?, "judge_run_id"?}]`.
    public var gradesJSON: String
    /// Why the case could not be run or graded, one line.
    public var error: String?
    /// The run's cost and tokens, judges excluded (their runs are linked from the grades).
    public var cost: Double
    /// Tokens read, judges excluded.
    public var tokensIn: Int
    /// Tokens written, judges excluded.
    public var tokensOut: Int
    /// Model calls the run made, retries and escalations included.
    public var calls: Int
    /// Wall time of the run.
    public var latencyMs: Double
    /// Steps that called a model, and those of them that escalated to a larger one.
    public var modelSteps: Int
    /// Of `modelSteps`, those that escalated to a larger model.
    public var escalatedSteps: Int

    /// A case's result as the evaluator records it.
    public init(
        evalID: String, variant: String, caseID: String, caseIndex: Int, runID: String?, runStatus: String, passed: Bool,
        score: Double, gradesJSON: String, error: String?, cost: Double, tokensIn: Int, tokensOut: Int, calls: Int,
        latencyMs: Double, modelSteps: Int, escalatedSteps: Int
    ) {
        self.evalID = evalID
        self.variant = variant
        self.caseID = caseID
        self.caseIndex = caseIndex
        self.runID = runID
        self.runStatus = runStatus
        self.passed = passed
        self.score = score
        self.gradesJSON = gradesJSON
        self.error = error
        self.cost = cost
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.calls = calls
        self.latencyMs = latencyMs
        self.modelSteps = modelSteps
        self.escalatedSteps = escalatedSteps
    }
}

extension TraceStore {
    /// Evals newest first.
    public func evals(limit: Int = 50) throws -> [EvalRecord] {
        try pool.read { db in try EvalRecord.order(Column("startedAt").desc).limit(limit).fetchAll(db) }
    }

    /// The eval with this id, or the only one whose id starts with it.
    public func eval(matching id: String) throws -> EvalRecord? {
        try pool.read { db in
            if let exact = try EvalRecord.fetchOne(db, key: id) { return exact }
            let matches = try EvalRecord.filter(Column("id").like("\(id)%")).limit(2).fetchAll(db)
            return matches.count == 1 ? matches[0] : nil
        }
    }

    /// An eval's results, by case then variant order of insertion.
    public func evalResults(of id: String) throws -> [EvalResultRecord] {
        try pool.read { db in
            try EvalResultRecord.filter(Column("evalID") == id).order(Column("caseIndex"), Column("rowid")).fetchAll(db)
        }
    }
}
