// The JSON Schemas of the file kinds, embedded so the binary validates without
// the repository. The files in schemas/ are the source; ValidationCorpusTests fails when these
// copies drift from them.

import ChorusJSON

/// JSON Schemas for chorus.json, agent files and workflow files.
package enum SpecSchemas {
    /// The schema of chorus files, as shipped in schemas/chorus.schema.json.
    package static let chorus = #"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://chorus.dev/schemas/chorus.schema.json",
          "title": "Chorus configuration (chorus.json)",
          "description": "The models Chorus may call: provider, endpoint, key variable, prices and limits.",
          "type": "object",
          "additionalProperties": false,
          "required": ["models"],
          "properties": {
            "$schema": {"type": "string"},
            "description": {"type": "string"},
            "models": {
              "type": "object",
              "description": "Models by the name agents use.",
              "minProperties": 1,
              "additionalProperties": {"$ref": "#/$defs/model"}
            }
          },
          "$defs": {
            "model": {
              "type": "object",
              "additionalProperties": false,
              "required": ["provider", "base_url", "model"],
              "properties": {
                "description": {"type": "string"},
                "provider": {"enum": ["openai", "anthropic"], "description": "openai: any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama, LM Studio); anthropic: the Messages API."},
                "base_url": {"type": "string", "pattern": "^https?://", "description": "Endpoint root, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1."},
                "model": {"type": "string", "minLength": 1, "description": "The provider's model id."},
                "api_key_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "Environment variable holding the API key. Keys are read from the environment only and never written to a trace or log."},
                "price": {
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "input_per_mtok": {"type": "number", "minimum": 0, "maximum": 1000000},
                    "output_per_mtok": {"type": "number", "minimum": 0, "maximum": 1000000}
                  }
                },
                "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 1000000, "description": "Requests in flight to this model at most, across every node."},
                "approval": {"enum": ["always"], "description": "always: a call to this model waits for a person (chorus approve RUN model:NAME); the run pauses (exit 4) and a resume runs the step again."},
                "accepts": {"type": "array", "maxItems": 64, "uniqueItems": true, "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "description": "The data labels this model may receive; a request carrying any other is never sent to it (escalation skips it). Without accepts, every label."},
                "budget": {"type": "object", "additionalProperties": false, "properties": {"usd": {"type": "number", "minimum": 0, "maximum": 1000000000}, "tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000000}, "calls": {"type": "integer", "minimum": 0, "maximum": 1000000000}}, "description": "What one run may spend on this model (usd, tokens, calls), reserved before each call like the run's budget."},
                "requests_per_minute": {"type": "integer", "minimum": 1, "maximum": 1000000000},
                "tokens_per_minute": {"type": "integer", "minimum": 1, "maximum": 1000000000000},
                "anthropic_version": {"type": "string", "description": "The anthropic-version header; by default the one the current official SDK sends."},
                "structured_output": {"enum": ["json_schema", "json_object", "tool", "prompt"], "description": "How an agent's output_schema is sent. json_schema (default): OpenAI response_format json_schema (OpenAI, vLLM, llama.cpp's llama-server), Anthropic output_config.format. json_object: the schema as an instruction plus JSON mode (llama-cpp-python's server, older servers; OpenAI only). tool: a forced call of one tool whose input schema is the output schema. prompt: the instruction alone. Answers are always validated."},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 10000000, "description": "max_tokens for agents that set none (default 1024). Every request carries a limit."},
                "stream": {"type": "boolean", "description": "Stream answers as server-sent events (default true): time to first token is recorded and a stalled stream fails after idle_timeout_s."},
                "idle_timeout_s": {"type": "number", "minimum": 1, "maximum": 86400, "description": "A streamed call that receives no byte for this many seconds fails as transient (default 30)."},
                "max_response_bytes": {"type": "integer", "minimum": 1024, "maximum": 1073741824, "description": "The largest response body accepted, counted as bytes arrive; past it the transfer stops and the model is treated as unable to answer (default 16 MiB)."}
              }
            }
          }
        }
        """#

    /// The schema of agent files, as shipped in schemas/agent.schema.json.
    package static let agent = #"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://chorus.dev/schemas/agent.schema.json",
          "title": "Chorus agent (agents/NAME.json)",
          "type": "object",
          "additionalProperties": false,
          "required": ["name", "model", "prompt"],
          "$defs": {
            "guard": {
              "type": "object", "additionalProperties": false, "required": ["type"],
              "properties": {
                "type": {"enum": ["regex", "pii", "max_chars", "schema", "agent"], "description": "regex: pattern; pii: emails, phone numbers, IBANs (checksum), card numbers (Luhn), API-key shapes; max_chars: max; schema: the output as JSON must satisfy schema; agent: another agent (an LLM judge, {{text}} and {{stage}} in its prompt) answers {\"allow\": bool, \"reason\": …}."},
                "agent": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "description": "agent: the judge agent's name."},
                "action": {"enum": ["deny", "redact"], "description": "deny (default) or redact (regex and pii)."},
                "pattern": {"type": "string", "minLength": 1, "maxLength": 4096},
                "max": {"type": "integer", "minimum": 1, "maximum": 100000000},
                "schema": {"type": "object"}
              }
            }
          },
          "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "description": {"type": "string"},
            "model": {
              "description": "A model name from chorus.json, or an ordered list: small first, escalated to the next when an answer fails validation or the retries run out.",
              "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
              ]
            },
            "system": {"type": "string", "description": "System prompt (Mustache template)."},
            "prompt": {"type": "string", "minLength": 1, "description": "User prompt (Mustache template)."},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 10000000, "description": "Upper bound on generated tokens; default the model's max_tokens, else 1024. An answer cut there is reported as truncated."},
            "output_schema": {"type": "object", "description": "JSON Schema the answer must satisfy; sent the way the model's structured_output says (json_schema, json_object, tool or prompt) and always checked."},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
            "retries": {"type": "integer", "minimum": 0, "maximum": 20},
            "tools": {"type": "array", "maxItems": 128, "uniqueItems": true, "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": "Tools the agent may call, by the name of their file in tools/ (see tools_dir in the workflow)."},
            "guards": {
              "type": "object", "additionalProperties": false,
              "description": "Checks in order: input guards on the rendered prompts before any request is sent (deny fails the step, nothing sent; redact replaces what matched); output guards on the answer before it is accepted (deny is retried and escalated like a schema failure). Every verdict is in the trace.",
              "properties": {
                "input": {"type": "array", "maxItems": 32, "items": {"$ref": "#/$defs/guard"}},
                "output": {"type": "array", "maxItems": 32, "items": {"$ref": "#/$defs/guard"}}
              }
            },
            "max_tool_rounds": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Model → tools → model rounds before the answer must be final (default 8)."}
          }
        }
        """#

    /// The schema of workflow files, as shipped in schemas/workflow.schema.json.
    package static let workflow = #"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://chorus.dev/schemas/workflow.schema.json",
          "title": "Chorus workflow (workflows/NAME.json)",
          "type": "object",
          "additionalProperties": false,
          "required": ["name", "nodes", "output"],
          "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "description": {"type": "string"},
            "agents_dir": {"type": "string", "description": "Where agent files are: relative to this file, or absolute (default ../agents)."},
            "tools_dir": {"type": "string", "description": "Where tool files are: relative to this file, or absolute (default ../tools)."},
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
            "nodes": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/node"}},
            "budget": {
              "type": "object", "additionalProperties": false,
              "description": "What one run may spend; the command line's --budget-usd/--budget-tokens/--budget-calls override these. Each call reserves its worst case first (prompt bytes as tokens + max_tokens, at the model's price) and is refused when that cannot fit.",
              "properties": {
                "usd": {"type": "number", "minimum": 0, "maximum": 1000000000, "description": "Dollars, counted in whole micro-dollars."},
                "tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000000},
                "calls": {"type": "integer", "minimum": 0, "maximum": 1000000000}
              }
            },
            "output": {"type": "string", "description": "The node whose output is the run's output."}
          },
          "$defs": {
            "input": {
              "type": "object",
              "additionalProperties": false,
              "required": ["type"],
              "properties": {
                "type": {"enum": ["string", "number", "integer", "boolean", "array", "object"]},
                "description": {"type": "string"},
                "default": {},
                "labels": {"type": "array", "maxItems": 64, "uniqueItems": true, "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "description": "What this input is (pii, eu-only, …): everything derived from it carries the labels, and a model whose accepts lacks one never receives it."}
              }
            },
            "minSuccess": {
              "description": "Successful items needed: a count (1 or more) or a fraction (above 0, at most 1).",
              "type": "number", "exclusiveMinimum": 0, "maximum": 1000000000
            },
            "reconcile": {
              "type": "object",
              "additionalProperties": false,
              "required": ["strategy"],
              "properties": {
                "strategy": {"enum": ["collect", "concat", "merge", "vote", "first_success", "agent"]},
                "agent": {"type": "string", "description": "The synthesiser, for strategy agent."},
                "conflict": {"enum": ["first", "last", "error"], "description": "For merge: which value wins when two objects disagree on a key."},
                "vote_field": {"type": "string", "description": "For vote over JSON objects: the field that holds the answer."},
                "separator": {"type": "string", "description": "For concat."}
              }
            },
            "node": {
              "type": "object",
              "additionalProperties": false,
              "required": ["kind"],
              "properties": {
                "kind": {"enum": ["agent", "foreach", "lead", "reconcile", "route"]},
                "description": {"type": "string"},
                "needs": {"type": "array", "items": {"type": "string"}, "description": "Nodes that must finish first (references in templates and 'over'/'from' add theirs)."},
                "agent": {"type": "string", "description": "agent and foreach: the agent called."},
                "over": {"type": "string", "description": "foreach: NODE.path to an array produced upstream."},
                "max_parallel": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "min_success": {"$ref": "#/$defs/minSuccess"},
                "approval": {
                  "anyOf": [
                    {"enum": ["always", "on_escalation"]},
                    {"type": "object", "additionalProperties": false, "required": ["over_usd"], "properties": {"over_usd": {"type": "number", "minimum": 0, "maximum": 1000000}}}
                  ],
                  "description": "When a person must approve (chorus approve RUN NODE / chorus deny RUN NODE) before the node's steps go on: always (before any call), on_escalation (before a step hands over to its next, larger model), or {\"over_usd\": 0.10} (before a call whose worst case costs more). The run pauses durably as awaiting_approval (exit 4); chorus resume continues it."
                },
                "budget": {"type": "object", "additionalProperties": false, "properties": {"usd": {"type": "number", "minimum": 0, "maximum": 1000000000}, "tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000000}, "calls": {"type": "integer", "minimum": 0, "maximum": 1000000000}}, "description": "What one run may spend in this node (usd, tokens, calls), reserved before each call like the run's budget."},
                "lead": {"type": "string", "description": "lead: the planning agent; answers {\"subtasks\": [...], \"done\": bool}."},
                "worker": {"type": "string", "description": "lead: the agent each subtask goes to."},
                "max_rounds": {"type": "integer", "minimum": 1, "maximum": 20},
                "max_subtasks": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "schedule": {"enum": ["rounds", "as_completed"], "description": "lead: rounds (default) plans a round, waits for all of it, then plans the next; as_completed calls the lead again as soon as replan_after findings have arrived, its new subtasks starting beside those still running (one lead call at a time; max_rounds counts lead calls)."},
                "replan_after": {"type": "integer", "minimum": 1, "maximum": 1000000, "description": "lead, as_completed: findings since the last lead call that trigger the next (default: half of the subtasks outstanding when the last call answered, at least 1)."},
                "on_done": {"enum": ["wait", "cancel"], "description": "lead, as_completed: when the lead says done, the subtasks still running finish and are reconciled (wait, default) or are cancelled (cancel), recorded as cancelled."},
                "on": {"type": "string", "description": "route: the field of the agent's answer that holds the label (an enum in its output_schema)."},
                "cases": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "array", "items": {"type": "string"}}, "description": "route: label → the nodes that run when the agent picks it; the nodes of other cases, and what depends only on them, are skipped."},
                "default": {"type": "array", "items": {"type": "string"}, "description": "route: the nodes that run when the label has no case."},
                "when": {"type": "object", "description": "Run the node only when this holds; otherwise it is skipped (recorded as skipped, never failed, not counted against min_success). {\"path\": \"NODE.field\" or \"inputs.name\", and one of equals, in, exists, gt, gte, lt, lte}, or {\"not\": …}, {\"all\": […]}, {\"any\": […]}."},
                "reconcile": {"$ref": "#/$defs/reconcile"},
                "from": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}], "description": "reconcile: the node(s) whose outputs are reconciled."},
                "strategy": {"enum": ["collect", "concat", "merge", "vote", "first_success", "agent"]},
                "conflict": {"enum": ["first", "last", "error"]},
                "vote_field": {"type": "string"},
                "separator": {"type": "string"}
              }
            }
          }
        }
        """#

    /// The schema of tool files, as shipped in schemas/tool.schema.json.
    package static let tool = #"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://chorus.dev/schemas/tool.schema.json",
          "title": "Chorus tool (tools/NAME.json)",
          "description": "A tool agents may call: a subprocess, an HTTP endpoint, or the tools of an MCP server. Exactly one of subprocess, http and mcp.",
          "type": "object",
          "additionalProperties": false,
          "required": ["name"],
          "oneOf": [{"required": ["subprocess"]}, {"required": ["http"]}, {"required": ["mcp"]}],
          "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "What agents list in tools, and (for subprocess and http) the name the model sees."},
            "description": {"type": "string", "maxLength": 4096, "description": "What the tool does, for the model."},
            "approval": {"enum": ["always"], "description": "always: a step that would run this tool waits for a person (chorus approve RUN tool:NAME); the run pauses (exit 4) and a resume runs the step again."},
            "labels": {"type": "array", "maxItems": 64, "uniqueItems": true, "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "description": "Labels of what the tool returns: the conversation it enters, and everything derived, carries them."},
            "input_schema": {"type": "object", "description": "JSON Schema of the tool's input (an object); required for subprocess and http. Inputs that fail it are returned to the model as a tool error, never run."},
            "subprocess": {
              "type": "object",
              "additionalProperties": false,
              "required": ["argv"],
              "properties": {
                "argv": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string", "maxLength": 65536}, "description": "Program and arguments, never through a shell. An argument may be a Mustache template over input (e.g. \"{{input.path}}\")."},
                "stdin": {"enum": ["json", "none"], "description": "json (default): the input as one JSON object on standard input."},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400, "description": "Killed (SIGKILL) after this long; default 30."},
                "max_output_bytes": {"type": "integer", "minimum": 1, "maximum": 268435456, "description": "Standard output kept, the rest dropped and marked truncated; default 1 MiB."},
                "cwd": {"type": "string", "description": "Working directory, relative to the tool file; default the current directory."},
                "env": {"type": "array", "maxItems": 256, "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}, "description": "Environment variables passed through (default PATH, HOME, LANG). Nothing else reaches the tool: not the API keys of chorus.json unless listed here."}
              }
            },
            "http": {
              "type": "object",
              "additionalProperties": false,
              "required": ["url"],
              "properties": {
                "method": {"enum": ["GET", "POST", "PUT", "DELETE"], "description": "Default POST, with the input as a JSON body; GET sends no body."},
                "url": {"type": "string", "minLength": 1, "maxLength": 65536, "description": "Mustache template over input (values are percent-encoded)."},
                "headers": {"type": "object", "maxProperties": 64, "additionalProperties": {"type": "string"}, "description": "Header values may name environment variables: {{env.SEARCH_KEY}}."},
                "allow_hosts": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string", "minLength": 1}, "description": "Hosts the URL may reach; default the URL template's own host. Any other is refused before a byte is sent."},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                "max_response_bytes": {"type": "integer", "minimum": 1, "maximum": 268435456, "description": "Response body kept; default 1 MiB."}
              }
            },
            "mcp": {
              "type": "object",
              "additionalProperties": false,
              "properties": {
                "command": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string"}, "description": "A stdio server: program and arguments, spawned once per run on first use."},
                "url": {"type": "string", "minLength": 1, "maxLength": 65536, "description": "A Streamable HTTP server's endpoint (http:// or https://), e.g. http://127.0.0.1:8000/mcp."},
                "headers": {"type": "object", "maxProperties": 64, "additionalProperties": {"type": "string"}, "description": "Headers sent to a url server with every request. Values may name environment variables, never stored in the trace: Authorization: Bearer {{env.MCP_TOKEN}}."},
                "allow_hosts": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string", "minLength": 1}, "description": "Hosts a url server may be reached at; default the URL's own host. Any other is refused before a byte is sent."},
                "tools": {"type": "array", "minItems": 1, "maxItems": 1024, "items": {"type": "string", "minLength": 1}, "description": "The server's tools to expose; default all of them."},
                "env": {"type": "array", "maxItems": 256, "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}, "description": "Environment variables passed to a stdio server (default PATH, HOME, LANG)."},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400, "description": "Per tool call (and, for a url server, per HTTP request); default 30."},
                "max_message_bytes": {"type": "integer", "minimum": 1024, "maximum": 1073741824, "description": "The largest message the server may send (for a url server, the whole answer to one request); a larger one is a tool error and a stdio server is stopped. Default 16 MiB."},
                "cwd": {"type": "string", "minLength": 1, "description": "A stdio server's working directory, relative to the tool file; default the current directory."},
                "arguments": {"type": "object", "maxProperties": 256, "description": "Arguments fixed by this file, e.g. {\"repo_path\": \".\"}: sent with every call of a tool that takes them, whatever the model sent, and left out of the schema the model sees."},
                "defaults": {"type": "object", "maxProperties": 256, "description": "Arguments sent when the model leaves them out, e.g. {\"revision\": \"HEAD\"}: the model sees each as its property's default, no longer required."}
              },
              "oneOf": [{"required": ["command"]}, {"required": ["url"]}]
            }
          }
        }
        """#

    /// The schema of one eval case (a line of evals/NAME.jsonl), as shipped in schemas/eval-case.schema.json.
    package static let evalCase = #"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://chorus.dev/schemas/eval-case.schema.json",
          "title": "Chorus eval case (one line of evals/NAME.jsonl)",
          "description": "A case for chorus eval: the workflow's inputs and what a right output looks like. A case passes when its run succeeds and every expectation holds.",
          "type": "object",
          "additionalProperties": false,
          "required": ["id", "inputs"],
          "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$", "description": "Unique within the file; how reports name the case."},
            "description": {"type": "string", "maxLength": 4096},
            "inputs": {"type": "object", "maxProperties": 256, "description": "The workflow's inputs, as --input gives them; defaults fill the rest."},
            "expect": {
              "description": "One expectation, or a list that must all hold.",
              "anyOf": [
                {"$ref": "#/$defs/expectation"},
                {"type": "array", "minItems": 1, "maxItems": 64, "items": {"$ref": "#/$defs/expectation"}}
              ]
            },
            "expect_route": {
              "description": "The label each route node should choose: a label (the workflow's only route node) or {\"NODE\": \"label\"}. Graded beside expect; chorus eval reports route accuracy per variant.",
              "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 256},
                {"type": "object", "minProperties": 1, "maxProperties": 64, "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}}
              ]
            },
            "tags": {"type": "array", "maxItems": 64, "items": {"type": "string", "minLength": 1, "maxLength": 128}}
          },
          "$defs": {
            "expectation": {
              "type": "object",
              "additionalProperties": false,
              "description": "Exactly one check: equals, contains, regex, json_schema, number or judge; json_path selects the part of the output it looks at (default the whole output).",
              "properties": {
                "json_path": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "A JSONPath to one value: $, .name, ['name'], [index] (negative from the end). Into a string output, the string is read as JSON."},
                "equals": {"description": "JSON equality with the selected value."},
                "contains": {"type": "string", "maxLength": 65536, "description": "The selected value's text (a string as is, anything else as JSON) contains this."},
                "regex": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "The selected value's text matches this regular expression somewhere."},
                "json_schema": {"type": "object", "description": "The selected value is valid against this JSON Schema."},
                "number": {"type": "number", "description": "The selected value is a number, or a string holding one, within tolerance of this."},
                "tolerance": {"type": "number", "minimum": 0, "description": "With number: the largest difference allowed (default 1e-9)."},
                "ignore_case": {"type": "boolean", "description": "With equals, contains or regex: compare letters without case."},
                "judge": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "An agent (agents/NAME.json, beside the workflow's) that answers {\"pass\": bool, \"score\": 0..1, \"reason\": \"...\"}; its templates see inputs.output, inputs.case, inputs.case_id and inputs.criteria."},
                "min_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "With judge: the score a pass needs as well (default 0)."},
                "criteria": {"type": "string", "maxLength": 65536, "description": "With judge: what the judge is told to check, as inputs.criteria."}
              }
            }
          }
        }
        """#

    // Parsed once per process; the embedded text is checked by SpecSchemasTests.
    static let chorusValue = try! JSONValue(parsing: chorus)
    static let agentValue = try! JSONValue(parsing: agent)
    static let workflowValue = try! JSONValue(parsing: workflow)
    static let toolValue = try! JSONValue(parsing: tool)
    static let evalCaseValue = try! JSONValue(parsing: evalCase)
}
