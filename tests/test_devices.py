"""The GPU, Mac and multi-GPU code paths, exercised on the CPU: the precision object (bfloat16 autocast, an enabled
loss scaler), resume across devices and scaler states, fused AdamW, torch.compile's warm-up (with a backend that counts
compilations) and DDP, torchrun's process groups and per-step agreement, and evaluation that streams and counts exactly.
The same paths on a real GPU are tests/test_gpu.py's."""

import functools
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from extras import files
from extras import gpu
from extras import unused_gpu
from extras import resume
from extras import cli
from extras import distributed
import evaluate
from extras import evaluation
from extras import precision
from extras import step
import train
from extras import compiling
from extras import run as run_module
from conftest import ROOT, TINY_FLAGS, read_metrics, run_train
from model import GPT, GPTConfig

RUN = ["--max_iters", "6", "--eval_interval", "3"]


# ---------------------------------------------------------------------------------------------------------------
# the precision object


def test_cpu_defaults_to_float32_without_scaler_or_compile():
    p = precision.make_precision("cpu", "auto", "auto")
    assert (p.device.type, p.dtype, p.use_scaler, p.compile, p.tf32) == ("cpu", torch.float32, False, False, False)
    assert not p.new_scaler().is_enabled()
    assert "full precision on cpu" in p.describe() and "compile: off" in p.describe()


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_gets_bfloat16_where_native_else_float16_with_a_scaler(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16)
    dtype, reason = precision.pick_dtype(torch.device("cuda"), "auto")
    assert dtype == expected and reason
    p = precision.Precision(torch.device("cuda"), dtype, compile=False, tf32=True)
    assert p.use_scaler == (expected == torch.float16)


def test_float16_on_mps_is_refused_with_the_alternative():
    with pytest.raises(cli.CLIError, match="bfloat16 or float32"):
        precision.pick_dtype(torch.device("mps"), "float16")
    assert precision.pick_dtype(torch.device("mps"), "auto")[0] == torch.float32


@pytest.mark.skipif(gpu.torch_version() < (2, 6), reason=f"its first check is that this torch accepts bfloat16 "
                    f"on MPS, which needs 2.6 or newer (this is {torch.__version__})")
def test_bfloat16_on_mps_needs_a_torch_whose_mps_autocast_has_it(monkeypatch):
    assert precision.pick_dtype(torch.device("mps"), "bfloat16")[0] == torch.bfloat16  # this torch: 2.6 or newer
    monkeypatch.setattr(torch, "__version__", "2.5.1")  # older: autocast would warn and quietly stay in float32
    with pytest.raises(cli.CLIError, match="torch 2.6 or newer"):
        precision.pick_dtype(torch.device("mps"), "bfloat16")


def test_bfloat16_autocast_on_the_cpu_keeps_logits_in_float32():
    p = precision.make_precision("cpu", "bfloat16")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(11, (2, 8))
    with p.autocast():
        hidden = model.transformer.h[0].mlp.c_fc(torch.randn(2, 8, 16))
        logits, loss = model(x, x)
    assert hidden.dtype == torch.bfloat16  # autocast is really on
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)


def test_the_forward_asks_for_no_autocast_where_none_is_on(monkeypatch):
    # torch 2.4 has no autocast for "mps", and refuses even torch.autocast("mps", enabled=False): a forward
    # without autocast must not build one. Here every torch.autocast fails as 2.4's does for "mps".
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(11, (2, 8))
    expected, _ = model(x)

    def no_autocast_here(device_type, *args, **kwargs):
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")

    monkeypatch.setattr(torch, "autocast", no_autocast_here)
    logits, _ = model(x)
    assert torch.equal(logits, expected)


# ------------------------------------------------------------------------------------------------------------
# a GPU this torch cannot use: the probe faked, the start-up line checked


