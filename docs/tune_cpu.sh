#!/usr/bin/env bash
# The measurements behind train.py's CPU default: short time-budgeted runs of candidate settings, each scored by
# full-validation loss (the final evaluation in its metrics.csv; evaluate.py gives the same number for last.pt).
# Usage: bash docs/tune_cpu.sh [BUDGET_SECONDS] [CONFIG_NAME ...]; results are appended to out/tune/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-100}
shift || true
declare -A configs=(
  [tiny-b32-t128-lr1e-3]="--preset tiny --batch_size 32 --block_size 128 --learning_rate 1e-3"
  [tiny-b32-t128-lr2e-3]="--preset tiny --batch_size 32 --block_size 128 --learning_rate 2e-3"
  [tiny-b32-t128-lr4e-3]="--preset tiny --batch_size 32 --block_size 128 --learning_rate 4e-3"
  [tiny-b16-t128-lr2e-3]="--preset tiny --batch_size 16 --block_size 128 --learning_rate 2e-3"
  [tiny-b32-t64-lr2e-3]="--preset tiny --batch_size 32 --block_size 64 --learning_rate 2e-3"
  [l3-e128-b32-t128-lr2e-3]="--preset tiny --n_layer 3 --batch_size 32 --block_size 128 --learning_rate 2e-3"
  [l2-e192-h3-b32-t128-lr2e-3]="--preset tiny --n_embd 192 --n_head 3 --batch_size 32 --block_size 128 --learning_rate 2e-3"
  [tiny-b32-t64-lr4e-3]="--preset tiny --batch_size 32 --block_size 64 --learning_rate 4e-3"
  [tiny-b16-t64-lr4e-3]="--preset tiny --batch_size 16 --block_size 64 --learning_rate 4e-3"
  [tiny-b32-t32-lr4e-3]="--preset tiny --batch_size 32 --block_size 32 --learning_rate 4e-3"
  [tiny-b32-t64-lr8e-3]="--preset tiny --batch_size 32 --block_size 64 --learning_rate 8e-3"
  [tiny-b64-t64-lr4e-3]="--preset tiny --batch_size 64 --block_size 64 --learning_rate 4e-3"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${!configs[@]}")
mkdir -p out/tune
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  uv run python train.py ${configs[$name]} --time_budget "$budget" --max_iters 100000 --eval_interval 100000 \
    --warmup_iters 50 --sample_chars 0 --out_dir "out/tune/$name" --overwrite > "out/tune/$name.log" 2>&1
  last=$(tail -n 1 "out/tune/$name/metrics.csv")
  echo "| $name | ${configs[$name]} | $budget | $last |" | tee -a out/tune/results.md
done
