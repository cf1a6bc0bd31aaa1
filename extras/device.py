"""Which device runs the model: a CUDA GPU, Apple MPS or the CPU, and the dtypes it can run in. What this CPU
can do (its class, whether bfloat16 is native) is extras/cpu.py's.
"""

import torch

from extras.cli import CLIError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str) -> tuple[torch.device, str]:
    """Resolve --device to a torch.device and say why; a requested device that is missing is a CLIError."""
    has_cuda = torch.cuda.is_available()
    has_mps = torch.backends.mps.is_available()
    if requested == "auto":
        if has_cuda:
            return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
        if has_mps:
            return torch.device("mps"), "Apple MPS found"
        return torch.device("cpu"), "no CUDA GPU or Apple MPS found"
    if requested == "cuda" and not has_cuda:
        raise CLIError("--device cuda was requested but this PyTorch sees no CUDA GPU; "
                       "use --device auto or cpu")
    if requested == "mps" and not has_mps:
        raise CLIError("--device mps was requested but Apple MPS is not available here; "
                       "use --device auto or cpu")
    return torch.device(requested), "requested with --device"
