"""The GPU code paths on a real GPU: a few training steps in every dtype the device has (compile off and, on CUDA, on),
resume on the device and across devices with the loss scaler switching on and off, greedy generation equal to the
CPU's, float32 logits under autocast, and fused AdamW on CUDA.

Every test here is marked `gpu` (CUDA) or `mps` (Apple MPS) and skips, with the reason, where that device is missing,
as it is in CI. Run them on a GPU machine with `pytest -m gpu` (`pytest -m mps` on a Mac), or as part of
`bash docs/gpu_check.sh`, which also measures speed there.
"""

import importlib.util
import math

import pytest
import torch

import generate
from conftest import read_metrics, run_train
from model import GPT, GPTConfig
from extras.precision import make_precision
from extras.step import configure_optimizer, has_fused_adamw

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (CI is CPU-only); run "
                                "`pytest -m gpu` or `bash docs/gpu_check.sh` on a GPU machine")
NEEDS_MPS = pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no Apple MPS here; run "
                               "`pytest -m mps` or `bash docs/gpu_check.sh` on an Apple-silicon Mac")


def on_cuda(*values):
    """A parametrize case that needs a CUDA GPU."""
    return pytest.param(*values, marks=[pytest.mark.gpu, NEEDS_CUDA])


def on_mps(*values):
    """A parametrize case that needs Apple MPS."""
    return pytest.param(*values, marks=[pytest.mark.mps, NEEDS_MPS])


# Every run here stays inside the warmup, so a step's learning rate does not depend on --max_iters: a run stopped at
# step 4 and resumed to step 8 follows the same schedule as one that ran to 8. The peak is high enough that a few
# steps lower the loss by far more than bfloat16's rounding moves it.
FAST = ["--learning_rate", "1e-2", "--warmup_iters", "8"]


def train_on(data, out_dir, device: str, dtype: str, *extra: str, compile: str = "off") -> int:
    """Run train.main with the tiny flags on device in dtype (compile off unless asked: it takes seconds to minutes)."""
    return run_train(data, out_dir, *FAST, "--device", device, "--dtype", dtype, "--compile", compile, *extra)


def skip_unless_native(device: str, dtype: str, compile: str = "off") -> None:
    """Skip a case this GPU cannot run for real: bfloat16 where it is only emulated (T4, V100), compile without
    Triton or on a GPU older than Triton supports."""
    if device != "cuda":
        return
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip(f"{torch.cuda.get_device_name()} has no native bfloat16 (only emulated); float16 is its dtype")
    if compile == "on" and importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed, and torch.compile for CUDA needs it")
    if compile == "on" and torch.cuda.get_device_capability()[0] < 7:
        pytest.skip(f"{torch.cuda.get_device_name()} is older than Triton supports (compute capability < 7.0)")


