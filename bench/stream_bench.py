"""Issue 26's streaming rows: what Chorus's client pays per streamed event, a thousand live
streams on one loop, the per-hop overhead of a sequential chain, and a callgrind profile of
the streamed path. Every run is `chorus run` as a user runs it (a separate process, CPU
from wait4), against `chorus sim` streaming one token per SSE event.

Usage: python3 bench/stream_bench.py [events] [streams] [chain] [callgrind] [--out FILE.json]
(no row names: all four). Env: CHORUS (the chorus binary; default .build/release/chorus),
REPS (3; runs alternate streamed/unstreamed or traced/untraced so noise falls on both).

events:    400 calls (P = 200) of 100 tokens each at 50 tokens/s and 1 token per event,
           streamed and with `"stream": false`; (CPU streamed − CPU unstreamed) / deltas.
streams:   1,000 calls at once, each streaming 100 tokens at 50 tokens/s (sim latency
           200 ms, idle_timeout_s 1): the loop thread's CPU share, time to first token
           added by Chorus (p50/p99), calls that missed their idle timeout.
chain:     20 agent steps, each `needs` the one before (sim latency 50 ms, streamed at
           1 token per event): (wall − 20 × latency) / 20, tracing on and off.
callgrind: 200 calls × 100 events under valgrind --tool=callgrind, streamed and not
           (P = 20, 50 tokens/s, so events mostly arrive on their own); instructions per
           streamed event and the top inclusive functions of the streamed run.
"""
import json, os, re, resource, shutil, sqlite3, statistics, subprocess, sys, tempfile, threading, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
chorus = os.environ.get("CHORUS", os.path.join(root, ".build/release/chorus"))
REPS = int(os.environ.get("REPS", 3))
work = tempfile.mkdtemp(prefix="chorus-stream-bench-")
TICK = os.sysconf("SC_CLK_TCK")
# A thousand streams are a thousand sockets in chorus and in the simulator (children inherit it).
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)


def log(text):
    print("stream_bench: " + text, file=sys.stderr, flush=True)