def fake_machine(monkeypatch, system, machine="x86_64", nvidia_smi=False, sysctl_arm64="", cuda=None):
    """Make extras/unused_gpu.py (and run.py's check for whether to ask it) see another machine: its OS and
    CPU, whether nvidia-smi is on the PATH, what `sysctl -n hw.optional.arm64` prints, and the CUDA this torch
    was built for (None: a CPU-only build)."""
    which = SimpleNamespace(which=lambda name: "/usr/bin/nvidia-smi" if nvidia_smi and name == "nvidia-smi"
                            else None)
    this_os = SimpleNamespace(system=lambda: system, machine=lambda: machine)
    monkeypatch.setattr(unused_gpu, "platform", this_os)
    monkeypatch.setattr(unused_gpu, "shutil", which)
    monkeypatch.setattr(run_module, "shutil", which)
    monkeypatch.setattr(unused_gpu, "subprocess", SimpleNamespace(
        run=lambda *a, **k: SimpleNamespace(returncode=0 if sysctl_arm64 else 1, stdout=sysctl_arm64)))
    monkeypatch.setattr(torch.version, "cuda", cuda)
    build = "cpu" if cuda is None else "cu" + cuda.replace(".", "")
    monkeypatch.setattr(torch, "__version__", f"2.15.0+{build}")
    for module in (torch.cuda, torch.backends.mps):  # wrapped, as torch._dynamo expects of is_available
        monkeypatch.setattr(module, "is_available", functools.wraps(module.is_available)(lambda: False))


