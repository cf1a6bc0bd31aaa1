#!/usr/bin/env bash
# Char versus byte-level BPE on Tiny Shakespeare, in bits per character (docs/BENCHMARKS.md, README "Tokenizers").
# The same model and optimizer settings as the CPU default (tiny preset, 32 x 64 tokens a step, lr 4e-3), the same
# number of steps (a fixed count, not a time budget, so a busy machine changes the times but not the losses), and the
# only difference the tokenizer. Each best.pt is then scored by evaluate.py on the whole val split.
# Usage: bash docs/bpe_vs_char.sh [steps]   (default 3000; about 4-8 minutes a run on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-3000}
common=(--preset tiny --batch_size 32 --block_size 64 --learning_rate 4e-3 --warmup_iters 50 --max_iters "$steps"
        --eval_interval 500 --device cpu --sample_chars 0 --overwrite --cache_dir out/cache-compare)
for tok in char bpe256 bpe512 bpe1024 bpe2048; do
  if [ "$tok" = char ]; then flags=(--tokenizer char); else flags=(--tokenizer bpe --vocab_size "${tok#bpe}"); fi
  start=$(date +%s)
  uv run python train.py "${common[@]}" "${flags[@]}" --out_dir "out/compare-$tok" > "out/compare-$tok.log" 2>&1
  echo "$tok: $(( $(date +%s) - start ))s wall | $(grep '^data:' "out/compare-$tok.log")"
  uv run python evaluate.py --checkpoint "out/compare-$tok/best.pt" --device cpu | tail -n 1
done