def assert_trained(rows: list[dict], steps: list[int]) -> None:
    """metrics.csv has a row at each of steps, every loss in it is finite, and the val loss went down."""
    assert [r["step"] for r in rows] == steps
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    """Start each test with exact float32 matmuls, and restore the setting after: train.main turns on TF32 for CUDA
    (Precision.apply), a process-wide switch that would otherwise carry into the tests that compare numbers."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------------------------------------------------------
# training and resuming on the device


@pytest.mark.parametrize("device, dtype, compile", [
    on_cuda("cuda", "float32", "off"), on_cuda("cuda", "bfloat16", "off"), on_cuda("cuda", "float16", "off"),
    on_cuda("cuda", "float32", "on"), on_cuda("cuda", "bfloat16", "on"), on_cuda("cuda", "float16", "on"),
    on_mps("mps", "float32", "off"), on_mps("mps", "bfloat16", "off"),  # float16 is refused on MPS: no loss scaler
])
def test_a_few_training_steps_lower_the_loss(small_text, tmp_path, capsys, device, dtype, compile):
    skip_unless_native(device, dtype, compile)
    flags = ["--max_iters", "6", "--eval_interval", "3"]
    assert train_on(small_text, tmp_path, device, dtype, *flags, compile=compile) == 0
    out = capsys.readouterr().out
    assert f"device: {device}" in out and f"dtype: {dtype}" in out
    if compile == "on":  # a failed compile falls back to eager and still trains: make sure it did not
        failure = [line for line in out.splitlines() if "torch.compile failed" in line]
        assert "compiled the model" in out, failure
    assert_trained(read_metrics(tmp_path), [0, 3, 6])


@pytest.mark.parametrize("device", [on_cuda("cuda"), on_mps("mps")])
def test_resume_on_the_device_continues_the_run(small_text, tmp_path, device):
    flags = ["--eval_interval", "4"]
    assert train_on(small_text, tmp_path / "whole", device, "float32", *flags, "--max_iters", "8") == 0
    assert train_on(small_text, tmp_path / "split", device, "float32", *flags, "--max_iters", "4") == 0
    assert train_on(small_text, tmp_path / "split", device, "float32", *flags, "--max_iters", "8", "--resume") == 0
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    assert_trained(split, [0, 4, 8])
    # GPU kernels are not bitwise deterministic (atomic adds in backward), so the two runs agree closely, not exactly.
    for a, b in zip(whole, split):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3)


@pytest.mark.gpu
@NEEDS_CUDA
@pytest.mark.parametrize("first, then", [(("cpu", "float32"), ("cuda", "float16")),
                                         (("cuda", "float16"), ("cpu", "float32"))],
                         ids=["cpu-float32-to-cuda-float16", "cuda-float16-to-cpu-float32"])
def test_resume_across_devices_and_loss_scaling(small_text, tmp_path, first, then):
    assert train_on(small_text, tmp_path, *first, "--max_iters", "4", "--eval_interval", "4") == 0
    saved = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert bool(saved["scaler"]) == (first[1] == "float16")  # a scaler's state only where one ran
    assert train_on(small_text, tmp_path, *then, "--max_iters", "8", "--eval_interval", "4", "--resume") == 0
    last = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert last["step"] == 8
    assert bool(last["scaler"]) == (then[1] == "float16")
    assert_trained(read_metrics(tmp_path), [0, 4, 8])


# ---------------------------------------------------------------------------------------------------------------
# generation, autocast, the optimizer


@pytest.mark.parametrize("device", [on_cuda("cuda"), on_mps("mps")])
def test_greedy_generation_matches_the_cpu(small_text, tmp_path, capsys, device):
    # Trained enough that the most likely next character clearly beats the second: an untrained model's near-ties
    # could flip on float32 rounding differences between devices. Full float32 matmuls, no TF32 (the fixture above).
    assert run_train(small_text, tmp_path, *FAST, "--max_iters", "30", "--eval_interval", "30") == 0
    texts = {}
    for dev in ("cpu", device):
        capsys.readouterr()
        # 100 new characters with a 32-character context: the sliding-window path of generation runs too.
        assert generate.main(["--checkpoint", str(tmp_path / "best.pt"), "--prompt", "To be", "--temperature", "0",
                              "--max_new_tokens", "100", "--device", dev]) == 0
        texts[dev] = capsys.readouterr().out
    assert texts["cpu"].startswith("To be") and len(texts["cpu"]) == len("To be") + 100 + 1
    assert texts[device] == texts["cpu"]


@pytest.mark.parametrize("device, dtype", [on_cuda("cuda", "bfloat16"), on_cuda("cuda", "float16"),
                                           on_mps("mps", "bfloat16")])
def test_logits_are_float32_under_autocast(device, dtype):
    skip_unless_native(device, dtype)
    precision = make_precision(device, dtype)
    torch.manual_seed(0)
    V = 50
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=32)).to(precision.device)
    idx, targets = torch.randint(V, (2, 4, 16), device=precision.device)  # each (B, T)
    with precision.autocast():
        probe = model.transformer.h[0].mlp.c_fc(torch.randn(4, 32, device=precision.device))
        logits, loss = model(idx, targets)
    # Autocast is really on: the blocks' matmuls run in the low dtype. torch turns autocast off with only a warning
    # where it lacks the dtype (on MPS: float16 before torch 2.5, bfloat16 before 2.6 or on macOS 13).
    assert probe.dtype == precision.dtype, f"torch.autocast({device!r}, {dtype}) did not take effect here"
    assert logits.dtype == torch.float32  # but the head runs in float32
    assert loss.item() == pytest.approx(math.log(V), abs=0.2)  # finite, and an untrained model's uniform guess
    loss.backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.gpu
@NEEDS_CUDA
def test_cuda_gets_fused_adamw():
    assert has_fused_adamw("cuda")
    device = torch.device("cuda")
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32)).to(device)
    [optimizer] = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), device)
    assert [group["fused"] for group in optimizer.param_groups] == [True, True]
    idx = torch.randint(50, (4, 16), device=device)
    before = [p.detach().clone() for p in model.parameters()]
    model(idx, idx)[1].backward()
    optimizer.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the fused step really updated the weights
