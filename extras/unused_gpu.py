"""Why torch runs on the CPU of a machine that has a GPU, and the command that fixes it: the start-up line's
note (extras/run.py imports this only where nvidia-smi is on the PATH or on a Mac).

Two cases. PyPI's torch for Windows (the one uv.lock holds) is built without CUDA, so `uv sync` on a laptop
with an NVIDIA GPU gives a torch that cannot use it; a CUDA build can also fail to start an older driver.
And an Apple Silicon Mac running an x86_64 Python (an Intel Homebrew, say) runs it under Rosetta, where torch
has no MPS and no wheels after 2.2.
"""

import platform
import shutil
import subprocess

import torch


def unused_gpu() -> str | None:
    """Why this torch cannot use the GPU this machine has, and the fix; None where there is no such GPU."""
    system = platform.system()
    if system in ("Windows", "Linux") and shutil.which("nvidia-smi"):
        built = (f"for CUDA {torch.version.cuda} but cannot start it (a driver older than that?)"
                 if torch.version.cuda else "without CUDA")
        return (f"this machine has an NVIDIA GPU (nvidia-smi), but torch {torch.__version__} was built "
                f"{built}, so it runs on the CPU. For the GPU: uv pip install --reinstall "
                f"torch=={torch.__version__.split('+')[0]} --torch-backend=auto, then run with "
                "uv run --no-sync (README: Install)")
    if system == "Darwin" and platform.machine() == "x86_64":
        try:  # 1 on Apple Silicon, even when asked from under Rosetta; absent on an Intel Mac
            arm64 = subprocess.run(["sysctl", "-n", "hw.optional.arm64"], capture_output=True, text=True)
        except OSError:
            return None
        if arm64.stdout.strip() == "1":
            return ("this Mac has Apple Silicon, but this Python is an x86_64 one running under Rosetta, "
                    "where torch cannot use the GPU (MPS): install an arm64 Python (python.org's installer) "
                    "and make the environment again with it (README: Install)")
    return None
