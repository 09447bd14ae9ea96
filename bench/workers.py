"""Worker scaling on one PostgreSQL: steps/s of 1, 2 and 4 `chorus worker`s draining a
queue of runs, beside the same runs on SQLite in one process at a time.

Usage: CHORUS_TEST_POSTGRES_URL=postgres://… python3 bench/workers.py
(scripts/lib-postgres.sh's start_postgres sets the variable.) Env: RUNS=8 runs of N=250
subtasks; KIND=model (sim-small at 50 ms a call) or tool (each step runs a subprocess tool
that burns 20 ms of CPU before the model answers); WORKERS="1 2 4"; SHARE=1 (workers share
each run's steps, the default) or 0 (each run runs whole in one worker); FANOUT=100 (the
foreach's max_parallel); MAX_PARALLEL=100 (each worker's); SQLITE=1 (the one-process line).
One run spread over the workers: RUNS=1 N=4000 FANOUT=4000.
Prints one line per setup: wall, steps/s, and PostgreSQL bytes per model call.
"""
import json, os, subprocess, sys, tempfile, time

RUNS, N = int(os.environ.get("RUNS", 8)), int(os.environ.get("N", 250))
KIND = os.environ.get("KIND", "model")
WORKERS = [int(w) for w in os.environ.get("WORKERS", "1 2 4").split()]
SHARE = os.environ.get("SHARE", "1") == "1"
FANOUT, MAX_PARALLEL = int(os.environ.get("FANOUT", 100)), os.environ.get("MAX_PARALLEL", "100")
admin = os.environ["CHORUS_TEST_POSTGRES_URL"]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
chorus = os.path.join(root, ".build/release/chorus")
work = tempfile.mkdtemp(prefix="chorus-workers-")
for d in ("agents", "workflows", "tools"): os.makedirs(f"{work}/{d}")
sim = subprocess.Popen([chorus, "sim", "--port", "0", "--latency-ms", "50", "--max-seconds", "3600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
base = f"http://127.0.0.1:{sim.stdout.readline().split()[-1]}/v1"
worker_model = "tooluser-small" if KIND == "tool" else "sim-small"
json.dump({"models": {"planner": {"provider": "openai", "base_url": base, "model": f"planner-{N}", "max_tokens": 64 * N + 1024},
                      "small": {"provider": "openai", "base_url": base, "model": worker_model}}}, open(f"{work}/chorus.json", "w"))
json.dump({"name": "lead", "model": "planner", "prompt": "{{inputs.question}}", "output_schema": {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {"type": "array"}}}}, open(f"{work}/agents/lead.json", "w"))
worker = {"name": "worker", "model": "small", "prompt": "{{item}}", "max_tokens": 300, "retries": 2}
if KIND == "tool":
    burn = "import time,sys\nsys.stdin.read()\nt=time.process_time()\nwhile time.process_time()-t<0.02: pass\nprint('{\"burned\": 20}')"
    json.dump({"name": "burn", "description": "Burns 20 ms of CPU.", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
               "subprocess": {"argv": ["python3", "-c", burn]}}, open(f"{work}/tools/burn.json", "w"))
    worker["tools"] = ["burn"]
json.dump(worker, open(f"{work}/agents/worker.json", "w"))
json.dump({"name": "fan", "inputs": {"question": {"type": "string"}}, "nodes": {"plan": {"kind": "agent", "agent": "lead"}, "work": {"kind": "foreach", "agent": "worker", "over": "plan.subtasks", "max_parallel": FANOUT}}, "output": "work"}, open(f"{work}/workflows/fan.json", "w"))
steps = RUNS * (N + 1)

def busy():
    """CPU seconds the whole machine has spent (every process: chorus, PostgreSQL, the sim)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

def psql(url, sql):
    return subprocess.run(["psql", url, "-Atqc", sql], capture_output=True, text=True).stdout.strip()

def database(name):
    psql(admin, f"DROP DATABASE IF EXISTS {name}"); psql(admin, f"CREATE DATABASE {name}")
    return admin.rsplit("/", 1)[0] + "/" + name

# SQLite, one process at a time (the runs one after another).
if os.environ.get("SQLITE", "1") == "1":
    db = f"{work}/sqlite.db"
    start, cpu = time.time(), busy()
    for i in range(RUNS):
        subprocess.run([chorus, "run", f"{work}/workflows/fan.json", "--config", f"{work}/chorus.json", "--db", db, "--input", f"question=q{i}", "--max-parallel", MAX_PARALLEL, "--json"], capture_output=True, check=True)
    wall, cpu = time.time() - start, busy() - cpu
    print(f"{KIND}: sqlite, one process, runs in turn: {wall:.1f} s, {steps / wall:.0f} steps/s, {cpu * 1000 / steps:.2f} CPU ms per step")
mode = "steps shared" if SHARE else "whole runs"
for count in WORKERS:
    url = database(f"bench_w{count}")
    for i in range(RUNS):
        subprocess.run([chorus, "submit", f"{work}/workflows/fan.json", "--config", f"{work}/chorus.json", "--db", url, "--input", f"question=q{i}"], capture_output=True, check=True)
    start, cpu = time.time(), busy()
    flags = [] if SHARE else ["--no-share-steps", "--max-runs", "1"]
    procs = [subprocess.Popen([chorus, "worker", "--db", url, "--exit-when-idle", "--max-parallel", MAX_PARALLEL] + flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]
    for p in procs: p.wait()
    wall, cpu = time.time() - start, busy() - cpu
    done = psql(url, "SELECT count(*) FROM runQueue WHERE status = 'succeeded'")
    calls = int(psql(url, "SELECT count(*) FROM modelCall") or 1)
    psql(url, "VACUUM")  # the step table's updated rows, as autovacuum leaves it
    size = int(psql(url, "SELECT pg_total_relation_size('modelcall') + pg_total_relation_size('blob') + pg_total_relation_size('step') + pg_total_relation_size('event') + pg_total_relation_size('toolcall') + pg_total_relation_size('blobpart')") or 0)
    table = int(psql(url, "SELECT pg_total_relation_size('steptask')") or 0)
    spread = psql(url, "SELECT string_agg(n::text, '/' ORDER BY n DESC) FROM (SELECT split_part(doneBy, '/', 1) w, count(*) n FROM stepTask GROUP BY w) t") if SHARE else ""
    print(f"{KIND}: postgres, {count} worker(s), {mode}: {wall:.1f} s, {steps / wall:.0f} steps/s, {cpu * 1000 / steps:.2f} CPU ms per step, {done}/{RUNS} runs succeeded, {size / calls:.0f} trace bytes per model call" + (f", step table {table / steps:.0f} bytes per step (reused space), steps per worker {spread}" if spread else ""))
sim.terminate()
