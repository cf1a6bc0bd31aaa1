"""Every laptop: a command printed for the user runs as printed (a path with spaces, under uv or not)."""

import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from extras import cli
from conftest import ROOT, TINY_FLAGS, plain_python_env, read_metrics, wait_for_checkpoint

# ------------------------------------------------------------------------------------------------------------
# commands printed for the user to type


def test_a_printed_command_is_quoted_for_the_shell_it_is_printed_in(monkeypatch):
    monkeypatch.delenv(cli.UV_RUN_MARK, raising=False)
    monkeypatch.setattr(cli.os, "name", "posix")
    out_dir = "/home/me/my runs/run 1 (it's $HOME)"
    printed = cli.shell_command("python", "train.py", "--resume", "--out_dir", out_dir)
    assert printed == "python train.py --resume --out_dir '/home/me/my runs/run 1 (it'\"'\"'s $HOME)'"
    assert shlex.split(printed) == ["python", "train.py", "--resume", "--out_dir", out_dir]
    monkeypatch.setenv(cli.UV_RUN_MARK, "1")  # as `uv run` leaves it for what it starts
    assert cli.shell_command("python", "train.py") == "uv run python train.py"
    monkeypatch.setattr(cli.os, "name", "nt")  # cmd and PowerShell: double quotes, backslashes as they are
    assert (cli.shell_command("python", "train.py", "--out_dir", r"C:\Users\me\my runs\run 1")
            == r'uv run python train.py --out_dir "C:\Users\me\my runs\run 1"')


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot send Ctrl-C to one child process")
@pytest.mark.parametrize("interpreter", ["python", "uv run python"], ids=["python", "uv-run"])
def test_an_interrupted_run_prints_a_command_that_resumes_it_as_printed(small_text, tmp_path, interpreter):
    env = plain_python_env()
    if interpreter != "python":
        uv = shutil.which("uv") or os.environ.get("UV")  # `uv run` names itself in $UV
        if cli.UV_RUN_MARK not in os.environ or not uv:
            pytest.skip("the tests were not started by `uv run`, so `uv run python` would reach another "
                        "environment than theirs")
        env = {**os.environ, "PATH": os.path.dirname(uv) + os.pathsep + os.environ["PATH"]}
    out_dir, log = tmp_path / "my runs" / "run 1 (it's $HOME)", tmp_path / "stopped.log"
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "train.py", "--data", str(small_text), "--out_dir",
                                 str(out_dir), *TINY_FLAGS, "--max_iters", "200", "--eval_interval", "100"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_checkpoint(out_dir / "last.pt", 0, proc)  # the first evaluation is saved: the loop has begun
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
    assert f"resuming {out_dir / 'last.pt'} at step {saved} of 200" in resumed.stdout
    assert read_metrics(out_dir)[-1]["step"] == 200
