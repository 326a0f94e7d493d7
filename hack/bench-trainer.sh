#!/usr/bin/env bash
# The trainer's speed and memory side by side with the Python reference, in one run: training
# tokens/s (forward + backward + AdamW, full fine-tuning) against PyTorch eager, and decode
# tokens/s (KV cache, greedy, batch 1 and 8) against `transformers` `generate`; the same torch
# 2.13.0, model directory, batch, lengths and thread count; each case in its own process so the
# peak RSS is per case. REPS rounds alternate the two (default 3); medians are shown.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
export LIBTORCH; LIBTORCH=$(hack/libtorch.sh)
py=$(hack/pyenv.sh)
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
cargo build --release -q -p modelcommons-trainer
bin=target/release/modelcommons-trainer
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
# A small Llama: 8 layers, hidden 512, GQA 8:2, vocab 8192 (~32M parameters).
$bin init --out "$dir/m" --seed 1 --vocab-size 8192 --hidden-size 512 --intermediate-size 1408 \
  --layers 8 --heads 8 --kv-heads 2 >/dev/null
rows=()
run() { rows+=("$("$@" | tail -1)"); }
REPS=${REPS:-3}
# Alternate the implementations, REPS rounds; the table shows each case's median round.
for rep in $(seq "$REPS"); do
for impl in ours ref; do
  if [ $impl = ours ]; then
    run $bin bench train --model "$dir/m" --batch 4 --seq 128 --steps 10 --warmup 2 --threads "$THREADS"
    run $bin bench decode --model "$dir/m" --batch 1 --seq 32 --steps 64 --threads "$THREADS"
    run $bin bench decode --model "$dir/m" --batch 8 --seq 32 --steps 64 --threads "$THREADS"
  else
    run "$py" trainer/py/reference.py bench-train "$dir/m" 4 128 10 2 "$THREADS"
    run "$py" trainer/py/reference.py bench-decode "$dir/m" 1 32 64 "$THREADS"
    run "$py" trainer/py/reference.py bench-decode "$dir/m" 8 32 64 "$THREADS"
  fi
done
done
echo "rounds: $REPS (median shown)   threads: $THREADS   model: 8 layers, hidden 512, GQA 8:2, vocab 8192 (~32M parameters), f32, CPU"
echo "train: batch 4 x 128 tokens, full fine-tuning, AdamW; decode: 32-token prompt + 64 new tokens, greedy"
printf '%s\n' "${rows[@]}" | "$py" trainer/py/bench_table.py
