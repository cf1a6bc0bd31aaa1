"""Every laptop: a command printed for the user runs as printed (a path with spaces, under uv or not), every
script survives a stdout that cannot encode its characters, and the suite and a run do without the signals a
platform lacks."""

import io
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from extras import cli
from extras import commands
from extras import failures
from extras.control import RunClock
from extras.ranks import Ranks
from conftest import ROOT, TINY_FLAGS, needs, plain_python_env, read_metrics, run_train, wait_for_checkpoint

# ------------------------------------------------------------------------------------------------------------
# commands printed for the user to type


def test_a_printed_command_is_quoted_for_the_shell_it_is_printed_in(monkeypatch):
    monkeypatch.delenv(commands.UV_RUN_MARK, raising=False)
    monkeypatch.setattr(commands.os, "name", "posix")
    out_dir = "/home/me/my runs/run 1 (it's $HOME)"
    printed = commands.shell_command("python", "train.py", "--resume", "--out_dir", out_dir)
    assert printed == "python train.py --resume --out_dir '/home/me/my runs/run 1 (it'\"'\"'s $HOME)'"
    assert shlex.split(printed) == ["python", "train.py", "--resume", "--out_dir", out_dir]
    monkeypatch.setenv(commands.UV_RUN_MARK, "1")  # as `uv run` leaves it for what it starts
    assert commands.shell_command("python", "train.py") == "uv run python train.py"
    # A torchrun launch resumes as one, behind `uv run` too; train.py as the user typed it.
    monkeypatch.setattr(sys, "argv", ["quill/train.py"])
    assert (failures.resume_command("out", Ranks(world_size=2, launched=True))
            == "uv run torchrun --standalone --nproc_per_node=2 quill/train.py --resume --out_dir out")
    monkeypatch.setattr(commands.os, "name", "nt")  # cmd and PowerShell: double quotes, backslashes as they are
    assert (commands.shell_command("python", "train.py", "--out_dir", r"C:\Users\me\my runs\run 1")
            == r'uv run python train.py --out_dir "C:\Users\me\my runs\run 1"')


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot send Ctrl-C to one child process")
@pytest.mark.parametrize("interpreter", ["python", "uv run python"], ids=["python", "uv-run"])
def test_an_interrupted_run_prints_a_command_that_resumes_it_as_printed(small_text, tmp_path, interpreter):
    env = plain_python_env()
    if interpreter != "python":
        uv = shutil.which("uv") or os.environ.get("UV")  # `uv run` names itself in $UV
        if commands.UV_RUN_MARK not in os.environ or not uv:
            pytest.skip("the tests were not started by `uv run`, so `uv run python` would reach another "
                        "environment than theirs")
        env = {**os.environ, "PATH": os.path.dirname(uv) + os.pathsep + os.environ["PATH"]}
    out_dir, log = tmp_path / "my runs" / "run 1 (it's $HOME)", tmp_path / "stopped.log"
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "train.py", "--data", str(small_text), "--out_dir",
                                 str(out_dir), *TINY_FLAGS, "--max_iters", "60", "--eval_interval", "30"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # The step-0 evaluation is saved: the loop has begun, and its 60 steps and two evaluations take far
        # longer than the signal takes to arrive.
        wait_for_checkpoint(out_dir / "last.pt", 0, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=300) == cli.EXIT_INTERRUPTED, log.read_text(encoding="utf-8")[-3000:]
    finally:
        proc.kill()  # only if a failed assertion left it running
    printed = log.read_text(encoding="utf-8").split("Continue with: ", 1)[1].splitlines()[0]
    assert printed.startswith(f"{interpreter} train.py --resume --out_dir ")
    saved = torch.load(out_dir / "last.pt", weights_only=True)["step"]
    # The printed line itself, through the shell; `python` alone becomes this interpreter (the same packages).
    this_python = shlex.quote(sys.executable)
    line = printed if interpreter != "python" else this_python + printed.removeprefix("python")
    resumed = subprocess.run(line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out_dir / 'last.pt'} at step {saved} of 60" in resumed.stdout
    assert read_metrics(out_dir)[-1]["step"] == 60


# ------------------------------------------------------------------------------------------------------------
# a stdout that cannot encode every character: Windows gives a redirected or piped one cp1252

# Characters cp1252 lacks (Greek, CJK, the return and space symbols visualize.py draws) beside some it has.
TEXT = "ROMEO: Ωμέγα ⏎ 日本語 — “café”\nJULIET: ␣ 你好, κόσμε!\n"


