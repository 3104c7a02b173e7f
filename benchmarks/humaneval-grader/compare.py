#!/usr/bin/env python3
"""Compare per-task verdicts of the hieramas grader and evalplus 0.3.1.
Usage: compare.py OUT_DIR   (reads OUT_DIR/results/* written by run.sh)"""
import glob
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/he-bench"
kinds_path = os.path.join(out, "mixed-kinds.json")
kinds = json.load(open(kinds_path)) if os.path.exists(kinds_path) else {}


def load_ours(path):
    v = {}
    for line in open(path):
        r = json.loads(line)
        v[r["task_id"]] = (r["base_pass"], r["plus_pass"], r.get("base_status"), r.get("plus_status"), r.get("error"))
    return v


def load_evp(path):
    res = json.load(open(path))["eval"]
    v = {}
    for tid, rs in res.items():
        (r,) = rs
        v[tid] = (r["base_status"] == "pass", r["plus_status"] == "pass", r["base_status"], r["plus_status"], None)
    return v


def summary(v):
    b = sum(x[0] for x in v.values())
    p = sum(x[1] for x in v.values())
    bp = sum(x[0] and x[1] for x in v.values())
    return f"base pass {b}/{len(v)}, plus-inputs pass {p}/{len(v)}, base+plus pass {bp}/{len(v)}"


for s in ("canonical", "mixed"):
    order = lambda p: ["cold", "warmup", "warm"].index(p.split("-")[-2]) * 10 + int(p.split("-")[-1].split(".")[0])
    ours_runs = sorted(glob.glob(os.path.join(out, f"results/ours-{s}-*.eval.jsonl")), key=order)
    evp_runs = sorted(glob.glob(os.path.join(out, f"results/evalplus-{s}-*.json")), key=order)
    if not ours_runs or not evp_runs:
        continue
    ours = [load_ours(p) for p in ours_runs]
    evp = [load_evp(p) for p in evp_runs]
    # verdict stability across runs (cold, warm-up, warm)
    for name, runs, paths in (("ours", ours, ours_runs), ("evalplus", evp, evp_runs)):
        for p, r in zip(paths[1:], runs[1:]):
            d = [t for t in r if r[t][:2] != runs[0][t][:2]]
            if d:
                print(f"[{s}] {name}: run {os.path.basename(p)} differs from {os.path.basename(paths[0])} on {d}")
    o, e = ours[-1], evp[-1]
    print(f"## {s}")
    print(f"ours     ({os.path.basename(ours_runs[-1])}): {summary(o)}")
    print(f"evalplus ({os.path.basename(evp_runs[-1])}): {summary(e)}")
    dis = [t for t in o if o[t][:2] != e[t][:2]]
    print(f"disagreements (base, plus-inputs): {len(dis)}")
    for t in sorted(dis, key=lambda x: int(x.split('/')[1])):
        k = kinds.get(t, "canonical") if s == "mixed" else "canonical"
        print(f"  {t} [{k}] ours base={o[t][2]} plus={o[t][3]} err={str(o[t][4])[:120]!r} | "
              f"evalplus base={e[t][2]} plus={e[t][3]}")
