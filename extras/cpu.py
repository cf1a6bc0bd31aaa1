"""What this CPU can do: its class as torch sees it, and whether it multiplies bfloat16 in hardware, which
decides the dtypes of generation's weights (extras/engine.py) and of Muon's orthogonalisation
(extras/modern.py), and what bench.py's machine line says.
"""

import os

import torch

# oneDNN, which runs torch's CPU matmuls, can be told to use fewer instructions than the CPU has
# (ONEDNN_MAX_CPU_ISA, formerly DNNL_MAX_CPU_ISA); capped at one of these, it multiplies bfloat16 in
# emulation. ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 makes an AVX-512 machine time like an AVX2 one
# (measured in docs/BENCHMARKS.md), and this rule keeps the choices made here the same as on a real one.
ONEDNN_ISAS_WITHOUT_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                "AVX512_CORE_VNNI"}


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN was capped at by ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), if it was."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.upper() if cap else None


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), and oneDNN is allowed to use
    it; elsewhere bfloat16 is emulated, and slow: a 384x384 matmul 10x to 60x slower than in float32."""
    if onednn_isa_cap() in ONEDNN_ISAS_WITHOUT_BFLOAT16:
        return False
    checks = [getattr(torch.cpu, name, None)  # private helpers: absent from older torch (2.4)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    if checks:
        return any(check() for check in checks)
    try:  # Linux names the instruction sets in /proc/cpuinfo
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_class() -> str:
    """This CPU's class as torch uses it, for bench.py's machine line: its vector
    instructions (torch.backends.cpu.get_cpu_capability(): AVX512, AVX2, ...) and whether bfloat16 is
    native."""
    cap = onednn_isa_cap()
    return (f"{torch.backends.cpu.get_cpu_capability()} CPU, bfloat16 "
            f"{'native' if cpu_has_native_bfloat16() else 'emulated'}"
            + (f", oneDNN capped at {cap}" if cap else ""))


def autocast_note(dtype: str) -> str:
    """What autocast in dtype ("bfloat16" or "float16") means on this CPU, for the start-up line."""
    slow = dtype == "bfloat16" and not cpu_has_native_bfloat16()
    return "autocast on a CPU: runs the GPU code path, seldom faster" + ("; this CPU emulates bfloat16: slow"
                                                                          if slow else "")
