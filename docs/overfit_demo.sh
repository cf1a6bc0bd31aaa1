#!/usr/bin/env bash
# Reproduces docs/loss-overfit.png: a run that overfits on purpose, so you can see what that looks like.
# The tiny preset trains on only the first 100,000 characters of Tiny Shakespeare (90,000 to train on) for 3000
# steps of 32 x 128 characters: about 136 passes over its training text, plenty to memorise it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
uv run python -c "from extras.dataset import DEFAULT_DATA; print(DEFAULT_DATA.read_text(encoding='utf-8')[:100_000], end='')" \
  > out/shakespeare-100k.txt
uv run python train.py --data out/shakespeare-100k.txt --out_dir out/overfit --overwrite --preset tiny \
  --batch_size 32 --block_size 128 --max_iters 3000 --eval_interval 100 --dropout 0
cp out/overfit/loss.png docs/loss-overfit.png
