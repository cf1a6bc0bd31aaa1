"""How the model runs for training and evaluation: the device (extras/device.py), the autocast dtype, the loss
scaler, TF32 and torch.compile.

All of it is decided once, by make_precision(), each choice with the reason it was made, and the one Precision
object is then used by training, by the evaluations during training, by evaluate.py and by bench.py. So the
val loss a run logs and the number evaluate.py prints are computed the same way, on every device.

    CPU           float32, no compile (measured: no faster here); --dtype bfloat16 or float16 and --compile on
                  run the GPU code paths on a CPU, which is how the tests check them
    CUDA GPU      TF32 matmuls; the dtype and compile as extras/gpu.py decides (imported only on a GPU)
    Apple MPS     no compile (on MPS it has given NaNs and slowdowns); the dtype as extras/gpu.py decides
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from extras.device import DTYPES, pick_device


def pick_dtype(device: torch.device, requested: str) -> tuple[torch.dtype, str]:
    """Choose the autocast dtype for the device and say why (on a GPU: extras/gpu.py)."""
    if device.type != "cpu":
        from extras.gpu import pick_gpu_dtype  # (only on a CUDA GPU or Apple MPS)
        return pick_gpu_dtype(device, requested)
    if requested in ("auto", "float32"):
        return torch.float32, "full precision on cpu" if requested == "auto" else "requested with --dtype"
    from extras.cpu import autocast_note  # (only a half-precision run on a CPU asks)
    return DTYPES[requested], f"requested with --dtype ({autocast_note(requested)})"


def pick_compile(device: torch.device, requested: str) -> tuple[bool, str]:
    """Decide whether to torch.compile the training step, and say why."""
    if requested == "off":
        return False, "--compile off"
    if requested == "on":
        return True, "requested with --compile on"
    if device.type != "cuda":
        return False, (f"the default on {device.type}: measured no faster on CPU, unreliable on MPS "
                       "(docs/BENCHMARKS.md)")
    from extras.gpu import pick_cuda_compile  # (only on a CUDA GPU)
    return pick_cuda_compile(device)


@dataclass(frozen=True)
class Precision:
    """How the model runs on this device; make one with make_precision()."""

    device: torch.device
    dtype: torch.dtype  # the autocast dtype; float32 means no autocast
    compile: bool
    # float32 matmuls in TF32 on CUDA (Ampere and newer): much faster, ample precision for training
    tf32: bool
    reasons: tuple[str, str, str] = ("", "", "")  # why this device, dtype, compile decision
    compile_backend: object = "inductor"  # what torch.compile uses; tests pass "eager" or a counting function

    @property
    def use_scaler(self) -> bool:
        """float16 alone needs loss scaling: its small exponent range flushes small gradients to zero."""
        return self.dtype == torch.float16

    def autocast(self):
        """A context that runs matmuls in self.dtype (and keeps the rest in float32), or does nothing for
        float32."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def new_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for this device: enabled for float16, a no-op otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.use_scaler)

    def describe(self) -> str:
        """One line: device, dtype and compile, each with its reason."""
        device_why, dtype_why, compile_why = self.reasons
        if self.device.type == "cpu":
            device_why += (f"; {torch.backends.cpu.get_cpu_capability()} CPU, "
                           f"{torch.get_num_threads()} threads")
        return (f"device: {self.device} ({device_why}) | "
                f"dtype: {str(self.dtype).removeprefix('torch.')} ({dtype_why})"
                f"{' + TF32 matmuls' if self.tf32 else ''} | "
                f"compile: {'on' if self.compile else 'off'} ({compile_why})")


def make_precision(device: str = "auto", dtype: str = "auto", compile: str = "off",
                   local_rank: int | None = None) -> Precision:
    """Decide the device (the local_rank-th GPU under torchrun), dtype, TF32 and compile, with reasons, and
    set TF32 for the process's float32 matmuls where it is on."""
    dev, device_why = pick_device(device)
    if dev.type == "cuda" and local_rank is not None:
        dev = torch.device("cuda", local_rank)
    dt, dtype_why = pick_dtype(dev, dtype)
    use_compile, compile_why = pick_compile(dev, compile)
    tf32 = dev.type == "cuda"
    if tf32:
        torch.set_float32_matmul_precision("high")  # every float32 matmul from here on
    return Precision(dev, dt, use_compile, tf32,
                     reasons=(device_why, dtype_why, compile_why))
