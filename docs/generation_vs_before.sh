#!/usr/bin/env bash
# Generation speed before and after the KV-cache rework, back to back on this machine (its speed drifts between
# sessions, so only back-to-back figures compare). "Before" is commit fc2062d, checked out in out/before; both run
# bench.py's generation table for every preset: 255 new tokens (inside the 256-token context) and 500 (past it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; else PY=python3; fi
before=fc2062d
[ -d out/before ] || git worktree add --detach out/before "$before"
for tokens in 255 500; do
  echo "=== before ($before), $tokens new tokens"
  (cd out/before && "$PY" bench.py --steps 0 --new_tokens "$tokens" --device cpu --out "../bench-before-$tokens.md") | grep "^|"
  echo "=== now, $tokens new tokens"
  "$PY" bench.py --steps 0 --new_tokens "$tokens" --device cpu --out "out/bench-now-$tokens.md" | grep "^|"
done
