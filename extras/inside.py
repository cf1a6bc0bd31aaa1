"""Looking inside a model: the attention weights forward() never writes out, and the next-token distribution
that sampling draws from. visualize.py draws them; the tests check them against the model's own forward pass.
"""

import math

import torch
import torch.nn.functional as F

from model import GPT, CausalSelfAttention, next_token_candidates


def attention_weights(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The weights attn averages values with, for its input x (B, T, C): (B, nh, T, T); row t sums to 1 over
    keys 0..t. forward() never builds this matrix (the fused kernel does not need it); this is for looking at
    it."""
    T = x.size(1)
    q, k, _ = attn.heads(x)  # (B, nh, T, hs), and (B, nkv, T, hs)
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)  # each key/value head for its group of query heads
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)  # key after query
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every layer's attention weights over idx (B, T): (n_layer, B, nh, T, T). Call model.eval() first."""
    maps = []

    def record(attn: CausalSelfAttention, args: tuple) -> None:  # args: what Block passes, (x, cache)
        maps.append(attention_weights(attn, args[0]))

    hooks = [block.attn.register_forward_pre_hook(record) for block in model.transformer.h]
    try:
        model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(maps)


def next_token_probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The distribution sampling draws from, over the whole vocabulary: (B, V), zero outside the
    candidates."""
    probs, ids = next_token_candidates(logits, temperature, top_k)
    return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, ids, probs)
