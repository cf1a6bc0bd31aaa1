"""How many lines of project code a script imports: run it, then count the lines of every module of this
repo in sys.modules (the script itself included). The budgets: a default CPU run of train.py, 1,800 lines;
generate.py, 1,000.

    python docs/import_budget.py train.py --time_budget 5 --out_dir out/budget --overwrite
    python docs/import_budget.py generate.py --checkpoint out/budget/best.pt --max_new_tokens 20

The table goes to stderr after the script's own output; the exit code is the script's.
"""

import atexit
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_modules() -> list[Path]:
    """The files of this repo's modules that are loaded now, sorted."""
    files = {Path(m.__file__).resolve() for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    # a virtual environment may live inside the repo (.venv, or docs/compat.sh's under out/): not ours
    return sorted(f for f in files if f.is_relative_to(ROOT) and not {".venv", "site-packages"} & set(f.parts)
                  and f.suffix == ".py" and f.is_file())


def report(script: Path) -> None:
    """Print lines per loaded project file, and the total."""
    files = [f for f in project_modules() if f not in (script, Path(__file__).resolve())] + [script]
    counts = [(len(f.read_text(encoding="utf-8").splitlines()), f.relative_to(ROOT)) for f in files]
    for n, name in counts:
        print(f"{n:6,} {name}", file=sys.stderr)
    print(f"{sum(n for n, _ in counts):6,} lines in {len(counts)} files", file=sys.stderr)


if __name__ == "__main__":
    script = (ROOT / sys.argv[1]).resolve()
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path.insert(0, str(ROOT))
    atexit.register(report, script)
    runpy.run_path(str(script), run_name="__main__")
