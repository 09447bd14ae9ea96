"""scripts/bench's second half: the Chorus fan-out grid beside LangGraph on the same
`chorus sim` (the simulated provider, a real HTTP server on loopback), the lead loop and
every reconcile strategy, the trace store alone, replay and resume, start-up.

Each run is a separate process; its CPU and peak RSS come from wait4() on it. Chorus and
LangGraph runs alternate at each grid point so the machine's noise falls on both alike.
Writes JSON to argv[2] (merged into bench/results/latest.json by scripts/bench).
Usage: bench.py WORKDIR OUT.json [--quick]
"""
import json, math, os, shutil, subprocess, sys, time, urllib.request

work, out = sys.argv[1], sys.argv[2]
quick = "--quick" in sys.argv
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
chorus = os.path.join(root, ".build/release/chorus")
bench_bin = os.path.join(root, ".build/release/chorus-bench")
python = os.path.join(root, "bench/langgraph/.venv/bin/python")
LATENCY = 0.05


def log(text):
    print("bench: " + text, file=sys.stderr, flush=True)


def run_child(argv):
    """Runs argv to completion; its CPU and peak RSS come from wait4() on it."""
    started = time.perf_counter()
    errfile = open(os.path.join(work, "child.err"), "w+")
    outfile = open(os.path.join(work, "child.out"), "w+")
    pid = os.fork()
    if pid == 0:
        os.dup2(outfile.fileno(), 1)
        os.dup2(errfile.fileno(), 2)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    outfile.seek(0); errfile.seek(0)
    return {"rc": os.waitstatus_to_exitcode(status), "stdout": outfile.read(), "stderr": errfile.read(), "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def start_sim(latency_ms):
    proc = subprocess.Popen([chorus, "sim", "--port", "0", "--latency-ms", str(latency_ms), "--max-seconds", "900"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, int(line.split()[-1])


sim, port = start_sim(int(LATENCY * 1000))
base = f"http://127.0.0.1:{port}/v1"


def sim_requests():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as r:
        return json.load(r)["requests"]


def reset_sim():
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/stats/reset", data=b"", method="POST")).read()


def project(name, n, p, nodes, worker_schema=False, synth_url=None):
    """A scratch project: planner-N, a small worker model, a synthesiser; returns (dir, workflow)."""
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "agents")); os.makedirs(os.path.join(d, "workflows"))
    models = {
        # Room for N subtasks of about 25 tokens each: the simulator cuts answers at max_tokens.
        # Not streamed: at one token per event the plan for N = 10,000 is 37 MB of SSE,
        # past max_response_bytes; the workers' streaming is what the grid measures.
        "planner": {"provider": "openai", "base_url": base, "model": f"planner-{n}", "max_tokens": 64 * n + 1024, "stream": False},
        "small": {"provider": "openai", "base_url": base, "model": "sim-small",
                  "price": {"input_per_mtok": 0.02, "output_per_mtok": 0.04}, "max_concurrency": max(p, 1)},
        "synth": {"provider": "openai", "base_url": synth_url or base, "model": "sim-small"},
    }
    json.dump({"models": models}, open(os.path.join(d, "chorus.json"), "w"))
    # The same models answering with whole JSON bodies (`"stream": false`), for the grid's unstreamed column.
    unstreamed = {name: dict(model, stream=False) for name, model in models.items()}
    json.dump({"models": unstreamed}, open(os.path.join(d, "chorus-unstreamed.json"), "w"))
    round_text = " (round {{round}})" if any(v["kind"] == "lead" for v in nodes.values()) else ""
    lead = {"name": "lead", "model": "planner", "prompt": "{{inputs.question}}" + round_text,
            "output_schema": {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {"type": "array"}}}}
    worker = {"name": "worker", "model": "small", "prompt": "{{item}}", "max_tokens": 300, "retries": 2}
    if worker_schema:
        worker["output_schema"] = {"type": "object", "required": ["answer", "confidence"],
                                   "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}}}
    synth = {"name": "synthesizer", "model": "synth", "prompt": "Summarise:\n{{#findings}}- {{.}}\n{{/findings}}", "retries": 0}
    for a in (lead, worker, synth):
        json.dump(a, open(os.path.join(d, "agents", a["name"] + ".json"), "w"))
    wf = os.path.join(d, "workflows", "fan.json")
    json.dump({"name": name, "inputs": {"question": {"type": "string"}}, "nodes": nodes, "output": list(nodes)[-1]}, open(wf, "w"))
    return d, wf


def fan_nodes(p, strategy="agent"):
    work = {"kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": p}
    nodes = {"plan": {"kind": "agent", "agent": "lead"}, "work": work}
    if strategy == "agent":
        nodes["answer"] = {"kind": "reconcile", "from": "work", "strategy": "agent", "agent": "synthesizer"}
    else:
        work["strategy"] = strategy
        if strategy == "vote":
            work["vote_field"] = "answer"
    return nodes


def chorus_run(d, wf, p, trace=True, extra=(), config="chorus.json"):
    db = os.path.join(d, "trace.db")
    argv = [chorus, "run", wf, "--config", os.path.join(d, config), "--db", db, "--input", "question=What limits fan-out?",
            "--max-parallel", str(p), "--json"] + (["--no-trace"] if not trace else []) + list(extra)
    reset_sim()
    r = run_child(argv)
    r["sim_requests"] = sim_requests()
    r["summary"] = json.loads(r["stdout"]) if r["stdout"].strip().startswith("{") else {"status": "error: " + r["stderr"][-300:]}
    r["db_bytes"] = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s)) if trace else 0
    return r


