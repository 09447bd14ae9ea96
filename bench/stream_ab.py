"""A/B of chorus binaries (and streamed vs non-streamed calls) on one fan-out point.

Usage: python3 bench/stream_ab.py LABEL=BINARY[:stream|:nostream][@ARG,ARG...] ...
No suffix: a binary from before the stream/max_tokens keys (they are left out of its config).
@ARGS: extra arguments for that variant's `chorus run` (say @--otlp-endpoint,http://127.0.0.1:9).
Runs N=10000 subtasks at P=1000 (env N, P, REPS=5) against `chorus sim` at 50 ms latency,
interleaving the variants, and prints each one's median wall and CPU per subtask.
RECONCILE=concat (or another deterministic strategy) reconciles the findings without the
synthesiser: its prompt holds every finding, and past ~140,000 of them it is larger than
the simulator takes (32 MiB a request).
"""
import json, os, subprocess, sys, tempfile, resource, statistics
N, P, REPS = int(os.environ.get("N", 10000)), int(os.environ.get("P", 1000)), int(os.environ.get("REPS", 5))
RECONCILE = os.environ.get("RECONCILE", "agent")
# ROUNDS=R plans in R rounds of N/R (a lead node, planner-(N/R)): a plan is ~24 simulator
# tokens an item, and max_tokens is at most 10,000,000, so one plan stops short of 420,000.
ROUNDS = int(os.environ.get("ROUNDS", 1))
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
work = tempfile.mkdtemp(prefix="chorus-ab-"); os.makedirs(work + "/agents"); os.makedirs(work + "/workflows")
sim = subprocess.Popen([os.path.join(root, ".build/release/chorus"), "sim", "--port", "0", "--latency-ms", "50", "--max-seconds", "900"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = sim.stdout.readline().split()[-1]; base = f"http://127.0.0.1:{port}/v1"
def config(path, stream):
    m = {"planner": {"provider": "openai", "base_url": base, "model": f"planner-{N // ROUNDS}", "max_tokens": 64 * (N // ROUNDS) + 1024},
         "small": {"provider": "openai", "base_url": base, "model": "sim-small", "max_concurrency": P},
         "synth": {"provider": "openai", "base_url": base, "model": "sim-small"}}
    if N > 100000:
        # The plan is ~100 bytes an item: a million items is past the default 16 MiB.
        m["planner"]["max_response_bytes"] = min(1 << 30, 256 * N)
    if stream is None:
        del m["planner"]["max_tokens"]  # the old binary knows neither key
    else:
        # The plan is never streamed: at one token per event the plan for N = 10,000 is
        # 37 MB of SSE, past max_response_bytes; the workers' streaming is what is compared.
        for v in m.values(): v["stream"] = stream
        m["planner"]["stream"] = False
    json.dump({"models": m}, open(path, "w"))
json.dump({"name": "lead", "model": "planner", "prompt": "{{inputs.question}}", "output_schema": {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {"type": "array"}}}}, open(work + "/agents/lead.json", "w"))
json.dump({"name": "worker", "model": "small", "prompt": "{{item}}", "max_tokens": 300, "retries": 2}, open(work + "/agents/worker.json", "w"))
json.dump({"name": "synthesizer", "model": "synth", "prompt": "Summarise:\n{{#findings}}- {{.}}\n{{/findings}}", "retries": 0}, open(work + "/agents/synthesizer.json", "w"))
reconcile = {"strategy": RECONCILE} | ({"agent": "synthesizer"} if RECONCILE == "agent" else {})
if ROUNDS == 1:
    nodes = {"plan": {"kind": "agent", "agent": "lead"}, "work": {"kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": P}, "answer": {"kind": "reconcile", "from": "work"} | reconcile}
else:
    nodes = {"answer": {"kind": "lead", "lead": "lead", "worker": "worker", "max_rounds": ROUNDS, "max_subtasks": N, "max_parallel": P, "reconcile": reconcile}}
json.dump({"name": "fan", "inputs": {"question": {"type": "string"}}, "nodes": nodes, "output": "answer"}, open(work + "/workflows/fan.json", "w"))
variants = []
for arg in sys.argv[1:]:
    label, spec = arg.split("=", 1)
    spec, _, extra = spec.partition("@")
    binary, _, stream = spec.partition(":")
    cfg = f"{work}/{label}.json"; config(cfg, None if stream == "" else stream == "stream")
    variants.append((label, binary, cfg, [a for a in extra.split(",") if a]))
res = {v[0]: [] for v in variants}
for rep in range(REPS):
    for label, binary, cfg, extra in variants:
        db = f"{work}/{label}.db"
        for s in ("", "-wal", "-shm"):
            if os.path.exists(db + s): os.remove(db + s)
        # wait4 gives this run's own CPU and peak RSS (RUSAGE_CHILDREN's maxrss is the largest
        # child so far); stdout goes to a file, as the output of a large run is large.
        with open(f"{work}/out.json", "w+") as out:
            proc = subprocess.Popen([binary, "run", work + "/workflows/fan.json", "--config", cfg, "--db", db, "--input", "question=q", "--max-parallel", str(P), "--json"] + extra, stdout=out, stderr=subprocess.DEVNULL)
            _, _, usage = os.wait4(proc.pid, 0)
            out.seek(0)
            r = json.loads(out.read())
        cpu = usage.ru_utime + usage.ru_stime
        trace = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
        res[label].append((r["elapsed_s"], cpu * 1000 / N, r["status"], usage.ru_maxrss / 1024, trace / 1e6))
for label, rows in res.items():
    print(f"{label}: wall median {statistics.median(r[0] for r in rows):.2f} s, CPU median {statistics.median(r[1] for r in rows):.3f} ms/subtask, "
          f"peak RSS {max(r[3] for r in rows):.0f} MB, trace {max(r[4] for r in rows):.0f} MB, statuses {set(r[2] for r in rows)}")
sim.terminate()
