"""Grades the labelled agreement sets with HF math-verify, for `cargo xtask bench graders`.

Usage: python grade_with_math_verify.py MATH_PAIRS.jsonl MMLU_PAIRS.jsonl
Writes one JSON line per pair to stdout: {"set": "math"|"mmlu", "id", "correct", "error",
"micros"}. math-verify is used as its README and lighteval use it: the gold wrapped in `$...$`
and parsed with the default configs, the response parsed with the default configs (LaTeX and
plain expressions), `verify(gold, answer)`; for MMLU the response is parsed with
`StringExtractionConfig` (letters A-D, as lighteval's multiple-choice metrics do) and compared
with the gold letter. An exception or a timeout is a wrong verdict, as in lighteval.
"""
import json
import sys
import time

from math_verify import StringExtractionConfig, parse, verify


def grade_math(p):
    gold = parse("$" + p["gold"] + "$")
    answer = parse(p["response"])
    return bool(verify(gold, answer))


def grade_mmlu(p):
    cfg = [StringExtractionConfig(strings=("A", "B", "C", "D"), lowercase=True)]
    gold = parse(p["gold"], extraction_config=cfg)
    answer = parse(p["response"], extraction_config=cfg)
    return bool(verify(gold, answer))


def main():
    for name, path, grade in (("math", sys.argv[1], grade_math), ("mmlu", sys.argv[2], grade_mmlu)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                p = json.loads(line)
                t = time.perf_counter()
                error = None
                try:
                    correct = grade(p)
                except Exception as e:  # noqa: BLE001 - any failure is a wrong verdict
                    correct, error = False, type(e).__name__ + ": " + str(e)[:200]
                micros = (time.perf_counter() - t) * 1e6
                print(json.dumps({"set": name, "id": p["id"], "correct": correct,
                                  "error": error, "micros": micros}), flush=True)


main()
