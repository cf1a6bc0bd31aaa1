#!/usr/bin/env bash
# Reproduces the pictures in README's "How it works" (docs/pictures/*.png) and the figures behind generate.py's
# defaults (the window policy and the weights' dtype), from one real checkpoint: the CPU default's (GPT-2, batch
# 32 x 64; the flags pin those settings, so the pictures stay reproducible if the default moves).
#
#   bash docs/pictures.sh            # trains `python train.py --recipe gpt2 --batch_size 32 --block_size 64` (300 s)
#                                    # into out/pictures-run unless that run's best.pt exists, then draws and measures
#   RUN=out/my-run bash docs/pictures.sh    # any other finished run
#
# Prints: visualize.py's lines; evaluate.py's full-val loss with the checkpoint's whole context, with half of it (the
# least context generate.py's shift window ever leaves the model) and with bfloat16 weights (generate.py's dtype on
# CPUs that have bfloat16 in hardware); then bench.py's generation table for every preset.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
run=${RUN:-out/pictures-run}
if [ ! -f "$run/best.pt" ]; then
  $PY train.py --out_dir "$run" --overwrite --recipe gpt2 --batch_size 32 --block_size 64
fi
$PY visualize.py --checkpoint "$run/best.pt" --out_dir docs/pictures --device cpu
block=$($PY -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['model_config']['block_size'])" "$run/best.pt")
echo "--- val loss: context $block, context $((block / 2)), bfloat16 weights"
$PY evaluate.py --checkpoint "$run/best.pt" --device cpu
$PY evaluate.py --checkpoint "$run/best.pt" --device cpu --block_size $((block / 2))
$PY evaluate.py --checkpoint "$run/best.pt" --device cpu --weights_dtype bfloat16
echo "--- generation speed"
$PY bench.py --steps 0 --new_tokens 500 --device cpu --out out/bench-generation.md