def ideal(n, p, steps=2):
    return (math.ceil(n / p) + steps) * LATENCY


results = {"grid": [], "strategies": [], "trace_store": None, "replay": None, "resume": None, "startup": None}
have_langgraph = os.path.exists(python)
grid_n = [int(x) for x in os.environ.get("BENCH_GRID_N", "100,1000,10000").split(",")]
grid_p = [int(x) for x in os.environ.get("BENCH_GRID_P", "64,256,1000").split(",")]

log("fan-out grid: Chorus (streamed with tracing on and off, unstreamed traced) beside LangGraph, sim latency 50 ms")
for n in grid_n:
    for p in grid_p:
        d, wf = project(f"grid-{n}-{p}", n, p, fan_nodes(p))
        row = {"n": n, "p": p, "ideal_s": ideal(n, p)}
        for trace in (True, False):
            r = chorus_run(d, wf, p, trace)
            s = r["summary"]
            key = "chorus_trace" if trace else "chorus_no_trace"
            row[key] = {"status": s["status"], "wall_s": s.get("elapsed_s"), "process_wall_s": round(r["wall_s"], 3),
                        "cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4), "peak_rss_mb": r["peak_rss_mb"],
                        "sim_requests": r["sim_requests"]}
            if trace:
                row[key]["db_bytes_per_call"] = round(r["db_bytes"] / max(s.get("usage", {}).get("calls", 1), 1))
                row[key]["run_id"] = s.get("run_id")
        # The simulator streams one token per event, as real providers do; the same point
        # answered whole (after the traced run, whose database size is already taken).
        r = chorus_run(d, wf, p, True, config="chorus-unstreamed.json")
        row["chorus_unstreamed"] = {"status": r["summary"]["status"], "wall_s": r["summary"].get("elapsed_s"),
                                    "process_wall_s": round(r["wall_s"], 3), "cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4),
                                    "peak_rss_mb": r["peak_rss_mb"]}
        # LangGraph is CPU-bound (wall ≈ CPU ≈ 11–16 ms × N whatever P is): at N = 10,000 it
        # runs at P = 1,000 only, which keeps the whole bench under 10 minutes.
        if have_langgraph and not (n == 10000 and (quick or p != 1000)):
            reset_sim()
            r = run_child([python, os.path.join(root, "bench/langgraph/fanout.py"), "--url", base, "--n", str(n), "--p", str(p)])
            try:
                lg = json.loads(r["stdout"])
                # Both accountings: inside the process around `ainvoke` (imports excluded), and the
                # whole process as a user runs it (interpreter start and imports included, wait4).
                row["langgraph"] = {"wall_s": lg["wall_s"], "cpu_ms_per_subtask": round(lg["cpu_s"] * 1000 / n, 4),
                                    "process_wall_s": round(r["wall_s"], 3), "process_cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4),
                                    "peak_rss_mb": r["peak_rss_mb"], "findings": lg["findings"], "sim_requests": sim_requests()}
            except (ValueError, KeyError):
                row["langgraph"] = {"error": r["stderr"][-300:]}
        results["grid"].append(row)
        log(f"  N={n} P={p}: " + json.dumps({k: row[k].get("wall_s") for k in ("chorus_trace", "chorus_no_trace", "chorus_unstreamed", "langgraph") if k in row}))

