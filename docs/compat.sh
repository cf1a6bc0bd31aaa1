#!/usr/bin/env bash
# What pyproject.toml claims, tested: the whole suite in each environment below, one after another, one table row
# each (environment, Python, torch, passed / skipped / failed). docs/compat.md holds the last table measured.
#   oldest            Python 3.10 and every dependency at the floor pyproject.toml names (torch 2.4, numpy 1.26,
#                     ...): uv pip install --resolution lowest-direct into a plain venv
#   colab             today's Colab: Python 3.13, torch 2.11, pip alone in a plain venv (no uv), with what Colab
#                     has preinstalled: torch numpy tqdm matplotlib, and pytest; no tokenizers, so BPE tests skip
#   colab+tokenizers  the same venv after `pip install tokenizers`
#   lock              uv.lock as .ci/run uses it: uv sync --locked, then uv run pytest
# The venvs are kept under out/compat/ (ignored by git), so a second run reuses them; each pytest output is in
# out/compat/<environment>.log and the table in out/compat/table.md. Pythons are found among the installed ones
# (pyenv's too); none is downloaded. Exits 1 when a test failed or an environment could not be set up.
# Usage: bash docs/compat.sh [oldest] [colab] [lock]    (default: all three; colab runs both of its passes)
set -euo pipefail
cd "$(dirname "$0")/.."

OLDEST_PYTHON=3.10
COLAB_PYTHON=3.13
COLAB_TORCH=2.11.*
COLAB_PACKAGES=(numpy tqdm matplotlib pytest)  # torch apart: it is pinned to Colab's version
OUT=out/compat
mkdir -p "$OUT"

find_python() {  # find_python 3.10: the path of an installed Python 3.10 (PATH first, then pyenv's versions)
  local version=$1 candidate pyenv_root
  pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "python$version" "$pyenv_root"/versions/"$version".*/bin/"python$version"; do
    if "$candidate" -c "" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  uv python find --no-python-downloads "$version" 2>/dev/null && return 0
  echo "error: no Python $version installed here (pyenv install $version, or your system's python$version)" >&2
  return 1
}

failed=0
row() {  # row NAME PYTHON_EXE LOG: the table row of one pytest run from its log
  local name=$1 python=$2 log=$3 versions summary count passed skipped failures
  versions=$("$python" -c "import platform, torch; print(platform.python_version(), torch.__version__)") \
    || versions="? ?"
  summary=$(tail -n 1 "$log")  # pytest's last line: "==== 312 passed, 14 skipped, 1 warning in 540.12s ===="
  count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE "^[0-9]+" || echo 0; }
  passed=$(count passed)
  skipped=$(count skipped)
  failures=$(( $(count failed) + $(count errors?) ))
  if [ "$failures" -ne 0 ] || ! grep -qE "[0-9]+ passed" <<<"$summary"; then failed=1; fi
  local seconds
  seconds=$(grep -oE "in [0-9.]+s" <<<"$summary" | grep -oE "[0-9]+" | head -n 1 || echo "?")
  printf '| %s | %s | %s | %s | %s | %s | %s s |\n' "$name" ${versions% *} "${versions#* }" "$passed" "$skipped" \
    "$failures" "$seconds" | tee -a "$OUT/table.md"
}

run_suite() {  # run_suite NAME PYTHON_EXE PYTEST_COMMAND...: the suite, its output in out/compat/NAME.log
  local name=$1 python=$2
  shift 2
  local log="$OUT/$name.log"
  echo "running the suite: $name (output in $log)" >&2
  # -rs lists every skip with its reason at the end of the log; pass or fail is read from the summary line
  # --continue-on-collection-errors: a module that fails to import counts as an error, and the rest still runs
  "$@" -rs -p no:cacheprovider --continue-on-collection-errors >"$log" 2>&1 || true
  row "$name" "$python" "$log"
}

setup_failed() {  # setup_failed NAME: a row saying the environment could not be made
  echo "error: could not set up the $1 environment (see the lines above)" >&2
  printf '| %s | - | - | - | - | - | set-up failed |\n' "$1" | tee -a "$OUT/table.md"
  failed=1
}

oldest() {
  local venv="$OUT/oldest" python
  python=$(find_python "$OLDEST_PYTHON") || { setup_failed oldest; return; }
  [ -x "$venv/bin/python" ] || uv venv --quiet --python "$python" "$venv" || { setup_failed oldest; return; }
  # lowest-direct: each dependency of pyproject.toml (and the dev group's pytest) at the lowest version it admits
  uv pip install --quiet --python "$venv/bin/python" --resolution lowest-direct -r pyproject.toml "pytest>=8" \
    || { setup_failed oldest; return; }
  run_suite oldest "$venv/bin/python" "$venv/bin/python" -m pytest
}

colab() {
  local venv="$OUT/colab" python
  python=$(find_python "$COLAB_PYTHON") || { setup_failed colab; return; }
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || { setup_failed colab; return; }
  "$venv/bin/python" -m pip install --quiet "torch==$COLAB_TORCH" "${COLAB_PACKAGES[@]}" \
    || { setup_failed colab; return; }
  "$venv/bin/python" -m pip uninstall --quiet --yes tokenizers 2>/dev/null || true  # left by an earlier run
  run_suite colab "$venv/bin/python" "$venv/bin/python" -m pytest
  "$venv/bin/python" -m pip install --quiet tokenizers || { setup_failed colab+tokenizers; return; }
  run_suite colab+tokenizers "$venv/bin/python" "$venv/bin/python" -m pytest
}

lock() {
  # uv.lock in an environment of its own rather than the checkout's .venv, which other work may be using
  local venv="$OUT/lock"
  UV_PROJECT_ENVIRONMENT="$venv" uv sync --quiet --locked || { setup_failed lock; return; }
  run_suite lock "$venv/bin/python" env UV_PROJECT_ENVIRONMENT="$venv" uv run --locked pytest
}

environments=("$@")
[ ${#environments[@]} -gt 0 ] || environments=(oldest colab lock)
for env in "${environments[@]}"; do
  case $env in
    oldest | colab | lock) ;;
    *) echo "error: unknown environment $env (oldest, colab or lock)" >&2; exit 2 ;;
  esac
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
{
  echo "Test suite per environment on $(nproc) cores of ${cpu:-an unknown CPU}, $(date -u +%Y-%m-%d):"
  echo
  echo "| environment | Python | torch | passed | skipped | failed | time |"
  echo "|---|---|---|---:|---:|---:|---:|"
} | tee "$OUT/table.md"
for env in "${environments[@]}"; do "$env"; done
exit "$failed"
