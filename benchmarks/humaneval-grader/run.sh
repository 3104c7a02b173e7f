#!/usr/bin/env bash
# Times HumanEval+ full evaluation: hieramas grader vs evalplus 0.3.1, same samples, same machine.
# Usage: run.sh [HIERAMAS_BINARY]   (default: target/debug/hieramas)
# Env:   VENV      venv with evalplus==0.3.1 installed (default /tmp/evp-venv)
#        DATA_DIR  hieramas --data-dir (default $HIERAMAS_DATA_DIR, else ../shared/datasets); evalplus reads
#                  $DATA_DIR/humaneval_plus/HumanEvalPlus.jsonl via HUMANEVAL_OVERRIDE_PATH
#        OUT       work dir for samples, results, timings (default /tmp/he-bench)
#        PARALLEL  --parallel for both tools (default: nproc)
#        RUNS      warm runs per (tool, sample file) (default 3)
# Setup: python3 -m venv /tmp/evp-venv && /tmp/evp-venv/bin/pip install evalplus==0.3.1
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$(realpath "${1:-target/debug/hieramas}")"
VENV="${VENV:-/tmp/evp-venv}"
DATA_DIR="$(realpath "${DATA_DIR:-${HIERAMAS_DATA_DIR:-../shared/datasets}}")"
OUT="${OUT:-/tmp/he-bench}"
PARALLEL="${PARALLEL:-$(nproc)}"
RUNS="${RUNS:-3}"
export HUMANEVAL_OVERRIDE_PATH="$DATA_DIR/humaneval_plus/HumanEvalPlus.jsonl"

python3 "$HERE/bench_samples.py" "$HUMANEVAL_OVERRIDE_PATH" "$OUT"
cd "$OUT"
mkdir -p logs results
TSV="$OUT/timings.tsv"
printf 'tool\tsamples\tmode\trun\twall_s\tto_result_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' > "$TSV"

now() { date +%s.%N; }

# ours <samples> <mode> <run> [HIERAMAS_HOME]
ours() {
  local s=$1 mode=$2 run=$3 home=${4:-}
  local tag="ours-$s-$mode-$run" t0 t1
  rm -f "$s.eval.jsonl"
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(now)
  if [ -n "$home" ]; then
    HIERAMAS_HOME="$home" /usr/bin/time -v -o "logs/$tag.time" "$BIN" grade humaneval-plus \
      --samples "$s.jsonl" --data-dir "$DATA_DIR" --parallel "$PARALLEL" > "logs/$tag.out" 2> "logs/$tag.err"
  else
    /usr/bin/time -v -o "logs/$tag.time" "$BIN" grade humaneval-plus \
      --samples "$s.jsonl" --data-dir "$DATA_DIR" --parallel "$PARALLEL" > "logs/$tag.out" 2> "logs/$tag.err"
  fi
  t1=$(now)
  cp "$s.eval.jsonl" "results/$tag.eval.jsonl"
  local rss usr sys
  rss=$(awk -F': ' '/Maximum resident/{print $2}' "logs/$tag.time")
  usr=$(awk -F': ' '/User time/{print $2}' "logs/$tag.time")
  sys=$(awk -F': ' '/System time/{print $2}' "logs/$tag.time")
  printf 'ours\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n' "$s" "$mode" "$run" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t1 - $t0" | bc)" "$usr" "$sys" "$rss" "$load" >> "$TSV"
}

# evp <samples> <mode> <run> [XDG_CACHE_HOME]
# to_result_s = time until the result JSON is written; evalplus 0.3.1 then waits for its
# non-daemon "stucking_checker" thread (sleeps in 20 s steps) before the process exits.
evp() {
  local s=$1 mode=$2 run=$3 cache=${4:-}
  local tag="evalplus-$s-$mode-$run" t0 t1 m
  rm -f "${s}_eval_results.json"
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(now)
  if [ -n "$cache" ]; then
    XDG_CACHE_HOME="$cache" /usr/bin/time -v -o "logs/$tag.time" "$VENV/bin/python" -m evalplus.evaluate \
      --dataset humaneval --samples "$s.jsonl" --parallel "$PARALLEL" > "logs/$tag.out" 2> "logs/$tag.err"
  else
    /usr/bin/time -v -o "logs/$tag.time" "$VENV/bin/python" -m evalplus.evaluate \
      --dataset humaneval --samples "$s.jsonl" --parallel "$PARALLEL" > "logs/$tag.out" 2> "logs/$tag.err"
  fi
  t1=$(now)
  m=$(stat -c %.9Y "${s}_eval_results.json")
  cp "${s}_eval_results.json" "results/$tag.json"
  local rss usr sys
  rss=$(awk -F': ' '/Maximum resident/{print $2}' "logs/$tag.time")
  usr=$(awk -F': ' '/User time/{print $2}' "logs/$tag.time")
  sys=$(awk -F': ' '/System time/{print $2}' "logs/$tag.time")
  printf 'evalplus\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n' "$s" "$mode" "$run" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$m - $t0" | bc)" "$usr" "$sys" "$rss" "$load" >> "$TSV"
}

for s in canonical mixed; do
  # cold: fresh, empty caches
  ours "$s" cold 1 "$(mktemp -d /tmp/hh-cold-XXXXXX)"
  evp  "$s" cold 1 "$(mktemp -d /tmp/evp-cold-XXXXXX)"
  # warm-up of the default caches (not timed for the table), then warm runs
  ours "$s" warmup 0
  evp  "$s" warmup 0
  for r in $(seq 1 "$RUNS"); do
    ours "$s" warm "$r"
    evp  "$s" warm "$r"
  done
done

column -t "$TSV"
python3 "$HERE/compare.py" "$OUT"
