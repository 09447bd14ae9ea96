import GRDB

/// The trace database's schema, changed only through named, versioned migrations.
enum TraceSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 runs, steps, model calls, content-addressed blobs, events") { db in
            try db.create(table: "run") { t in
                t.primaryKey("id", .text)
                t.column("workflow", .text).notNull()
                t.column("workflowPath", .text).notNull()
                t.column("inputsJSON", .text).notNull()
                t.column("status", .text).notNull()
                t.column("startedAt", .double).notNull()
                t.column("endedAt", .double)
                t.column("outputJSON", .text)
                t.column("error", .text)
                t.column("tokensIn", .integer).notNull().defaults(to: 0)
                t.column("tokensOut", .integer).notNull().defaults(to: 0)
                t.column("cost", .double).notNull().defaults(to: 0)
                t.column("parentRunID", .text).references("run", onDelete: .setNull)
            }
            try db.create(table: "step") { t in
                t.column("runID", .text).notNull().references("run", onDelete: .cascade)
                t.column("path", .text).notNull()
                t.column("node", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("itemIndex", .integer)
                t.column("agent", .text)
                t.column("model", .text)
                t.column("status", .text).notNull()
                t.column("startedAt", .double).notNull()
                t.column("endedAt", .double)
                t.column("outputJSON", .text)
                t.column("provenanceJSON", .text)
                t.column("error", .text)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("tokensIn", .integer).notNull().defaults(to: 0)
                t.column("tokensOut", .integer).notNull().defaults(to: 0)
                t.column("cost", .double).notNull().defaults(to: 0)
                t.primaryKey(["runID", "path"])
            }
            try db.create(table: "blob") { t in
                t.primaryKey("hash", .text)
                t.column("size", .integer).notNull()
                t.column("bytes", .blob).notNull()
            }
            try db.create(table: "modelCall") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("runID", .text).notNull().references("run", onDelete: .cascade)
                t.column("stepPath", .text).notNull()
                t.column("attempt", .integer).notNull()
                t.column("model", .text).notNull()
                t.column("providerModel", .text).notNull()
                t.column("url", .text).notNull()
                t.column("requestHash", .text).notNull().references("blob")
                t.column("responseHash", .text).references("blob")
                t.column("httpStatus", .integer)
                t.column("error", .text)
                t.column("tokensIn", .integer).notNull()
                t.column("tokensOut", .integer).notNull()
                t.column("cost", .double).notNull()
                t.column("latencyMs", .double).notNull()
                t.column("startedAt", .double).notNull()
            }
            try db.create(index: "modelCall_run_step", on: "modelCall", columns: ["runID", "stepPath", "attempt"])
            try db.create(table: "event") { t in
                t.column("runID", .text).notNull().references("run", onDelete: .cascade)
                t.column("seq", .integer).notNull()
                t.column("at", .double).notNull()
                t.column("kind", .text).notNull()
                t.column("stepPath", .text)
                t.column("detailJSON", .text)
                t.primaryKey(["runID", "seq"])
            }
        }
        migrator.registerMigration("v2 run owner process, to tell abandoned runs from live ones") { db in
            try db.alter(table: "run") { t in
                t.add(column: "ownerPID", .integer)
                t.add(column: "ownerHost", .text)
            }
        }
        migrator.registerMigration("v3 audit chain, resume locks, full-text search") { db in
            // Each event's hash chains to the previous one and commits to the rows it seals
            // (those whose sealSeq is its seq); see TraceChain.
            try db.alter(table: "event") { t in
                t.add(column: "hash", .text)
                t.add(column: "contentHash", .text)
            }
            // How a run relates to its parent: replay, fork or resume.
            try db.alter(table: "run") { t in t.add(column: "relation", .text) }
            for table in ["run", "step", "modelCall"] {
                try db.alter(table: table) { t in t.add(column: "sealSeq", .integer) }
            }
            try db.create(index: "step_run_seal", on: "step", columns: ["runID", "sealSeq"])
            try db.create(index: "modelCall_run_seal", on: "modelCall", columns: ["runID", "sealSeq"])
            try db.create(index: "modelCall_response", on: "modelCall", columns: ["responseHash"])
            try db.create(index: "modelCall_request", on: "modelCall", columns: ["requestHash"])
            // Bodies: kind 0 whole, 1 a skeleton whose long strings are parts, 2 a part
            // (BodyParts); blobPart says which skeleton uses which part.
            try db.alter(table: "blob") { t in t.add(column: "kind", .integer).notNull().defaults(to: 0) }
            try db.create(table: "blobPart") { t in
                t.column("body", .text).notNull()
                t.column("part", .text).notNull()
                t.primaryKey(["body", "part"])
            }
            try db.create(index: "blobPart_part", on: "blobPart", columns: ["part"])
            // Who is resuming a run: one row per run, taken in a write transaction.
            try db.create(table: "runLock") { t in
                t.primaryKey("runID", .text)
                t.column("ownerPID", .integer).notNull()
                t.column("ownerHost", .text).notNull()
                t.column("acquiredAt", .double).notNull()
            }
            // Prompt and response text, one row per blob (rowid = the blob's rowid), filled
            // in by `chorus runs search` so a run pays nothing for it.
            try db.execute(sql: "CREATE VIRTUAL TABLE blobText USING fts5(text, tokenize = 'unicode61')")
            try db.execute(sql: "CREATE TABLE blobTextIndexed (upTo INTEGER NOT NULL)")
            try db.execute(sql: "INSERT INTO blobTextIndexed (upTo) VALUES (0)")
        }
        migrator.registerMigration("v4 fewer indexes on the write path") { db in
            // Each was one more B-tree insert per step or call; the two on body hashes (random
            // keys) cost a fifth of the trace writer's throughput (chorus-bench --trace-db:
            // 18,600 calls/s with them, 22,500 without). Verify finds sealed rows through the
            // run-prefixed primary key and modelCall_run_step; prune and search, which look
            // calls up by body hash, scan modelCall once per command instead.
            for index in ["step_run_seal", "modelCall_run_seal", "modelCall_request", "modelCall_response"] {
                try db.execute(sql: "DROP INDEX IF EXISTS \(index)")
            }
        }
        migrator.registerMigration("v5 finish reason and time to first token per call, config path per run") { db in
            try db.alter(table: "modelCall") { t in
                t.add(column: "finishReason", .text)
                t.add(column: "firstTokenMs", .double)
            }
            try db.alter(table: "run") { t in t.add(column: "configPath", .text) }
        }
        migrator.registerMigration("v6 a typed outcome per model call") { db in
            // answered, invalid, tool_calls, failed or cancelled: before, "cancelled" was a
            // string in `error` that replay compared against. Older rows stay NULL (their
            // digests seal them as they are); ModelCallRecord.callOutcome derives theirs.
            try db.alter(table: "modelCall") { t in t.add(column: "outcome", .text) }
        }
        migrator.registerMigration("v7 tool calls") { db in
            // One row per tool call an answer asked for; input and output are content-addressed
            // blobs like request and response bodies, and the audit chain seals each row.
            try db.create(table: "toolCall") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("runID", .text).notNull().references("run", onDelete: .cascade)
                t.column("stepPath", .text).notNull()
                t.column("attempt", .integer).notNull()
                t.column("callIndex", .integer).notNull()
                t.column("callID", .text).notNull()
                t.column("tool", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("inputHash", .text).notNull().references("blob")
                t.column("outputHash", .text).notNull().references("blob")
                t.column("isError", .boolean).notNull()
                t.column("exitStatus", .integer)
                t.column("error", .text)
                t.column("latencyMs", .double).notNull()
                t.column("startedAt", .double).notNull()
                t.column("sealSeq", .integer)
            }
            try db.create(index: "toolCall_run_step", on: "toolCall", columns: ["runID", "stepPath", "attempt"])
        }
        migrator.registerMigration("v8 evals and their results") { db in
            // An eval's rows point at runs by id without a foreign key: pruning old runs
            // keeps the eval's figures (the results carry them) and drops only the detail.
            try db.create(table: "eval") { t in
                t.primaryKey("id", .text)
                t.column("workflow", .text).notNull()
                t.column("workflowPath", .text).notNull()
                t.column("casesPath", .text).notNull()
                t.column("casesDigest", .text).notNull()
                t.column("configPath", .text)
                t.column("variantsJSON", .text).notNull()
                t.column("optionsJSON", .text)
                t.column("status", .text).notNull()
                t.column("startedAt", .double).notNull()
                t.column("endedAt", .double)
                t.column("sourceEvalID", .text)
            }
            try db.create(table: "evalResult") { t in
                t.column("evalID", .text).notNull().references("eval", onDelete: .cascade)
                t.column("variant", .text).notNull()
                t.column("caseID", .text).notNull()
                t.column("caseIndex", .integer).notNull()
                t.column("runID", .text)
                t.column("runStatus", .text).notNull()
                t.column("passed", .boolean).notNull()
                t.column("score", .double).notNull()
                t.column("gradesJSON", .text).notNull()
                t.column("error", .text)
                t.column("cost", .double).notNull()
                t.column("tokensIn", .integer).notNull()
                t.column("tokensOut", .integer).notNull()
                t.column("calls", .integer).notNull()
                t.column("latencyMs", .double).notNull()
                t.column("modelSteps", .integer).notNull()
                t.column("escalatedSteps", .integer).notNull()
                t.uniqueKey(["evalID", "variant", "caseID"], onConflict: .replace)
            }
        }
        return migrator
    }
}
