#!/usr/bin/env bash
# Does torch.compile speed up the CPU default's training step? Eager and compiled, alternated three times so that
# drift in the machine's speed hits both alike. Tables go to out/compile-{off,on}-N.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for i in 1 2 3; do
  for mode in off on; do
    uv run python bench.py --presets tiny --batch_size 32 --block_size 64 --steps 50 --warmup 5 --new_tokens 0 \
      --compile "$mode" --out "out/compile-$mode-$i.md" 2>/dev/null | grep '^| tiny'
  done
done
