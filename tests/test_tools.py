"""bench.py and evaluate.py: the commands that produce the figures in the docs."""

import ast
import sys
import subprocess
import math
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import bench
from extras import cli
import evaluate
from conftest import ROOT, read_metrics, require_corpus, run_train
from extras import dataset
from model import GPT, PRESETS
from extras.cpu import cpu_class
from extras.precision import make_precision
from extras.modern import RECIPES, pick_muon_dtype


def test_bench_quick_prints_training_and_generation_tables(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    table = out.read_text(encoding="utf-8")
    assert table == capsys.readouterr().out.split("written to")[0]
    rows = [line for line in table.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 2  # one training row, one generation row
    train_row, gen_row = ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    assert train_row[1] == "gpt2"  # the recipe: --recipes defaults to GPT-2 alone
    assert float(train_row[3].replace(",", "")) > 0 and float(train_row[4].replace(",", "")) > 0
    rates = [float(c.rstrip("x").replace(",", "")) for c in gen_row[1:]]
    assert min(rates) > 0  # four rates, two speed-ups: what they are worth is the next test's
    # The device bench.py picks by itself (--device auto): a CPU here, a GPU or a Mac elsewhere.
    assert "torch" in table and f"Device: {make_precision('auto').device}" in table
    if make_precision("auto").device.type == "cpu":  # the CPU's class: its vector instructions, bfloat16 or not
        assert cpu_class() in table.splitlines()[0]


def _positions(new_tokens: int, context: int, cached: bool, window: str) -> int:
    """Positions the model computes to generate new_tokens from a one-token prompt, counted from what each
    way keeps: without the cache, every pass recomputes the whole window; with it, one new position per pass,
    except when the window moves (slide: the whole window again, every step from then on; shift: its last
    half, once)."""
    total = length = cache = 1  # the prompt's pass
    for _ in range(new_tokens - 1):
        length += 1
        if length > context:  # the window is full: it moves, and the cache starts again
            length, cache = (context if window == "slide" else context // 2), 0
        step = 1 if cached and cache else length
        total, cache = total + step, length
    return total


def test_bench_generation_speedups_follow_the_work_each_way_does(monkeypatch):
    # A clock that ticks a microsecond per position the model computes: the table's tokens/s then measure
    # work, not this machine's load, and must equal the counts made here, apart from the bench's arithmetic.
    clock = {"now": 0.0}
    real_forward = GPT.forward

    def counting_forward(self, idx, *args, **kwargs):
        clock["now"] += idx.shape[1] * 1e-6  # idx: (B, T), the positions this pass computes
        return real_forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", counting_forward)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    context, new_tokens = 16, 48  # long enough for both windows to move a few times
    monkeypatch.setitem(PRESETS, "tiny", replace(PRESETS["tiny"], block_size=context, n_embd=32))
    lines = bench.generation_table(["tiny"], new_tokens, torch.device("cpu"), repeats=1)
    [row] = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| tiny |")]
    recompute, slide, shift, shift_half, speedup, speedup_half = (float(c.rstrip("x").replace(",", ""))
                                                                  for c in row[1:])
    expected = {name: new_tokens / (_positions(new_tokens, context, cached, window) * 1e-6)
                for name, (cached, window) in {"recompute": (False, "slide"), "slide": (True, "slide"),
                                               "shift": (True, "shift")}.items()}
    assert recompute == pytest.approx(expected["recompute"], rel=1e-3)
    assert slide == pytest.approx(expected["slide"], rel=1e-3)
    assert shift == pytest.approx(shift_half, rel=1e-3) == pytest.approx(expected["shift"], rel=1e-3)
    assert speedup == speedup_half == pytest.approx(expected["shift"] / expected["recompute"], abs=0.05)
    assert shift > slide > recompute  # the cache pays, and shift pays most once the text outgrows the window


def test_bench_times_each_recipe_as_train_py_builds_it(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "--recipes", "gpt2,modern", "--out", str(out)]) == 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text(encoding="utf-8").splitlines()
            if line.startswith("| tiny |")]
    rows = rows[:-1]  # the last is the generation table's
    assert [r[1] for r in rows] == ["gpt2", "modern"]
    pieces = {k: v for k, v in RECIPES["modern"].items() if k != "optimizer"}
    modern_params = GPT(replace(PRESETS["tiny"], vocab_size=65, block_size=32, **pieces)).num_params()
    assert int(rows[1][2].replace(",", "")) == modern_params != int(rows[0][2].replace(",", ""))  # RoPE: no position table
    assert float(rows[1][3].replace(",", "")) > 0
    dtype, why = pick_muon_dtype(make_precision("auto").device)  # the table says how Muon orthogonalised
    assert f"Muon's Newton-Schulz in {str(dtype).removeprefix('torch.')} ({why})" in out.read_text(encoding="utf-8")
    capsys.readouterr()
    assert bench.main(["--quick", "--recipes", "gpt2,llama", "--out", str(out)]) == cli.EXIT_USAGE
    assert "llama" in capsys.readouterr().err


def test_bench_matmul_times_float32_against_bfloat16(tmp_path):
    out = tmp_path / "bench.md"
    assert bench.main(["--matmul", "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    table = out.read_text(encoding="utf-8")
    assert cpu_class() in table.splitlines()[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| 384 |")]
    [[_, f32, bf16, ratio]] = rows
    assert min(float(f32.replace(",", "")), float(bf16.replace(",", ""))) > 0 and ratio.endswith("x")


def test_bench_reports_time_to_a_target_loss(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "6", "--eval_interval", "2") == 0
    rows = read_metrics(tmp_path)
    target = rows[2]["val_loss"]  # reached at step 4, not before
    capsys.readouterr()
    assert bench.main(["--metrics", str(tmp_path / "metrics.csv"), "--target_loss", str(target)]) == 0
    line = capsys.readouterr().out
    assert "first at step 4," in line and f"{rows[2]['elapsed_s']:.1f}s" in line
    assert bench.main(["--metrics", str(tmp_path / "metrics.csv"), "--target_loss", "0.01"]) == 0
    assert "never reached" in capsys.readouterr().out


def test_evaluate_prints_the_full_val_loss_that_training_logged(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "4", "--eval_interval", "2") == 0
    last_row = read_metrics(tmp_path)[-1]
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "last.pt"), "--batch_size", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    loss = float(re.search(r"full val loss (\d+\.\d+)", out).group(1))
    assert loss == pytest.approx(last_row["val_loss"], abs=1e-4)
    n_val = len(small_text.read_text(encoding="utf-8")) - int(0.9 * len(small_text.read_text(encoding="utf-8")))
    assert f"over {n_val - 1:,} tokens ({n_val - 1:,} characters)" in out  # every val character but the first, once
    bits = float(re.search(r"(\d+\.\d+) bits per character", out).group(1))
    assert bits == pytest.approx(loss / math.log(2), abs=2e-4)  # one token per character: bits are nats / ln 2


def test_evaluate_with_a_shorter_context_and_half_width_weights(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "300", "--eval_interval", "300") == 0  # context 32

    def val_loss(*flags):
        capsys.readouterr()
        assert evaluate.main(["--checkpoint", str(tmp_path / "last.pt"), "--device", "cpu", *flags]) == 0
        out = capsys.readouterr().out
        return float(re.search(r"full val loss (\d+\.\d+)", out).group(1)), out

    full, _ = val_loss()
    short, out = val_loss("--block_size", "4")
    assert "windows of 4 tokens" in out and short > full + 0.01  # four characters of context predict worse than 32
    half_width, out = val_loss("--weights_dtype", "bfloat16")
    assert "bfloat16 weights" in out and half_width == pytest.approx(full, abs=0.05) and half_width != full
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "last.pt"), "--block_size", "33"]) == 2
    assert "--block_size must be between 1 and 32" in capsys.readouterr().err