@pytest.fixture(scope="module")
def unicode_run(tmp_path_factory):
    """A tiny char model trained on TEXT, in a folder whose name cp1252 cannot encode."""
    folder = tmp_path_factory.mktemp("consoles") / "Ωμέγα ⏎ runs"
    folder.mkdir()
    data = folder / "κείμενο.txt"
    data.write_text(TEXT * 200, encoding="utf-8")
    assert run_train(data, folder / "run", "--max_iters", "2", "--eval_interval", "2") == 0
    return folder


def script_run(script: str, run):
    """The flags of a run of script on the files in the folder run, and what its stdout must hold."""
    return {
        "train.py": (["--data", run / "κείμενο.txt", "--out_dir", run / "again", *TINY_FLAGS,
                      "--max_iters", "2", "--sample_chars", "40"], f"checkpoint {run / 'again' / 'best.pt'}"),
        "generate.py": (["--checkpoint", run / "run" / "best.pt", "--prompt", "JULIET: ␣ 你好"],
                        "JULIET: ␣ 你好"),
        "evaluate.py": (["--checkpoint", run / "run" / "best.pt"], str(run / "run" / "best.pt")),
        # each token of this prompt is drawn as a character cp1252 lacks, so the "most read" lines print one
        "visualize.py": (["--checkpoint", run / "run" / "best.pt", "--prompt", "Ωμ\n日 語", "--out_dir",
                          run / "pictures"], f"wrote {run / 'pictures' / 'attention.png'}"),
        "bench.py": (["--metrics", run / "run" / "metrics.csv", "--target_loss", "9",
                      "--out", run / "bench.md"], str(run / "run" / "metrics.csv")),
    }[script]


@pytest.mark.parametrize("script", ["train.py", "generate.py", "evaluate.py",
                                    pytest.param("visualize.py", marks=needs("matplotlib")), "bench.py"])
def test_every_script_survives_a_stdout_that_cannot_encode_its_characters(unicode_run, script):
    flags, expected = script_run(script, unicode_run)
    proc = subprocess.run([sys.executable, script, *map(str, flags)], cwd=ROOT,
                          env=plain_python_env(PYTHONIOENCODING="cp1252"), capture_output=True, timeout=600)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # a pipe gets UTF-8
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert expected in out


class _Console(io.BytesIO):
    """What a terminal's byte stream looks like to Python."""

    def isatty(self):
        return True


def test_a_console_that_cannot_show_a_character_shows_a_question_mark(monkeypatch):
    console, pipe = io.TextIOWrapper(_Console(), encoding="cp1252"), io.TextIOWrapper(io.BytesIO(), "cp1252")
    monkeypatch.setattr(sys, "stdout", console)
    monkeypatch.setattr(sys, "stderr", pipe)
    cli.use_any_console()
    console.write("⏎ Ωμέγα café")
    console.flush()
    assert console.buffer.getvalue() == "? ????? café".encode("cp1252")  # the console's own encoding, kept
    assert pipe.encoding == "utf-8"  # a file or pipe: UTF-8, which takes every character


# ------------------------------------------------------------------------------------------------------------
# a platform without SIGKILL or SIGTERM (Windows has no SIGKILL, and nothing there sends SIGTERM)


def test_a_run_stops_on_ctrl_c_where_python_has_no_sigterm(small_text, tmp_path, monkeypatch):
    monkeypatch.delattr(signal, "SIGTERM")
    before = signal.getsignal(signal.SIGINT)
    with RunClock(time_budget=0) as clock:
        signal.raise_signal(signal.SIGINT)
        assert clock.check()[2]  # a stop was asked for
    assert failures.stopped_by(clock) == ("SIGINT", cli.EXIT_INTERRUPTED)
    assert signal.getsignal(signal.SIGINT) is before
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2") == 0


def test_the_suite_collects_and_skips_with_the_reason_where_python_lacks_sigkill_and_sigterm():
    # Windows' Python has no SIGKILL; SIGTERM goes once torch is imported, as every real Python has it and
    # torch's multiprocessing reads it. Every test module is then imported (collected); the tests that send
    # the missing signals are selected, and must skip.
    selected = "(stopped_subprocess or signal_to_torchrun) and not ctrl"
    code = ("import signal, sys; del signal.SIGKILL; import torch, pytest; del signal.SIGTERM; "
            f"sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', 'tests', '-k', {selected!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=plain_python_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 skipped" in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count("this Python has no signal.SIGTERM") == 2
    assert proc.stdout.count("this Python has no signal.SIGKILL") == 1
