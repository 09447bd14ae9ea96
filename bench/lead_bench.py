"""Issue 27's benchmark: a lead node whose workers meet a heavy tail, planned in rounds
(`"schedule": "rounds"`, the lead waits for every worker of a round) against as results
arrive (`"schedule": "as_completed"`). Every run is `chorus run` as a user runs it (a
separate process, CPU from wait4), against `chorus sim --latency-ms 40 --slow-rate 0.1
--slow-ms 1500`: a tenth of the calls take 1.5 s longer, the same calls for the same seed
in both schedules (the simulator picks them by request content, not arrival order).

Usage: python3 bench/lead_bench.py [small] [large] [--out FILE.json]
(no row names: both). Env: CHORUS (the chorus binary; default .build/release/chorus),
VARIANTS (comma-separated, default rounds,as_completed; `rounds` alone runs on a build
without as_completed), SEEDS (5: simulator seeds 1..SEEDS, each run by every variant),
REPLAN_AFTER and ON_DONE (as_completed's optional keys, left out when unset).

small: 4 rounds x 8 subtasks (a planner-8 lead, max_rounds 4, max_subtasks 32,
       max_parallel 32).
large: 1,000 subtasks with 100 in flight (planner-100, max_rounds 10, max_subtasks
       1,000, max_parallel 100).

Per variant: wall time (median and each seed's), CPU, lead calls and worker calls (the
trace's step rows by kind, and its modelCall rows for them), slow calls met (the
simulator's /stats), and findings per lead call (mean): how many worker findings had
arrived before each lead call started (the rounds lead sees 0, 8, 16, 24).
"""
import json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.request

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
chorus = os.environ.get("CHORUS", os.path.join(root, ".build/release/chorus"))
VARIANTS = [v.strip() for v in os.environ.get("VARIANTS", "rounds,as_completed").split(",") if v.strip()]
SEEDS = list(range(1, int(os.environ.get("SEEDS", 5)) + 1))
work = tempfile.mkdtemp(prefix="chorus-lead-bench-")
SIM_ARGS = ["--latency-ms", "40", "--slow-rate", "0.1", "--slow-ms", "1500"]
ROWS = {
    "small": {"per_call": 8, "max_rounds": 4, "max_subtasks": 32, "max_parallel": 32},
    "large": {"per_call": 100, "max_rounds": 10, "max_subtasks": 1000, "max_parallel": 100},
}


def log(text):
    print("lead_bench: " + text, file=sys.stderr, flush=True)