@pytest.mark.parametrize("flags, expected", [(["--checkpoint", "nowhere.pt"], "train one first"),
                                             (["--batch_size", "0"], "--batch_size must be positive")])
def test_evaluate_user_errors(flags, expected, capsys):
    assert evaluate.main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_script_imports_another_and_model_py_is_pure_torch():
    scripts = {"train", "generate", "evaluate", "bench", "visualize"}
    for path in [*ROOT.glob("*.py"), *ROOT.glob("extras/*.py")]:
        imported = _imports(path) & scripts
        assert not imported, f"{path.name} imports the script(s) {sorted(imported)}; shared code belongs in a module"
    # model.py is pure torch; the 2026 pieces it plugs in (extras/modern.py) are too.
    assert _imports(ROOT / "model.py") <= {"math", "contextlib", "dataclasses", "typing", "torch", "extras"}
    model_imports = {node.module for node in ast.walk(ast.parse((ROOT / "model.py").read_text(encoding="utf-8")))
                     if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("extras")}
    assert model_imports == {"extras"}  # from extras import modern, and nothing else
    assert _imports(ROOT / "extras" / "modern.py") <= {"torch", "model", "extras"}  # extras.device: bfloat16?


def test_a_default_run_reads_no_advanced_module(small_text, tmp_path):
    # The workshop's path (GPT-2, characters, one process) never imports the 2026 pieces, the generation engine,
    # BPE or the looking-inside code: a learner opens those files only for the flag that needs them.
    code = ("import sys, train; code = train.main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.startswith('extras.'))); sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code, "--data", str(small_text), "--out_dir", str(tmp_path),
                          "--preset", "tiny", "--block_size", "32", "--batch_size", "4", "--max_iters", "2",
                          "--eval_interval", "2", "--sample_chars", "20"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    loaded = set(eval(run.stdout.strip().splitlines()[-1]))
    assert loaded.isdisjoint({"extras.modern", "extras.engine", "extras.bpe", "extras.inside", "extras.streaming",
                              "extras.distributed", "extras.resume", "extras.download", "extras.compiling",
                              "extras.failures", "extras.flag_help", "extras.gpu", "extras.cpu",
                              "extras.commands", "extras.checkpoint", "extras.dataset"}), loaded


def _budget_table(stderr: str) -> tuple[int, set[str]]:
    """docs/import_budget.py's table (the end of stderr): the total and the files it counted."""
    rows = re.findall(r"^\s*([\d,]+) (\S+\.py)$", stderr, flags=re.M)
    total = re.findall(r"^\s*([\d,]+) lines in \d+ files$", stderr, flags=re.M)[-1]
    return int(total.replace(",", "")), {name for _, name in rows}


def test_a_default_cpu_run_imports_at_most_1800_lines_of_project_code(small_text, tmp_path):
    # `python train.py` on a CPU (the quick run, given a small text and cut to a second) loads the workshop's
    # files and the modules that run it, nothing for a flag it was not given or a failure it did not have.
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "import_budget.py"), "train.py", "--data",
                          str(small_text), "--out_dir", str(tmp_path), "--time_budget", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    total, files = _budget_table(run.stderr)
    assert 1000 < total <= 1800, run.stderr[-2000:]
    assert {"train.py", "model.py", "extras/run.py"} <= files
    assert files.isdisjoint({"extras/failures.py", "extras/flag_help.py", "extras/gpu.py", "extras/cpu.py",
                             "extras/commands.py", "extras/checkpoint.py", "extras/dataset.py",
                             "extras/distributed.py", "extras/resume.py", "extras/modern.py"}), files


def test_generate_py_imports_at_most_1000_lines_of_project_code(small_text, tmp_path):
    # docs/import_budget.py counts what a script loads; sampling text must not drag in the trainer.
    assert run_train(small_text, tmp_path, "--max_iters", "1", "--eval_interval", "1") == 0
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "import_budget.py"), "generate.py", "--checkpoint",
                          str(tmp_path / "best.pt"), "--max_new_tokens", "3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    total, files = _budget_table(run.stderr)
    assert 500 < total <= 1000, run.stderr
    assert files.isdisjoint({"extras/run.py", "extras/files.py", "extras/metrics.py", "extras/dataset.py"}), files


def test_ci_fails_where_the_corpus_tests_would_skip(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "DEFAULT_DATA", tmp_path / "tinyshakespeare.txt")  # an offline clone
    monkeypatch.delenv("QUILL_REQUIRE_CORPUS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Tiny Shakespeare not at"):
        require_corpus()
    monkeypatch.setenv("QUILL_REQUIRE_CORPUS", "1")  # as .ci/run sets it
    with pytest.raises(pytest.fail.Exception, match="QUILL_REQUIRE_CORPUS=1 says this machine must run"):
        require_corpus()
    assert "export QUILL_REQUIRE_CORPUS=1" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