def test_an_nvidia_gpu_with_a_cpu_only_torch_is_named_at_start_up_with_the_fix(small_text, tmp_path,
                                                                                  monkeypatch, capsys):
    fake_machine(monkeypatch, "Windows", "AMD64", nvidia_smi=True)  # uv sync on a gaming laptop
    flags = [f for f in TINY_FLAGS if f not in ("--device", "cpu")]  # --device auto
    flags += ["--max_iters", "1", "--eval_interval", "1"]
    assert train.main(["--data", str(small_text), "--out_dir", str(tmp_path), *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("device: cpu (no CUDA GPU or Apple MPS found")
    assert lines[1] == ("note: this machine has an NVIDIA GPU (nvidia-smi), but torch 2.15.0+cpu was built "
                        "without CUDA, so it runs on the CPU. For the GPU: uv pip install --reinstall "
                        "torch==2.15.0 --torch-backend=auto, then run with uv run --no-sync "
                        "(README: Install)")
    # Asked for the CPU, nobody needs telling.
    assert train.main(["--data", str(small_text), "--out_dir", str(tmp_path), *flags, "--device", "cpu",
                       "--overwrite"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_cuda_torch_that_cannot_start_its_gpu_says_so(monkeypatch):
    fake_machine(monkeypatch, "Linux", nvidia_smi=True, cuda="12.8")
    note = unused_gpu.unused_gpu()
    assert "torch 2.15.0+cu128 was built for CUDA 12.8 but cannot start it" in note
    assert "torch==2.15.0 --torch-backend=auto" in note


@pytest.mark.parametrize("system, machine, arm64, says", [
    ("Darwin", "x86_64", "1\n", "Apple Silicon"),  # an x86_64 Python under Rosetta
    ("Darwin", "x86_64", "", None),  # an Intel Mac: no GPU torch could use
    ("Darwin", "arm64", "1\n", None),  # an arm64 Python: MPS is there, or torch says why not
    ("Linux", "x86_64", "", None),  # no nvidia-smi: no GPU to speak of
    ("Windows", "AMD64", "", None),
])
def test_the_probe_speaks_only_where_a_gpu_is_left_unused(monkeypatch, system, machine, arm64, says):
    fake_machine(monkeypatch, system, machine, sysctl_arm64=arm64)
    note = unused_gpu.unused_gpu()
    assert note is None if says is None else (says in note and "install an arm64 Python" in note)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_training_runs_in_reduced_precision_through_the_gpu_code_path(small_text, tmp_path, dtype, capsys):
    assert run_train(small_text, tmp_path, *RUN, "--dtype", dtype, "--learning_rate", "3e-3") == 0
    rows = read_metrics(tmp_path)
    assert all(math.isfinite(r["val_loss"]) for r in rows) and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert f"dtype: {dtype}" in capsys.readouterr().out
    scaler_state = torch.load(tmp_path / "last.pt", weights_only=True)["scaler"]
    assert bool(scaler_state) == (dtype == "float16")  # float16 alone runs an (enabled) loss scaler
    if dtype == "float16":
        assert scaler_state["scale"] > 0


# ---------------------------------------------------------------------------------------------------------------
# resume across devices: the loss scaler and the optimizer's kernel


@pytest.mark.parametrize("first, then", [("float32", "float16"), ("float16", "float32"), ("bfloat16", "float16")])
def test_resume_across_loss_scaler_on_and_off(small_text, tmp_path, first, then, capsys):
    # float32 or bfloat16 (CPU, MPS, an A100) save no scaler state; float16 (a T4) runs one. Either way round: continue.
    assert run_train(small_text, tmp_path, "--max_iters", "4", "--eval_interval", "2", "--dtype", first) == 0
    assert run_train(small_text, tmp_path, "--max_iters", "6", "--eval_interval", "2", "--dtype", then, "--resume") == 0
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["step"] == 6 and [r["step"] for r in read_metrics(tmp_path)] == [0, 2, 4, 6]
    assert bool(saved["scaler"]) == (then == "float16")
    out = capsys.readouterr().out
    assert ("starts a fresh loss scaler" in out) == (then == "float16")


def _optimizer_after_one_step(fused: bool):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    x = torch.randint(11, (2, 8))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("saved_fused", [True, False])
def test_resume_keeps_the_optimizer_kernel_of_the_device_it_runs_on(saved_fused):
    _, saved = _optimizer_after_one_step(fused=saved_fused)
    model, here = _optimizer_after_one_step(fused=not saved_fused)  # e.g. saved with fused on a GPU, resumed without
    resume.restore_optimizer(here, saved.state_dict())
    assert bool(here.param_groups[0]["fused"]) == (not saved_fused)
    assert here.state_dict()["state"][0]["exp_avg"].equal(saved.state_dict()["state"][0]["exp_avg"])
    x = torch.randint(11, (2, 8))
    model(x, x)[1].backward()
    here.step()  # the restored state works with this kernel
    assert here.state_dict()["state"][0]["step"].item() == 2


def test_fused_adamw_wherever_torch_has_it():
    assert step.has_fused_adamw("cpu")  # torch >= 2.4 has a fused CPU kernel, and pyproject asks for that
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    [optimizer] = step.configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"))
    assert all(g["fused"] for g in optimizer.param_groups)
    assert not step.has_fused_adamw("meta")  # a device with no kernel: the multi-tensor default instead


def test_run_controls_are_not_saved_as_the_runs_settings(small_text, tmp_path):
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2", "--compile", "off") == 0
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert not {"resume", "overwrite", "device", "dtype", "compile"} & saved["train_config"].keys()
    assert {f.name for f in train.fields(train.RunState)} <= saved.keys()  # the loop's state, in one place
    # A checkpoint from before the split, whose train_config held them, still resumes.
    saved["train_config"].update(resume=False, overwrite=False, device="cpu", dtype="auto", compile="auto")
    files.save_checkpoint(tmp_path / "last.pt", saved)
    assert run_train(small_text, tmp_path, "--max_iters", "4", "--eval_interval", "2", "--resume") == 0


def test_seed_help_states_what_a_time_budget_does_to_it(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "repeats exactly on a CPU with --max_iters; not with --time_budget (the CPU default)" in text


# ---------------------------------------------------------------------------------------------------------------
# torch.compile: the warm-up compiles everything the run needs


class CountingBackend:
    """A torch.compile backend that runs graphs eagerly and counts how many it was given."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def _count_compiles(monkeypatch) -> tuple[CountingBackend, dict]:
    backend, seen = CountingBackend(), {}
    real_make, real_compile = run_module.make_precision, compiling.compile_for_training
    monkeypatch.setattr(run_module, "make_precision", lambda *a, **k: replace(real_make(*a, **k), compile_backend=backend))

    def spy(step_model, *args):
        seen["wrapped"] = type(step_model)
        compiled = real_compile(step_model, *args)
        seen["after_warm_up"] = backend.graphs
        return compiled

    monkeypatch.setattr(compiling, "compile_for_training", spy)
    return backend, seen


def test_compile_warm_up_uses_the_training_shape_so_no_step_compiles_again(small_text, tmp_path, monkeypatch):
    torch._dynamo.reset()
    backend, seen = _count_compiles(monkeypatch)
    # Batch 64 is more windows than the val split has (63 of 32 tokens): a warm-up on the eval windows would have had
    # another shape than training's and made step 1 compile again.
    assert run_train(small_text, tmp_path, "--compile", "on", "--batch_size", "64", *RUN) == 0
    assert seen["wrapped"] is GPT and seen["after_warm_up"] >= 1
    assert backend.graphs == seen["after_warm_up"]


def test_ddp_is_wrapped_before_compiling_and_no_sync_compiles_nothing_new(small_text, tmp_path, monkeypatch,
                                                                          torchrun_of_one):
    torch._dynamo.reset()
    backend, seen = _count_compiles(monkeypatch)
    assert run_train(small_text, tmp_path, "--compile", "on", "--grad_accum_steps", "2", *RUN) == 0
    assert seen["wrapped"] is DDP  # compile around DDP, so the compiled backward overlaps the all-reduce
    assert seen["after_warm_up"] >= 1 and backend.graphs == seen["after_warm_up"]


def test_one_host_side_agreement_per_step_under_torchrun(small_text, tmp_path, monkeypatch, torchrun_of_one):
    host_reductions = []
    real_all_reduce = dist.all_reduce

    def spy(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        if tensor.device.type == "cpu" and tensor.dtype == torch.float64:
            host_reductions.append(op)
        return real_all_reduce(tensor, op=op, group=group, async_op=async_op)

    monkeypatch.setattr(dist, "all_reduce", spy)
    assert run_train(small_text, tmp_path, *RUN) == 0
    # One at start-up (did rank 0 load the data?), then one per pass of the loop: steps 0..6, the last one to stop.
    # Evaluations add their sums (SUM), two per evaluation (train and val), at steps 0, 3 and 6.
    assert host_reductions.count(dist.ReduceOp.MAX) == 1 + 7
    assert host_reductions.count(dist.ReduceOp.SUM) == 2 * 3


# ---------------------------------------------------------------------------------------------------------------
# torchrun's process groups


def _pretend_torchrun_on_gpus(monkeypatch, nccl: bool) -> dict:
    calls = {}
    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.update(gpu=i))
    monkeypatch.setattr(dist, "is_nccl_available", lambda: nccl)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout=None, **kw: calls.update(main=(backend, timeout)))
    monkeypatch.setattr(dist, "new_group", lambda backend=None, timeout=None, **kw: calls.update(side=(backend, timeout)) or "side")
    return calls


def test_the_gloo_side_group_is_as_patient_as_the_main_group(monkeypatch):
    calls = _pretend_torchrun_on_gpus(monkeypatch, nccl=True)
    ranks = distributed.start_ranks("auto")
    assert calls["main"] == ("nccl", distributed.TIMEOUT) and calls["side"] == ("gloo", distributed.TIMEOUT)
    assert calls["gpu"] == 1 and ranks.cpu_group == "side" and ranks.launched
    assert distributed.TIMEOUT.total_seconds() > 30 * 60  # more than the 30-minute default a group would get


def test_torchrun_refuses_apple_mps_before_joining_a_group(monkeypatch):
    calls = _pretend_torchrun_on_gpus(monkeypatch, nccl=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a Mac: MPS, no CUDA
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for device in ("auto", "mps"):
        with pytest.raises(cli.CLIError, match="torch.distributed cannot use Apple MPS; add --device cpu"):
            distributed.start_ranks(device)
    assert "main" not in calls  # no process group was started
    assert distributed.start_ranks("cpu").world_size == 2 and calls["main"][0] == "gloo"


def test_gloo_where_nccl_is_missing_even_with_cuda(monkeypatch):
    calls = _pretend_torchrun_on_gpus(monkeypatch, nccl=False)  # Windows: CUDA but no nccl
    ranks = distributed.start_ranks("auto")
    assert calls["main"] == ("gloo", distributed.TIMEOUT) and "side" not in calls and ranks.cpu_group is None


# ---------------------------------------------------------------------------------------------------------------
# evaluation: the same numbers in training and evaluate.py, a fixed batch, exact at any size


def test_logged_val_loss_equals_evaluate_py_in_bfloat16_with_accumulation(small_text, tmp_path, monkeypatch, capsys):
    batch_rows = []
    real_evaluate = evaluation.evaluate

    def spy(model, batches, *args):
        def recorded():
            for x, y in batches:
                batch_rows.append(len(x))
                yield x, y
        return real_evaluate(model, recorded(), *args)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    assert run_train(small_text, tmp_path, *RUN, "--dtype", "bfloat16", "--grad_accum_steps", "4", "--block_size", "16") == 0
    # 115 val windows of 16 tokens: forward passes of EVAL_BATCH_SIZE windows (the last of each split shorter), not the micro-batch of 2.
    assert max(batch_rows) == evaluation.EVAL_BATCH_SIZE == 64
    logged = read_metrics(tmp_path)[-1]["val_loss"]
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "last.pt"), "--device", "cpu", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert f"full val loss {logged:.4f}" in out and "bfloat16 on cpu" in out


class Uniform(torch.nn.Module):
    """A "model" that gives every one of 2 tokens the same score: its loss is ln 2 on every target."""

    training = False

    def forward(self, x):
        return torch.zeros(*x.shape, 2), None


@pytest.mark.slow
def test_the_target_count_is_exact_past_float32s_integers():
    n = 2**24 + 101  # float32 counts exactly only up to 2**24: past it, adding 1 does nothing
    ids = np.zeros(n + 1, dtype=np.uint16)
    batches = evaluation.eval_windows(ids, 4096, batch_size=64)
    loss_sum, count = evaluation.loss_and_count(Uniform(), batches, precision.make_precision("cpu"))
    assert count == n  # a float32 count would say 2**24 + 100
    assert loss_sum / count == pytest.approx(math.log(2), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# two CPU ranks, killed with kill -9 and resumed


def _descendants(pid: int) -> list[int]:
    """The processes below pid (torchrun starts its ranks in sessions of their own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's ranks through /proc")
def test_two_ranks_killed_and_resumed_match_an_uninterrupted_run(small_text, tmp_path):
    # A constant learning rate, so the killed run (whose max_iters is far away) and the finished one take the same
    # steps; dropout 0 (tiny), so one process and two ranks draw nothing different.
    flags = [*TINY_FLAGS, "--eval_interval", "4", "--batch_size", "8", "--learning_rate", "3e-3", "--min_lr", "3e-3",
             "--warmup_iters", "0", "--data", str(small_text)]
    out_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
              *flags, "--out_dir", str(out_dir)]
    log = tmp_path / "killed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*launch, "--max_iters", "100000"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and proc.poll() is None:
                try:
                    if torch.load(out_dir / "last.pt", weights_only=True)["step"] >= 4:
                        break
                except (OSError, RuntimeError, EOFError):
                    pass
                time.sleep(0.02)
            assert proc.poll() is None, f"torchrun ended before its step-4 checkpoint: {log.read_text()[-2000:]}"
        finally:
            for pid in [*_descendants(proc.pid), proc.pid]:  # kill -9 the launcher and both ranks at once
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=60)
    saved_step = torch.load(out_dir / "last.pt", weights_only=True)["step"]
    assert saved_step >= 4, f"killed after step {saved_step}"
    # Where the kill lands depends on how busy the machine is; the run to compare with goes to the same end: at least
    # two evaluations past it.
    max_iters = max(16, (saved_step // 4 + 2) * 4)
    assert run_train(small_text, tmp_path / "whole", *flags, "--max_iters", str(max_iters)) == 0
    resumed = subprocess.run([*launch, "--max_iters", str(max_iters), "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out_dir / 'last.pt'} at step {saved_step}" in resumed.stdout

    def losses(d):
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in read_metrics(d)]

    whole, killed = losses(tmp_path / "whole"), losses(out_dir)
    assert [s for s, _, _ in killed] == [s for s, _, _ in whole] == list(range(0, max_iters + 1, 4)), (whole, killed)
    assert all(abs(a - c) <= 1e-4 and abs(b - d) <= 1e-4 for (_, a, b), (_, c, d) in zip(whole, killed)), (whole, killed)


# ---------------------------------------------------------------------------------------------------------------
# the GPU check's command


NESTED_TESTS = {  # test files a nested pytest runs, and whether the GPU check may call that a pass
    "passes": ("def test_a():\n    pass\n", True),
    "fails": ("def test_a():\n    assert False\n", False),
    "cannot be collected": ("import no_such_module\n\ndef test_a():\n    pass\n", False),
    "has no tests": ("x = 1\n", False),
    "skips all": ("import pytest\n\n@pytest.mark.skip(reason='no GPU')\ndef test_a():\n    pass\n", None),
}


@pytest.mark.parametrize("case", NESTED_TESTS)
def test_the_gpu_check_reads_the_nested_pytest_run_by_its_result(tmp_path, case):
    source, verdict = NESTED_TESTS[case]
    (tmp_path / "test_nested.py").write_text(source, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_nested.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    import bench

    passed_on_a_gpu, summary = bench.pytest_verdict(proc.returncode, proc.stdout, must_run=True)
    passed_in_a_smoke_run, _ = bench.pytest_verdict(proc.returncode, proc.stdout, must_run=False)
    # Skipping everything is a pass only in a smoke run on a CPU; on a GPU the gpu tests must run.
    expected = (False, True) if verdict is None else (verdict, verdict)
    assert (passed_on_a_gpu, passed_in_a_smoke_run) == expected
    assert re.search(r" in [\d.]+s", summary), summary  # the summary line, not whatever came last


def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU: the check would run for real")
    proc = subprocess.run(["bash", str(ROOT / "docs" / "gpu_check.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable})  # this interpreter, not python3
    assert proc.returncode == cli.EXIT_FAILED
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "no CUDA GPU or Apple MPS" in proc.stderr


@pytest.mark.slow
def test_gpu_check_smoke_run_makes_the_table(small_text, tmp_path, capsys):
    import bench

    out = tmp_path / "gpu_check.md"
    assert bench.main(["--gpu_check", "--smoke", "--data", str(small_text), "--out", str(out), "--target_loss", "9"]) == 0
    table = out.read_text(encoding="utf-8").splitlines()
    assert table[0].startswith("GPU check on") and "torch" in table[0]
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| check")]
    # Here every gpu test skips (no GPU) and the rest are deselected: a pass in a smoke run, and said so.
    passed_row = r"\| `pytest -m gpu` \| \d+ skipped, \d+ deselected in [\d.]+s.*: passed \|"
    assert re.fullmatch(passed_row, rows[0]), rows[0]
    assert any("compile off" in r and "ms/step" in r for r in rows) and any("compile on" in r for r in rows)
    for recipe in ("gpt2", "modern"):  # the medium run with each recipe
        assert any(f"recipe {recipe}: time to val loss 9" in r and "s of training (step 0)" in r for r in rows)  # 9 > ln(vocab)
        assert any(f"recipe {recipe}: best val loss" in r for r in rows)
    generation = [r for r in rows if "generating 20 tokens" in r]
    assert len(generation) == 1 and "recompute" in generation[0] and "bfloat16 weights" in generation[0]