def start_sim(seed):
    proc = subprocess.Popen([chorus, "sim", "--port", "0", "--max-seconds", "3600", "--seed", str(seed), *SIM_ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, f"http://127.0.0.1:{line.split()[-1]}"


def sim_stats(base, reset=False):
    request = urllib.request.Request(base + ("/stats/reset" if reset else "/stats"), method="POST" if reset else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_child(argv):
    """Runs argv to completion; CPU from wait4()."""
    started = time.perf_counter()
    out, err = open(os.path.join(work, "child.out"), "w+"), open(os.path.join(work, "child.err"), "w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out.seek(0); err.seek(0)
    return {"rc": os.waitstatus_to_exitcode(status), "stdout": out.read(), "stderr": err.read(), "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def lead_project(name, base, row, variant):
    """A lead node: a planner-N lead (it plans N subtasks on every call and never says done,
    so it plans until max_subtasks or max_rounds) and sim-small workers. The lead's prompt
    names its round, so each round's subtasks (and so the worker prompts the simulator keys
    its slow calls on) differ from the others' and are the same in both schedules."""
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d + "/agents"); os.makedirs(d + "/workflows")
    n, p = row["per_call"], row["max_parallel"]
    models = {"planner": {"provider": "openai", "base_url": base + "/v1", "model": f"planner-{n}", "max_tokens": 64 * n + 1024, "stream": False},
              "worker": {"provider": "openai", "base_url": base + "/v1", "model": "sim-small", "max_concurrency": p}}
    json.dump({"models": models}, open(d + "/chorus.json", "w"))
    json.dump({"name": "lead", "model": "planner", "prompt": "Round {{round}}: {{inputs.question}}",
               "output_schema": {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {"type": "array"}}}},
              open(d + "/agents/lead.json", "w"))
    json.dump({"name": "worker", "model": "worker", "prompt": "{{item}}", "retries": 0}, open(d + "/agents/worker.json", "w"))
    node = {"kind": "lead", "lead": "lead", "worker": "worker",
            "max_rounds": row["max_rounds"], "max_subtasks": row["max_subtasks"], "max_parallel": p}
    # "rounds" is the default: leaving the key out lets this variant run on a build that
    # does not know "schedule" yet.
    if variant != "rounds":
        node["schedule"] = variant
        if os.environ.get("REPLAN_AFTER"): node["replan_after"] = int(os.environ["REPLAN_AFTER"])
        if os.environ.get("ON_DONE"): node["on_done"] = os.environ["ON_DONE"]
    json.dump({"name": name, "inputs": {"question": {"type": "string"}}, "nodes": {"research": node}, "output": "research"},
              open(d + "/workflows/lead.json", "w"))
    return d


def chorus_run(d, p):
    db = os.path.join(d, "trace.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s): os.remove(db + s)
    argv = [chorus, "run", os.path.join(d, "workflows/lead.json"), "--config", os.path.join(d, "chorus.json"),
            "--db", db, "--input", "question=What limits fan-out?", "--max-parallel", str(p), "--json"]
    r = run_child(argv)
    r["summary"] = json.loads(r["stdout"]) if r["stdout"].strip().startswith("{") else {"status": "error: " + r["stderr"][-400:]}
    r["db"] = db
    return r


def trace_counts(db):
    """Lead and worker calls from the trace (step rows by kind; modelCall rows joined to
    them, retries included), and the findings each lead call could have seen: the workers
    that had succeeded before it started."""
    con = sqlite3.connect(db)
    steps = {kind: count for kind, count in con.execute("SELECT kind, count(*) FROM step GROUP BY kind")}
    calls = {kind: count for kind, count in con.execute(
        "SELECT step.kind, count(*) FROM modelCall JOIN step ON step.runID = modelCall.runID AND step.path = modelCall.stepPath GROUP BY step.kind")}
    plans = con.execute("SELECT startedAt, provenanceJSON FROM step WHERE kind = 'plan' ORDER BY startedAt").fetchall()
    ended = sorted(row[0] for row in con.execute("SELECT endedAt FROM step WHERE kind = 'item' AND status = 'succeeded' AND endedAt IS NOT NULL"))
    con.close()
    # An as_completed lead call records what it saw ({"saw": [steps]}); a rounds call saw
    # every worker that had succeeded before it started.
    seen = [len(json.loads(prov)["saw"]) if prov and '"saw"' in prov else sum(1 for e in ended if e <= started)
            for started, prov in plans]
    return {"lead_calls": steps.get("plan", 0), "worker_calls": steps.get("item", 0),
            "lead_model_calls": calls.get("plan", 0), "worker_model_calls": calls.get("item", 0),
            "findings_seen": seen, "findings_per_lead_call": round(statistics.mean(seen), 2) if seen else None}


results = {}


def lead_row(name):
    row = ROWS[name]
    runs = {variant: [] for variant in VARIANTS}
    for seed in SEEDS:
        sim, base = start_sim(seed)
        try:
            for variant in VARIANTS:
                d = lead_project(f"{name}-{variant}", base, row, variant)
                sim_stats(base, reset=True)
                r = chorus_run(d, row["max_parallel"])
                slow = sim_stats(base).get("slow")
                status = r["summary"].get("status")
                if status != "succeeded":
                    log(f"{name} {variant} seed {seed}: {status} (rc {r['rc']}): {r['stderr'][-400:]}")
                    runs[variant].append({"seed": seed, "status": status})
                    continue
                entry = {"seed": seed, "status": status, "wall_s": round(r["summary"].get("elapsed_s", r["wall_s"]), 3),
                         "cpu_s": round(r["cpu_s"], 3), "slow_calls_met": slow, **trace_counts(r["db"])}
                runs[variant].append(entry)
                log(f"{name} {variant} seed {seed}: {json.dumps(entry)}")
        finally:
            sim.terminate()
            sim.wait()
    summary = {"sim": " ".join(SIM_ARGS), **{k: v for k, v in row.items()}, "seeds": SEEDS, "variants": {}}
    for variant, entries in runs.items():
        ok = [e for e in entries if e["status"] == "succeeded"]
        if not ok:
            summary["variants"][variant] = {"runs": entries}
            continue
        mean = lambda key: round(statistics.mean(e[key] for e in ok), 3)
        summary["variants"][variant] = {
            "succeeded": len(ok), "of": len(entries),
            "wall_s_median": round(statistics.median(e["wall_s"] for e in ok), 3), "wall_s_mean": mean("wall_s"),
            "cpu_s_mean": mean("cpu_s"), "lead_calls_mean": mean("lead_calls"), "worker_calls_mean": mean("worker_calls"),
            "findings_per_lead_call_mean": mean("findings_per_lead_call"), "slow_calls_met_mean": mean("slow_calls_met"),
            "runs": entries}
    variants = summary["variants"]
    if "wall_s_median" in variants.get("rounds", {}) and "wall_s_median" in variants.get("as_completed", {}):
        summary["as_completed_over_rounds_wall"] = round(variants["as_completed"]["wall_s_median"] / variants["rounds"]["wall_s_median"], 3)
    results[name] = summary


def print_table():
    print(f"{'row':6} {'variant':13} {'wall s (median)':>15} {'wall s (mean)':>13} {'CPU s':>6} {'lead calls':>10} "
          f"{'worker calls':>12} {'findings/lead call':>18} {'slow met':>8}")
    for name, summary in results.items():
        for variant, v in summary["variants"].items():
            if "wall_s_median" not in v:
                print(f"{name:6} {variant:13} failed: {v['runs']}")
                continue
            print(f"{name:6} {variant:13} {v['wall_s_median']:>15} {v['wall_s_mean']:>13} {v['cpu_s_mean']:>6} {v['lead_calls_mean']:>10} "
                  f"{v['worker_calls_mean']:>12} {v['findings_per_lead_call_mean']:>18} {v['slow_calls_met_mean']:>8}")
        if "as_completed_over_rounds_wall" in summary:
            print(f"{name:6} as_completed / rounds wall (medians): {summary['as_completed_over_rounds_wall']}")


def main():
    args = sys.argv[1:]
    out = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i:i + 2]
    unknown = [a for a in args if a not in ROWS]
    if unknown:
        sys.exit(f"lead_bench: unknown row {unknown[0]}; rows are {', '.join(ROWS)}")
    if not os.access(chorus, os.X_OK):
        sys.exit(f"lead_bench: no chorus binary at {chorus} (set CHORUS, or build with swift build -c release --product chorus)")
    for name in args or list(ROWS):
        lead_row(name)
    print_table()
    if out:
        json.dump(results, open(out, "w"), indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
