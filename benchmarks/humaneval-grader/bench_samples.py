#!/usr/bin/env python3
"""Build HumanEval+ benchmark sample files for comparing graders.

Writes, into OUT_DIR (default /tmp/he-bench):
  canonical.jsonl  - every task: prompt + canonical_solution (all should pass)
  mixed.jsonl      - even-indexed tasks canonical; odd-indexed tasks wrong but runnable:
                       kind 0: body replaced by `return None`          (fails base+plus)
                       kind 1: canonical wrapped so it returns None when
                               len(repr(args)) % 5 == 0                 (input-dependent failures)
                       kind 2: body raises ValueError                   (fails base+plus)
                     and the last task (HumanEval/163) loops forever   (exercises timeouts)
Usage: bench_samples.py [DATASET_JSONL] [OUT_DIR]
"""
import json
import os
import sys

data = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/humaneval_plus/HumanEvalPlus.jsonl"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/he-bench"
os.makedirs(out, exist_ok=True)

tasks = [json.loads(l) for l in open(data) if l.strip()]
assert len(tasks) == 164, len(tasks)


def wrong(idx, t):
    ep = t["entry_point"]
    p = t["prompt"]
    if t["task_id"] == "HumanEval/163":
        return p + "    while True:\n        pass\n", "infinite_loop"
    kind = (idx // 2) % 3
    if kind == 0:
        return p + "    return None\n", "return_none"
    if kind == 1:
        return (
            p + t["canonical_solution"]
            + f"\n\n_orig_{ep} = {ep}\n\n"
            + f"def {ep}(*args):\n"
            + "    key = len(repr(args))\n"
            + f"    r = _orig_{ep}(*args)\n"
            + "    if key % 5 == 0:\n        return None\n    return r\n",
            "partial_wrong",
        )
    return p + "    raise ValueError('deliberately wrong')\n", "raise"


with open(os.path.join(out, "canonical.jsonl"), "w") as fc, \
        open(os.path.join(out, "mixed.jsonl"), "w") as fm, \
        open(os.path.join(out, "mixed-kinds.json"), "w") as fk:
    kinds = {}
    for i, t in enumerate(tasks):
        canon = t["prompt"] + t["canonical_solution"]
        fc.write(json.dumps({"task_id": t["task_id"], "solution": canon}) + "\n")
        if i % 2 == 0:
            sol, kind = canon, "canonical"
        else:
            sol, kind = wrong(i, t)
        kinds[t["task_id"]] = kind
        fm.write(json.dumps({"task_id": t["task_id"], "solution": sol}) + "\n")
    json.dump(kinds, fk, indent=0)
print("wrote", out)
