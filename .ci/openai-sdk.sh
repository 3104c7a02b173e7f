#!/usr/bin/env bash
# The official openai Python SDK against `hieramas serve --system` on a bundle trained on the
# embedded local pool (one stage-1 iteration, a tiny stage 2). Run from the repository root
# after a build; `.ci/run` calls it. Needs python3 with venv (apt-get install python3-venv).
set -euo pipefail
bin=${HIERAMAS_BIN:-target/debug/hieramas}
work=${1:-target/openai-sdk}
rm -rf "$work"
mkdir -p "$work"

if ! python3 -m venv "$work/venv" >/dev/null 2>&1; then
    echo "python3 -m venv failed: installing python3-venv"
    (apt-get update -qq && apt-get install -y -qq python3-venv) >/dev/null || sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$work/venv"
fi
"$work/venv/bin/pip" install -q openai

train=(--benchmark math --pool pools/local.toml --width 1 --max-tokens 24 --quiet --embeddings "$work/embeddings")
"$bin" train stage1 "${train[@]}" --iterations 1 --batch-size 2 --train-limit 2 --val-limit 0 --out "$work/stage1"
"$bin" train stage2-data "${train[@]}" --stage1 "$work/stage1/selector.safetensors" --limit 2 --graphs 2 --out "$work/data"
"$bin" train stage2 --data "$work/data" --out "$work/classifier" --epochs 2 --quiet
"$bin" export --stage1 "$work/stage1" --stage2 "$work/classifier" -o "$work/system" --name local-math

"$bin" serve --addr 127.0.0.1:0 --system "$work/system" --model local/smollm2-135m >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$work/serve.err"; exit 1; }
    sleep 0.5
done
url=$(sed -n 's/^listening on //p' "$work/serve.out")/v1
"$work/venv/bin/python" .ci/openai_sdk_check.py "$url" hieramas/local-math
