#!/usr/bin/env bash
# The 2026 pieces measured against GPT-2 on this machine: the settings of the CPU default they were first measured
# with (GPT-2's tiny model, batch 32 x 64: `base` below), each piece added to GPT-2 alone, the modern recipe, and the
# modern recipe with each piece taken out; and (cpu_default) the runs that made the modern recipe the CPU default.
#
#   bash docs/ablate.sh steps     # every variant for a fixed number of steps (STEPS): losses that ignore machine load
#   bash docs/ablate.sh time      # every variant for a fixed time budget (BUDGET seconds): what a piece's cost buys
#   bash docs/ablate.sh muon_lr   # the Muon learning rates tried, fixed steps
#   bash docs/ablate.sh targets   # back to back: the CPU default (300 s) with the GPT-2 recipe, then the modern
#                                 # one, and when the modern run first reached GPT-2's final loss
#   bash docs/ablate.sh targets_muon_lr   # the same, the modern recipe at Muon lr 1e-3 to 1.6e-2
#   bash docs/ablate.sh cpu_default       # 300-s runs as `python train.py` makes them (evaluation every 1000
#                                         # steps): GPT-2, the modern recipe at several batch and context sizes,
#                                         # GPT-2 with Muon alone, and the modern recipe with a 180-s and a
#                                         # 175-s budget (60% of GPT-2's time)
#
# Each run is a plain train.py run in out/ablate/MODE/VARIANT/seedN; the table (final full-val loss per seed, mean
# loss and bits/char, training tokens/s, parameters) is printed and written to out/ablate/MODE.md by
# `python bench.py --compare out/ablate/MODE`. Settings: STEPS (default 400), BUDGET (30), SEEDS ("1 2"), and
# NAMES ("gpt2 +rope ...": only these variants; the table still shows every finished one).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
mode=${1:-steps}
steps=${STEPS:-400}
budget=${BUDGET:-30}
seeds=${SEEDS:-"1 2"}
root=out/ablate/$mode
# What every run starts from: the CPU default these measurements were first made with (GPT-2's tiny model at batch
# 32 x 64, Muon at 8e-3 where a variant asks for Muon), as flags, so that a change to train.py's CPU_DEFAULTS does not
# change what a mode measures. A variant's own flags come after these and win.
base="--recipe gpt2 --batch_size 32 --block_size 64 --muon_lr 8e-3"

# GPT-2 plus one piece (tiny has 2 heads, so grouped-query attention there is 1 key/value head: multi-query).
declare -A added=(
  [gpt2]=""
  [+rope]="--position rope"
  [+rmsnorm]="--norm rmsnorm"
  [+swiglu]="--mlp swiglu"
  [+relu2]="--mlp relu2"
  [+qk_norm]="--qk_norm"
  [+gqa]="--n_kv_head 1"
  [+untied]="--no-tie_weights"
  [+muon]="--optimizer muon"
)
# Every piece at once (but grouped-query attention, which is for the cache), then without each of its pieces (the
# GPT-2 choice put back). The modern recipe (RECIPES in extras/modern.py) is the pieces these runs and the "time" runs showed
# to pay for themselves on this CPU: RoPE, ReLU² and Muon.
all="--position rope --norm rmsnorm --mlp swiglu --qk_norm --no-tie_weights --optimizer muon"
declare -A removed=(
  [all]="$all"
  [all-rope]="$all --position learned"
  [all-rmsnorm]="$all --norm layernorm"
  [all-swiglu]="$all --mlp gelu"
  [all-qk_norm]="$all --no-qk_norm"
  [all-untied]="$all --tie_weights"
  [all-muon]="$all --optimizer adamw"
  [modern]="--recipe modern"
)
declare -A muon_lr=(
  [muon-lr-2e-3]="--optimizer muon --muon_lr 2e-3"
  [muon-lr-4e-3]="--optimizer muon --muon_lr 4e-3"
  [muon-lr-8e-3]="--optimizer muon --muon_lr 8e-3"
  [muon-lr-1.6e-2]="--optimizer muon --muon_lr 1.6e-2"
)

chosen() { [ -z "${NAMES:-}" ] || [[ " $NAMES " == *" $1 "* ]]; }

run() {  # run VARIANT SEED "VARIANT FLAGS" [MORE FLAGS...]: one train.py run, its log beside its metrics
  local name=$1 seed=$2 flags=$3 dir="$root/$1/seed$2"
  shift 3
  chosen "$name" || return 0
  mkdir -p "$dir"
  echo "$flags" > "$root/$name/flags.txt"
  echo "== $name seed $seed: $flags $*"
  # shellcheck disable=SC2086
  "$PY" train.py --device cpu --out_dir "$dir" --overwrite --seed "$seed" --sample_chars 0 $base $flags "$@" > "$dir.log" 2>&1 \
    || { echo "failed: see $dir.log"; tail -n 3 "$dir.log"; exit 1; }
}