if have_langgraph:
    n, p = 1000, 256
    log("LangGraph with its SQLite checkpointer, N=1000 P=256")
    cp = os.path.join(work, "lg-checkpoint.sqlite")
    r = run_child([python, os.path.join(root, "bench/langgraph/fanout.py"), "--url", base, "--n", str(n), "--p", str(p), "--checkpoint", cp])
    try:
        lg = json.loads(r["stdout"])
        results["langgraph_checkpoint"] = {"n": n, "p": p, "wall_s": lg["wall_s"], "cpu_ms_per_subtask": round(lg["cpu_s"] * 1000 / n, 4),
                                           "peak_rss_mb": r["peak_rss_mb"]}
    except (ValueError, KeyError):
        results["langgraph_checkpoint"] = {"error": r["stderr"][-300:]}

if have_langgraph:
    n, p = 1000, 256
    log("streamed at N=1000 P=256: Chorus beside LangGraph's astream(stream_mode=\"messages\")")
    d, wf = project("stream-1000", n, p, fan_nodes(p))
    c = chorus_run(d, wf, p)
    reset_sim()
    r = run_child([python, os.path.join(root, "bench/langgraph/fanout.py"), "--url", base, "--n", str(n), "--p", str(p), "--stream"])
    row = {"n": n, "p": p, "ideal_s": ideal(n, p),
           "chorus": {"status": c["summary"]["status"], "wall_s": c["summary"].get("elapsed_s"), "process_wall_s": round(c["wall_s"], 3),
                      "cpu_ms_per_subtask": round(c["cpu_s"] * 1000 / n, 4), "peak_rss_mb": c["peak_rss_mb"]}}
    try:
        lg = json.loads(r["stdout"])
        row["langgraph"] = {"wall_s": lg["wall_s"], "cpu_ms_per_subtask": round(lg["cpu_s"] * 1000 / n, 4),
                            "process_wall_s": round(r["wall_s"], 3), "process_cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4),
                            "peak_rss_mb": r["peak_rss_mb"], "message_chunks": lg.get("message_chunks"), "findings": lg["findings"]}
    except (ValueError, KeyError):
        row["langgraph"] = {"error": r["stderr"][-300:]}
    results["streaming_vs_langgraph"] = row

log("lead loop (2 rounds) and each reconcile strategy at N=1000, P=256")
n, p = 1000, 256
lead_nodes = {"research": {"kind": "lead", "lead": "lead", "worker": "worker", "max_rounds": 2, "max_subtasks": n, "max_parallel": p},
              "answer": {"kind": "reconcile", "from": "research", "strategy": "agent", "agent": "synthesizer"}}
