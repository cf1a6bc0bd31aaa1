"""Fast generation: a KV cache, two ways to move the window once the text outgrows the context, batched
samples.

model.py's GPT.generate() recomputes the whole window for every new token. Here each step computes only the
newest position: the keys and values of earlier positions never change, so a KVCache keeps them. The tokens
are the same (tests/test_model.py checks it); generate.py and bench.py use this.

    generate_tokens(model, idx, n, ...)   yields n sampled ids, each (B, 1), continuing idx (B, T)
    generate(model, idx, n, ...)          returns idx extended by n ids
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from extras.cli import CLIError
from extras.cpu import cpu_has_native_bfloat16
from extras.device import DTYPES
from model import GPT, GPTConfig, sample_next_token

# How generation moves its window once the text is longer than the context (see generate_tokens).
WINDOWS = ("shift", "slide")


class KVCache:
    """One attention layer's keys and values for the positions seen so far: what generation reuses instead of
    recomputing. model.py's attention uses it while it is set as the layer's `cache` (see kv_caches).

    Allocated once for `length` positions, then filled in place: no tensor grows while generating. Only the
    n_kv_head key/value heads are kept (grouped-query attention shrinks it by n_head / n_kv_head).
    """

    def __init__(self, config: GPTConfig, batch_size: int, length: int, device=None, dtype=torch.float32):
        shape = (batch_size, config.kv_heads, length, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (B, nkv, length, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled so far

    @property
    def capacity(self) -> int:
        """The most positions the cache can hold."""
        return self.k.size(2)

    def update(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store the new keys and values (B, nkv, T, hs) after the earlier ones. Returns q, and every key and
        value so far, all in the cache's dtype (float32 even under bfloat16 weights)."""
        T = k.size(2)
        # Attention's causal mask is right only when queries and keys are the same positions; with a cache
        # that holds earlier positions, the one new query may look at every key.
        if T > 1 and self.length:
            raise ValueError("with a cache, fill it all at once, then add one position at a time")
        end = self.length + T
        if end > self.capacity:
            raise ValueError(f"sequence of length {end} is longer than the cache's {self.capacity} positions")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return q.to(self.k.dtype), self.k[:, :, :end], self.v[:, :, :end]  # views, no copy

    def reset(self) -> None:
        """Forget every position (the memory stays allocated)."""
        self.length = 0


@contextmanager
def kv_caches(model: GPT, batch_size: int = 1, length: int | None = None, dtype: torch.dtype = torch.float32
              ) -> Iterator[list[KVCache]]:
    """Give every attention layer of model an empty KV cache for batch_size sequences of up to `length`
    positions (default block_size), on the model's device; take them away again on leaving.

    float32 even for bfloat16 weights: attention of one query over the cached positions was several times
    faster in float32 than in bfloat16 on a 2-core CPU (docs/BENCHMARKS.md), and the cache is small next to
    the weights.
    """
    device = model.transformer.wte.weight.device
    layers = [block.attn for block in model.transformer.h]
    caches = [KVCache(model.config, batch_size, length or model.config.block_size, device, dtype)
              for _ in layers]
    for attn, cache in zip(layers, caches):
        attn.cache = cache
    try:
        yield caches
    finally:
        for attn in layers:
            attn.cache = None