case $mode in
  steps|time)
    if [ "$mode" = steps ]; then budget_flags=(--max_iters "$steps" --time_budget 0 --eval_interval "$steps")
    else budget_flags=(--time_budget "$budget" --eval_interval 100000); fi
    for seed in $seeds; do
      for name in gpt2 +rope +rmsnorm +swiglu +relu2 +qk_norm +gqa +untied +muon; do
        run "$name" "$seed" "${added[$name]}" "${budget_flags[@]}"
      done
      for name in all all-rope all-rmsnorm all-swiglu all-qk_norm all-untied all-muon modern; do
        run "$name" "$seed" "${removed[$name]}" "${budget_flags[@]}"
      done
    done ;;
  muon_lr)
    for seed in $seeds; do
      run gpt2 "$seed" "" --max_iters "$steps" --time_budget 0 --eval_interval "$steps"
      for name in "${!muon_lr[@]}"; do
        run "$name" "$seed" "${muon_lr[$name]}" --max_iters "$steps" --time_budget 0 --eval_interval "$steps"
      done
    done ;;
  targets)
    # The CPU default as `python train.py` runs it (300 s), GPT-2 then modern, back to back; an evaluation every 250
    # steps instead of 1000 gives the time-to-target curve (the evaluations count against both clocks alike).
    for seed in $seeds; do
      run gpt2-300s "$seed" "--recipe gpt2" --eval_interval 250
      run modern-300s "$seed" "--recipe modern" --eval_interval 250
    done
    gpt2_loss=$(tail -n 1 "$root/gpt2-300s/seed${seeds%% *}/metrics.csv" | cut -d, -f3)
    "$PY" bench.py --metrics "$root/modern-300s/seed${seeds%% *}/metrics.csv" --target_loss "$gpt2_loss" ;;
  targets_muon_lr)
    # The targets' runs again, with the modern recipe at five Muon learning rates: the one chosen from 600-step runs
    # (8e-3), an eighth, a quarter, half and twice it: does a 300-s run want another one? GPT-2 first, all back to back.
    for seed in $seeds; do
      run gpt2-300s "$seed" "--recipe gpt2" --eval_interval 250
      for lr in 1e-3 2e-3 4e-3 8e-3 1.6e-2; do
        run "modern-300s-muon-lr-$lr" "$seed" "--recipe modern --muon_lr $lr" --eval_interval 250
      done
    done
    gpt2_loss=$(tail -n 1 "$root/gpt2-300s/seed${seeds%% *}/metrics.csv" | cut -d, -f3)
    for lr in 1e-3 2e-3 4e-3 8e-3 1.6e-2; do
      echo "muon_lr $lr: $("$PY" bench.py --metrics "$root/modern-300s-muon-lr-$lr/seed${seeds%% *}/metrics.csv" --target_loss "$gpt2_loss")"
    done ;;
  cpu_default)
    # What the CPU default should be: each candidate run as `python train.py` runs it (300 s, an evaluation every 1000
    # steps), one after another. The "-180s" and "-175s" runs ask the first target directly: the modern recipe with its
    # schedule fitted to 60% of GPT-2's 300 s (175 s leaves room for the closing evaluation within 60% of GPT-2's
    # time). gpt2-b32-t64 is the CPU default (plain `python train.py`), modern-b8-t256 what `--recipe modern` runs
    # on a CPU, and gpt2-muon-b32-t64 GPT-2 with Muon alone.
    modern="--recipe modern --muon_lr 2e-3"
    for seed in $seeds; do
      run gpt2-b32-t64 "$seed" "--recipe gpt2 --batch_size 32 --block_size 64"
      run modern-b32-t64-180s "$seed" "$modern --batch_size 32 --block_size 64 --time_budget 180"
      run modern-b32-t64 "$seed" "$modern --batch_size 32 --block_size 64"
      run modern-b16-t128 "$seed" "$modern --batch_size 16 --block_size 128"
      run modern-b32-t128 "$seed" "$modern --batch_size 32 --block_size 128"
      run modern-b8-t256 "$seed" "$modern --batch_size 8 --block_size 256"
      run modern-b8-t128 "$seed" "$modern --batch_size 8 --block_size 128"
      run gpt2-b8-t256 "$seed" "--recipe gpt2 --batch_size 8 --block_size 256"
      run modern-b8-t256-180s "$seed" "$modern --batch_size 8 --block_size 256 --time_budget 180"
      run modern-b8-t256-175s "$seed" "$modern --batch_size 8 --block_size 256 --time_budget 175"
      run gpt2-muon-b32-t64 "$seed" "--recipe gpt2 --optimizer muon --muon_lr 2e-3 --batch_size 32 --block_size 64"
    done
    first=${seeds%% *}
    for gpt2 in gpt2-b32-t64 gpt2-b8-t256; do
      [ -f "$root/$gpt2/seed$first/metrics.csv" ] || continue
      loss=$(tail -n 1 "$root/$gpt2/seed$first/metrics.csv" | cut -d, -f3)
      for name in modern-b32-t64-180s modern-b8-t256-180s modern-b8-t256-175s modern-b8-t256; do
        [ -f "$root/$name/seed$first/metrics.csv" ] || continue
        echo "$name against $gpt2's final $loss: $("$PY" bench.py --metrics "$root/$name/seed$first/metrics.csv" --target_loss "$loss")"
      done
    done ;;
  *) echo "usage: bash docs/ablate.sh steps|time|muon_lr|targets|targets_muon_lr|cpu_default" >&2; exit 2 ;;
esac
"$PY" bench.py --compare "$root" --out "out/ablate/$mode.md"
