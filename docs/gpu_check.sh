#!/usr/bin/env bash
# The GPU check: run on a machine with a CUDA GPU (or an Apple MPS Mac) to prove the GPU paths and measure them.
#   1. the tests marked `gpu` (`mps` on a Mac): a few training steps in bfloat16 and float16 with compile on and off,
#      resume on the GPU and across devices, greedy generation equal to the CPU's;
#   2. training speed per preset in the device's dtype, compile off and on (ms/step, tokens/s, compile seconds);
#   3. generation speed per preset (recompute, the slide and shift windows, half-width weights);
#   4. medium-preset train.py runs (5000 steps), --recipe gpt2 and then --recipe modern: the training seconds each
#      takes to reach val loss 1.47, and its best val loss.
# One markdown table, headed by the GPU, torch and CUDA versions, printed and written to out/gpu_check.md.
# Without a GPU it says so in one line and exits 1. `bash docs/gpu_check.sh --smoke` runs every step at toy sizes on
# whatever device there is (a CPU too): the tests use that to check the plumbing.
# Usage: bash docs/gpu_check.sh [--smoke] [--data PATH] [--target_loss 1.47]
set -euo pipefail
cd "$(dirname "$0")/.."
# $PYTHON where it is set (the tests set it to their own interpreter); else the project's environment where
# `uv sync` made one; otherwise the machine's python3 (Colab, a bare GPU box).
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" bench.py --gpu_check --out out/gpu_check.md "$@"