def kv_cache_bytes(config: GPTConfig, batch_size: int, length: int,
                   dtype: torch.dtype = torch.float32) -> int:
    """Bytes a KV cache of `length` positions takes: keys and values, n_kv_head heads, every layer."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return (2 * config.n_layer * batch_size * config.kv_heads * length * (config.n_embd // config.n_head)
            * itemsize)


@torch.inference_mode()
def generate_tokens(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    block_size: int | None = None,
    use_cache: bool = True,
    window: str = "shift",
) -> Iterator[torch.Tensor]:
    """Yield max_new_tokens sampled ids, each (B, 1), continuing the context idx (B, T). Call model.eval()
    first.

    The model has learned only block_size positions (block_size, if given, shortens that), so once the text is
    longer it sees a window of the latest tokens. window says how that window moves:
      slide: every step, exactly the last block_size tokens (as GPT.generate). Every position moves along by
      one, so
             every key changes: each step recomputes the whole window (with use_cache, too; the cache cannot
             help).
      shift: when the window is full, keep its last half and go on from there: one pass over that half refills
             the cache, then one new position per step again until the window is full once more.
    With use_cache, keys and values of past positions are kept and each step computes only the newest
    position; without, every step recomputes the whole window. Both give the same tokens.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    if max_new_tokens <= 0:
        return
    context = min(block_size or model.config.block_size, model.config.block_size)
    text = idx[:, -context:]  # (B, <= context): the running text the model sees, never longer than its window
    with kv_caches(model, idx.size(0), context) if use_cache else nullcontext() as caches:
        logits = model(text)[0][:, -1]  # (B, V): the prompt in one pass
        for i in range(max_new_tokens):
            idx_next = sample_next_token(logits, temperature, top_k, generator)  # (B, 1)
            yield idx_next
            if i == max_new_tokens - 1:
                break  # nothing more to predict
            text = torch.cat((text, idx_next), dim=1)
            if text.size(1) > context:  # the window is full: move it
                text = text[:, -context:] if window == "slide" else text[:, -max(1, context // 2):]
                for cache in caches or []:
                    cache.reset()
            if not caches or caches[0].length == 0:
                logits = model(text)[0][:, -1]  # the whole window in one pass
            else:  # only the newest token; the rest is in the caches
                logits = model(idx_next, start=caches[0].length)[0][:, -1]

def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
    """Return idx (B, T) extended by max_new_tokens sampled ids: (B, T + max_new_tokens).

    sampling: the keyword arguments of generate_tokens (temperature, top_k, generator, block_size, use_cache,
    window). The tokens come from inference mode; the cat here, outside it, makes an ordinary tensor of them.
    """
    return torch.cat([idx, *generate_tokens(model, idx, max_new_tokens, **sampling)], dim=1)


# On a CPU with bfloat16 in hardware, bfloat16 weights pay only once the float32 weights no longer sit in the
# caches: on the 2-core AVX-512 BF16 machine (docs/BENCHMARKS.md, bench.py's generation table) small (3.2M
# parameters) and medium (10.8M) generated 1.1x to 1.9x faster in bfloat16, but tiny (0.44M) 0.7x to 0.8x: its
# weights are read from cache either way and bfloat16's kernels cost more per call. Where bfloat16 is emulated
# (AVX2) the threshold never applies: float32 at every size.
CPU_BFLOAT16_MIN_PARAMS = 1_000_000


def pick_weights_dtype(device: torch.device, requested: str, n_params: int) -> tuple[torch.dtype, str]:
    """Choose the dtype the weights of a model of n_params parameters are cast to for generation, and say why.

    Generating one token at a time reads every weight once per token and does little arithmetic with it, so
    its speed is set by memory traffic: half-width weights halve it. The logits and the KV cache stay float32
    (model.py).
    """
    if requested != "auto":
        if requested not in DTYPES:
            raise CLIError(f"--dtype {requested} is not one of {', '.join(DTYPES)}")
        return DTYPES[requested], "requested with --dtype"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16, "this GPU supports bfloat16: half the memory traffic of float32"
        return torch.float16, "this GPU has no bfloat16; float16 halves the memory traffic"
    if device.type != "cpu":
        return torch.float32, f"full precision on {device.type} (half-width weights unmeasured there)"
    if not cpu_has_native_bfloat16():
        return torch.float32, "this CPU has no bfloat16 in hardware"
    if n_params < CPU_BFLOAT16_MIN_PARAMS:
        return torch.float32, (f"a model under {CPU_BFLOAT16_MIN_PARAMS / 1e6:g}M parameters reads its "
                               "weights from the CPU's caches anyway; bfloat16 measured slower there")
    return torch.bfloat16, ("this CPU has bfloat16 in hardware: half the memory read per token "
                            "(docs/BENCHMARKS.md)")