d, wf = project("lead", n // 2, p, lead_nodes)
r = chorus_run(d, wf, p)
results["strategies"].append({"shape": "lead loop, 2 rounds of 500", "n": n, "ideal_s": (2 * math.ceil(500 / p) + 3) * LATENCY,
                              "status": r["summary"]["status"], "wall_s": r["summary"].get("elapsed_s"),
                              "cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4), "peak_rss_mb": r["peak_rss_mb"], "sim_requests": r["sim_requests"]})
for strategy in ["collect", "concat", "merge", "vote", "first_success", "agent"]:
    d, wf = project(f"strategy-{strategy}", n, p, fan_nodes(p, strategy), worker_schema=True)
    r = chorus_run(d, wf, p)
    results["strategies"].append({"shape": f"foreach, {strategy}", "n": n, "ideal_s": ideal(n, p, 2 if strategy == "agent" else 1),
                                  "status": r["summary"]["status"], "wall_s": r["summary"].get("elapsed_s"),
                                  "cpu_ms_per_subtask": round(r["cpu_s"] * 1000 / n, 4), "peak_rss_mb": r["peak_rss_mb"],
                                  "sim_requests": r["sim_requests"]})

log("trace store alone (chorus-bench --trace-db)")
r = run_child([bench_bin, "--trace-db", os.path.join(work, "tracebench.db"), "--trace-calls", "20000"])
results["trace_store"] = json.loads(r["stdout"])

log("replay of the 10,000-subtask run (tracing on, P=1000)")
row = results["grid"][-1]
d = os.path.join(work, f"grid-{row['n']}-{row['p']}")
run_id = row["chorus_trace"]["run_id"]
reset_sim()
r = run_child([chorus, "replay", run_id, "--db", os.path.join(d, "trace.db"), "--config", os.path.join(d, "chorus.json"), "--json"])
rep = json.loads(r["stdout"]) if r["stdout"].strip().startswith("{") else {"error": r["stderr"][-300:]}
results["replay"] = {"steps": row["n"] + 2, "wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3), "peak_rss_mb": r["peak_rss_mb"],
                     "reproduced": rep.get("reproduced"), "served_calls": rep.get("served_calls"), "sim_requests": sim_requests()}

log("resume overhead: a 10,000-subtask run whose synthesis failed, resumed")
n, p = 10000, 1000
d, wf = project("resume", n, p, fan_nodes(p), synth_url="http://127.0.0.1:9/v1")
failed = chorus_run(d, wf, p)
good_config = os.path.join(d, "chorus-fixed.json")
config = json.load(open(os.path.join(d, "chorus.json")))
config["models"]["synth"]["base_url"] = base
json.dump(config, open(good_config, "w"))
reset_sim()
r = run_child([chorus, "resume", failed["summary"].get("run_id", "missing"), "--db", os.path.join(d, "trace.db"), "--config", good_config,
               "--max-parallel", str(p), "--json"])
res = json.loads(r["stdout"]) if r["stdout"].strip().startswith("{") else {"status": "error: " + r["stderr"][-300:]}
results["resume"] = {"failed_run_status": failed["summary"]["status"], "status": res.get("status"), "reused_steps": res.get("reused_steps"),
                     "calls_made": sim_requests(), "wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3),
                     "peak_rss_mb": r["peak_rss_mb"],
                     "us_per_reused_step": round((r["wall_s"] - LATENCY) * 1e6 / max(res.get("reused_steps") or 1, 1), 1)}

log("start-up: chorus validate workflows/research.json (median of 20)")
walls = sorted(run_child([chorus, "validate", os.path.join(root, "workflows/research.json"), "--config",
                          os.path.join(root, "chorus.json")])["wall_s"] for _ in range(20))
results["startup"] = {"validate_median_ms": round(walls[10] * 1000, 1), "validate_max_ms": round(walls[-1] * 1000, 1)}

sim.terminate()
json.dump(results, open(out, "w"), indent=2)
