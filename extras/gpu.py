"""What a GPU run gets, where a CPU run's choices do not apply: the autocast dtype on a CUDA GPU or Apple MPS,
and whether torch.compile can run on a CUDA GPU. extras/precision.py asks, only on a GPU; TF32 it sets itself.

    CUDA GPU      bfloat16 where the GPU has it natively (Ampere and newer), else float16 with a loss scaler
                  (T4, V100); torch.compile where Triton is installed and supports the GPU
    Apple MPS     float32; bfloat16 on request (torch 2.6 or newer); no float16 (it would need a loss scaler)
"""

import importlib.util

import torch

from extras.cli import CLIError
from extras.device import DTYPES


def torch_version() -> tuple[int, int]:
    """The installed torch's (major, minor) version."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def pick_gpu_dtype(device: torch.device, requested: str) -> tuple[torch.dtype, str]:
    """Choose the autocast dtype on a CUDA GPU or Apple MPS and say why; a dtype MPS cannot run is a
    CLIError."""
    if device.type == "mps" and requested == "float16":
        raise CLIError("--dtype float16 needs a loss scaler, which this project does not use on "
                       "Apple MPS; use --dtype bfloat16 or float32 there")
    if device.type == "mps" and requested == "bfloat16" and torch_version() < (2, 6):
        raise CLIError("--dtype bfloat16 on Apple MPS needs torch 2.6 or newer "
                       f"(this is {torch.__version__}; older ones quietly run float32 instead); "
                       "upgrade torch or use --dtype float32")
    if requested != "auto":
        return DTYPES[requested], "requested with --dtype"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):  # emulated bf16 (T4, V100) is slow
            return torch.bfloat16, ("this GPU supports bfloat16: half the memory traffic, "
                                    "no loss scaling needed")
        return torch.float16, "this GPU has no bfloat16, so float16 with loss scaling"
    return torch.float32, f"full precision on {device.type}"


def pick_cuda_compile(device: torch.device) -> tuple[bool, str]:
    """Whether torch.compile can run the training step on this CUDA GPU, and why."""
    if importlib.util.find_spec("triton") is None:
        return False, "Triton is not installed, and compiling for CUDA needs it"
    if torch.cuda.get_device_capability(device)[0] < 7:
        return False, "this GPU is older than Triton supports (compute capability < 7.0)"
    return True, "CUDA GPU with Triton"