def start_sim(*args):
    proc = subprocess.Popen([chorus, "sim", "--port", "0", "--max-seconds", "3600", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, f"http://127.0.0.1:{line.split()[-1]}/v1"


def run_child(argv, on_start=None):
    """Runs argv to completion; CPU and peak RSS from wait4(). on_start(pid) runs while it does."""
    started = time.perf_counter()
    out, err = open(os.path.join(work, "child.out"), "w+"), open(os.path.join(work, "child.err"), "w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=err)
    watcher = None
    if on_start:
        watcher = threading.Thread(target=on_start, args=(proc.pid,), daemon=True)
        watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    pid = proc.pid
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if watcher: watcher.join()
    out.seek(0); err.seek(0)
    return {"pid": pid, "rc": proc.returncode, "stdout": out.read(), "stderr": err.read(), "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def fan_project(name, base, n, p, stream, worker_model="runaway-small", tokens=100, idle_timeout_s=None):
    """plan (planner-N, unstreamed) → foreach of N worker calls of exactly `tokens` tokens
    (a runaway model is cut at max_tokens; no output schema, so the cut answer stands)."""
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d + "/agents"); os.makedirs(d + "/workflows")
    worker = {"provider": "openai", "base_url": base, "model": worker_model, "max_concurrency": p, "stream": stream}
    if idle_timeout_s: worker["idle_timeout_s"] = idle_timeout_s
    models = {"planner": {"provider": "openai", "base_url": base, "model": f"planner-{n}", "max_tokens": 64 * n + 1024, "stream": False},
              "worker": worker}
    json.dump({"models": models}, open(d + "/chorus.json", "w"))
    json.dump({"name": "lead", "model": "planner", "prompt": "{{inputs.question}}",
               "output_schema": {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {"type": "array"}}}},
              open(d + "/agents/lead.json", "w"))
    json.dump({"name": "worker", "model": "worker", "prompt": "{{item}}", "max_tokens": tokens, "retries": 0}, open(d + "/agents/worker.json", "w"))
    json.dump({"name": name, "inputs": {"question": {"type": "string"}},
               "nodes": {"plan": {"kind": "agent", "agent": "lead"},
                         "work": {"kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": p}},
               "output": "work"}, open(d + "/workflows/fan.json", "w"))
    return d


def chorus_run(d, p, trace=True, wrap=(), on_start=None, binary=None):
    db = os.path.join(d, "trace.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s): os.remove(db + s)
    argv = list(wrap) + [binary or chorus, "run", os.path.join(d, "workflows/fan.json"), "--config", os.path.join(d, "chorus.json"),
                         "--db", db, "--input", "question=What limits fan-out?", "--max-parallel", str(p), "--json"]
    if not trace: argv.append("--no-trace")
    r = run_child(argv, on_start)
    r["summary"] = json.loads(r["stdout"]) if r["stdout"].strip().startswith("{") else {"status": "error: " + r["stderr"][-400:]}
    r["db"] = db
    return r


def model_calls(db):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT stepPath, latencyMs, firstTokenMs, error, tokensOut FROM modelCall").fetchall()
    con.close()
    return rows


def callgrind_calls(path, pattern):
    """Calls made to functions whose (mangled) name contains pattern, from a callgrind file."""
    names, calls, callee = {}, 0, None
    for line in open(path):
        m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line)
        if m and m.group(2): names[m.group(1)] = m.group(2)
        if line.startswith("cfn="):
            callee = m.group(1) if m else None
        elif line.startswith("calls=") and callee is not None:
            if pattern in names.get(callee, ""): calls += int(line.split()[0][6:])
            callee = None
    return calls


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


results = {}


def events_row():
    """CPU per streamed event beyond the unstreamed answer."""
    n, p, tokens, rate = 400, 200, 100, 50
    sim, base = start_sim("--latency-ms", "50", "--tokens-per-event", "1", "--tokens-per-second", str(rate))
    runs, split = {True: [], False: []}, {True: [], False: []}
    for _ in range(REPS):
        for stream in (True, False):
            d = fan_project(f"events-{stream}", base, n, p, stream)
            r = chorus_run(d, p)
            assert r["summary"]["status"] == "succeeded", r["summary"]
            runs[stream].append(r["cpu_s"])
            split[stream].append((round(r["user_s"], 3), round(r["sys_s"], 3)))
    sim.terminate()
    streamed, unstreamed = statistics.median(runs[True]), statistics.median(runs[False])
    events = n * tokens
    results["events"] = {"calls": n, "in_flight": p, "tokens_per_answer": tokens, "tokens_per_second": rate, "delta_events": events,
                         "cpu_s_streamed": runs[True], "cpu_s_unstreamed": runs[False],
                         "user_sys_s_streamed": split[True], "user_sys_s_unstreamed": split[False],
                         "cpu_s_streamed_median": round(streamed, 3), "cpu_s_unstreamed_median": round(unstreamed, 3),
                         "us_per_event": round((streamed - unstreamed) * 1e6 / events, 2)}
    log(f"events: {json.dumps(results['events'])}")


def thread_ticks(pid):
    """{tid: (name, utime + stime ticks)} for every thread of pid."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ticks[int(tid)] = (name, int(fields[11]) + int(fields[12]))
    return ticks


def streams_row():
    """1,000 concurrent streams of 100 tokens at 50 tokens/s on one loop."""
    n, tokens, rate, latency = 1000, 100, 50, 200
    sim, base = start_sim("--latency-ms", str(latency), "--tokens-per-event", "1", "--tokens-per-second", str(rate))
    d = fan_project("streams", base, n, n, True, idle_timeout_s=1)
    samples = []

    def sample(pid):
        # Every 100 ms: each thread's CPU ticks (utime + stime from /proc/PID/task/TID/stat).
        while True:
            try:
                samples.append((time.perf_counter(), thread_ticks(pid)))
            except OSError:
                return
            time.sleep(0.1)

    sim_before = thread_ticks(sim.pid)
    r = chorus_run(d, n, on_start=sample)
    sim_after = thread_ticks(sim.pid)
    sim.terminate()
    samples = [s for s in samples if s[1]]
    # A thread's ticks only grow; one that has exited (the process ending) keeps its last.
    first, last = {}, {}
    for _, ticks in samples:
        for tid, (_, value) in ticks.items():
            first.setdefault(tid, value)
            last[tid] = value
    totals = {tid: last[tid] - first[tid] for tid in last}
    # The loop thread: named "chorus-run" in the kernel by ChorusIO's EventLoop; a binary
    # from before it set the kernel's name shows "chorus" for every thread, and then the
    # loop is the thread other than the main one (tid = pid) with the most CPU over the run.
    names = {tid: name for _, ticks in samples for tid, (name, _) in ticks.items()}
    named = [t for t in totals if names.get(t) == "chorus-run"]
    loop_tid = named[0] if named else max((t for t in totals if t != r["pid"]), key=lambda t: totals[t])
    series = [(at, ticks[loop_tid][1]) for at, ticks in samples if loop_tid in ticks]
    share = [(b[0], (b[1] - a[1]) / TICK / (b[0] - a[0])) for a, b in zip(series, series[10:])]  # 1 s windows
    calls = [c for c in model_calls(r["db"]) if c[0].startswith("work")]
    added = [c[2] - latency for c in calls if c[2] is not None]
    idle_misses = sum(1 for c in calls if c[3] and "idle" in c[3])
    sim_cpu = sum(sim_after[t][1] - sim_before.get(t, ("", 0))[1] for t in sim_after) / TICK
    results["streams"] = {"streams": n, "tokens_per_answer": tokens, "tokens_per_second": rate, "sim_latency_ms": latency,
                          "status": r["summary"]["status"], "wall_s": r["summary"].get("elapsed_s"),
                          # planner call, then the workers' latency and their 100 tokens at 50/s
                          "ideal_s": round(2 * latency / 1000 + tokens / rate, 3), "cpu_s": round(r["cpu_s"], 3),
                          "loop_thread_cpu_s": round(totals[loop_tid] / TICK, 3),
                          "loop_thread_share_whole_run": round(totals[loop_tid] / TICK / (series[-1][0] - series[0][0]), 3),
                          "loop_thread_share_peak_1s": round(max(s for _, s in share), 3) if share else None,
                          "threads_cpu_s": {str(t): round(v / TICK, 3) for t, v in sorted(totals.items())},
                          "calls": len(calls), "first_token_added_ms_p50": round(percentile(added, 0.5), 1) if added else None,
                          "first_token_added_ms_p99": round(percentile(added, 0.99), 1) if added else None,
                          "idle_timeout_misses": idle_misses, "failed_calls": sum(1 for c in calls if c[3]),
                          "sim_cpu_s": round(sim_cpu, 3)}
    log(f"streams: {json.dumps(results['streams'])}")


def chain_row():
    """Per-hop overhead on a 20-step sequential chain: once against the simulator at 50 ms
    (wall - 20 x 50 ms, as the issue defines it; the simulator's millisecond timer adds its
    own ~1 ms a call to this), and once at 0 ms, where wall / 20 is an upper bound on the
    hop: it holds the whole call as well (loopback both ways, the simulator's answer)."""
    steps = 20
    row = {"steps": steps, "streamed": True}
    for latency in (50, 0):
        sim, base = start_sim("--latency-ms", str(latency), "--tokens-per-event", "1")
        d = os.path.join(work, f"chain-{latency}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d + "/agents"); os.makedirs(d + "/workflows")
        json.dump({"models": {"small": {"provider": "openai", "base_url": base, "model": "sim-small"}}}, open(d + "/chorus.json", "w"))
        json.dump({"name": "step", "model": "small", "prompt": "{{inputs.question}}", "retries": 0}, open(d + "/agents/step.json", "w"))
        nodes = {f"s{i}": {"kind": "agent", "agent": "step", **({"needs": [f"s{i - 1}"]} if i > 1 else {})} for i in range(1, steps + 1)}
        json.dump({"name": "chain", "inputs": {"question": {"type": "string"}}, "nodes": nodes, "output": f"s{steps}"},
                  open(d + "/workflows/fan.json", "w"))
        runs = {True: [], False: []}
        for _ in range(REPS):
            for trace in (True, False):
                r = chorus_run(d, 1, trace)
                assert r["summary"]["status"] == "succeeded", r["summary"]
                runs[trace].append(r["summary"]["elapsed_s"])
        sim.terminate()
        for trace, key in ((True, "traced"), (False, "untraced")):
            wall = statistics.median(runs[trace])
            row[f"{key}_at_{latency}ms"] = {"walls_s": runs[trace], "wall_s_median": wall,
                                            "ms_per_hop": round((wall - steps * latency / 1000) * 1000 / steps, 3)}
    results["chain"] = row
    log(f"chain: {json.dumps(row)}")


def callgrind_row():
    """Instructions per streamed event, and where they go."""
    n, p, tokens, rate = 200, 20, 100, 50
    sim, base = start_sim("--latency-ms", "20", "--tokens-per-event", "1", "--tokens-per-second", str(rate))
    # Valgrind gives up on the release binary's DWARF ("possibly corrupted debuginfo"); a
    # copy without debug sections keeps the symbol table, which is all the function names need.
    binary = os.path.join(work, "chorus-nodebug")
    subprocess.run(["objcopy", "--strip-debug", chorus, binary], check=True)
    totals = {}
    for stream in (True, False):
        d = fan_project(f"callgrind-{stream}", base, n, p, stream)
        out = os.path.join(work, f"callgrind-{'streamed' if stream else 'unstreamed'}.out")
        r = chorus_run(d, p, wrap=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"], binary=binary)
        assert r["summary"]["status"] == "succeeded", r["summary"]
        totals[stream] = int(re.search(r"^summary:\s+(\d+)", open(out).read(), re.M).group(1))
        if stream:
            annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out], capture_output=True, text=True).stdout
            demangled = subprocess.run(["swift", "demangle", "--simplified"], input=annotate, capture_output=True, text=True).stdout or annotate
            profile = os.environ.get("PROFILE_OUT", os.path.join(work, "callgrind-streamed.txt"))
            open(profile, "w").write(demangled)
            shutil.copy(out, profile + ".callgrind")
            rows = [l for l in demangled.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
            results.setdefault("callgrind", {})["top_inclusive"] = rows[:40]
            results["callgrind"]["profile"] = profile
            # How the events arrived: one curl write callback per event means one read each.
            results["callgrind"]["body_callbacks"] = callgrind_calls(out, "didReceiveBody")
    sim.terminate()
    events = n * tokens
    results.setdefault("callgrind", {}).update({"calls": n, "in_flight": p, "delta_events": events, "ir_streamed": totals[True], "ir_unstreamed": totals[False],
                                                "instructions_per_event": round((totals[True] - totals[False]) / events)})
    log(f"callgrind: {totals}, per event {results['callgrind']['instructions_per_event']}")


rows = {"events": events_row, "streams": streams_row, "chain": chain_row, "callgrind": callgrind_row}
args = [a for a in sys.argv[1:]]
out = None
if "--out" in args:
    i = args.index("--out"); out = args[i + 1]; del args[i:i + 2]
for name in args or list(rows):
    rows[name]()
text = json.dumps(results, indent=2)
if out: open(out, "w").write(text)
print(text)
