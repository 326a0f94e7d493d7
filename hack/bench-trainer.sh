#!/usr/bin/env bash
# The trainer's speed and memory side by side with the Python reference, in one run: training
# tokens/s (forward + backward + AdamW, full fine-tuning) against PyTorch eager, and decode
# tokens/s (KV cache, greedy, batch 1 and 8) against `transformers` `generate`; the same torch
# 2.13.0, model directory, batch, lengths and thread count; each case in its own process so the
# peak RSS is per case.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
export LIBTORCH; LIBTORCH=$(hack/libtorch.sh)
py=$(hack/pyenv.sh)
cargo build --release -q -p modelcommons-trainer
bin=target/release/modelcommons-trainer
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
# A small Llama: 8 layers, hidden 512, GQA 8:2, vocab 8192 (~32M parameters).
$bin init --out "$dir/m" --seed 1 --vocab-size 8192 --hidden-size 512 --intermediate-size 1408 \
  --layers 8 --heads 8 --kv-heads 2 >/dev/null
rows=()
run() { rows+=("$("$@" | tail -1)"); }
for impl in ours ref; do
  if [ $impl = ours ]; then
    run $bin bench train --model "$dir/m" --batch 4 --seq 128 --steps 5 --warmup 1 --threads "$THREADS"
    run $bin bench decode --model "$dir/m" --batch 1 --seq 32 --steps 64 --threads "$THREADS"
    run $bin bench decode --model "$dir/m" --batch 8 --seq 32 --steps 64 --threads "$THREADS"
  else
    run "$py" trainer/py/reference.py bench-train "$dir/m" 4 128 5 1 "$THREADS"
    run "$py" trainer/py/reference.py bench-decode "$dir/m" 1 32 64 "$THREADS"
    run "$py" trainer/py/reference.py bench-decode "$dir/m" 8 32 64 "$THREADS"
  fi
done
printf '%s\n' "${rows[@]}" | "$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print(f"threads: '"$THREADS"'   model: 8 layers, hidden 512, GQA 8:2, vocab 8192, f32 CPU")
print(f"{\"case\":<12} {\"implementation\":<30} {\"tokens/s\":>10} {\"peak RSS MiB\":>13} {\"ratio\":>7}")
ref = {r["case"]: r["tokens_per_second"] for r in rows if r["impl"] != "modelcommons (tch)"}
for r in sorted(rows, key=lambda r: (r["case"], r["impl"] != "modelcommons (tch)")):
    ratio = r["tokens_per_second"] / ref[r["case"]]
    print(f"{r[\"case\"]:<12} {r[\"impl\"]:<30} {r[\"tokens_per_second\"]:>10.1f} {r[\"peak_rss_mib\"]:>13.0f} {ratio:>6.2f}x")
'
