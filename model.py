"""A GPT language model in plain PyTorch, in the GPT-2 lineage.

Read top to bottom: the config, the three pieces of a transformer block (attention, MLP, the block itself), the
whole model, and sampling. Pure torch: no files, no printing, no command line. Tensor shapes use
B = batch size, T = sequence length (time), C = embedding width (n_embd), V = vocabulary size.
"""

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """The architecture of a GPT: everything needed to rebuild the same network, and nothing else."""

    vocab_size: int = field(default=65, metadata={"help": "number of distinct tokens (set from the data)"})
    block_size: int = field(default=256, metadata={"help": "context length: the most tokens the model sees at once"})
    n_layer: int = field(default=6, metadata={"help": "number of transformer blocks"})
    n_head: int = field(default=6, metadata={"help": "attention heads per block; must divide n_embd"})
    n_embd: int = field(default=384, metadata={"help": "embedding width C"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability while training, in [0, 1)"})
    bias: bool = field(default=True, metadata={"help": "biases in Linear and LayerNorm layers, as in GPT-2"})


# The sizes of the workshop this repo follows. Every preset sees 256 characters of context.
PRESETS = {
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=128, dropout=0.0),
    "small": GPTConfig(n_layer=4, n_head=4, n_embd=256, dropout=0.1),
    "medium": GPTConfig(n_layer=6, n_head=6, n_embd=384, dropout=0.2),
}


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only looks at positions <= t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # One matmul makes queries, keys and values for all heads at once.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """Attend over x (B, T, C). With a cache, x holds only new positions and past keys/values are reused."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each (B, T, C)
        # Split C into n_head heads of size hs and move heads next to the batch dimension.
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            # KV cache for generation: keys and values of earlier positions never change, so keep them.
            if "k" in cache:
                k = torch.cat((cache["k"], k), dim=2)  # (B, nh, T_past + T, hs)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        # The causal mask is only right when queries and keys are the same positions; with a cache we add one
        # position at a time, and that newest query may look at every key.
        assert T == 1 or T == k.size(2), "with a cache, fill it all at once, then add one position at a time"
        # softmax(q k^T / sqrt(hs)) v with the future masked out; PyTorch picks the fastest kernel for the device.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=T > 1
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The feed-forward half of a block: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """One transformer block: attention then MLP, each on a normalised copy added back to the residual stream."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        # Pre-norm: the residual stream x itself is never normalised, which keeps deep stacks easy to train.
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Token + position embeddings, a stack of blocks, a final LayerNorm and a head tied to the token embedding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embedding
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: reading a token in and scoring it on the way out use the same (V, C) matrix.
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # GPT-2: each block adds two projections to the residual stream, so scale their init down with depth
        # to keep the stream's variance from growing with n_layer.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Count the parameters, the tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor only once

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: list[dict] | None = None):
        """Map token ids (B, T) to next-token logits (B, T, V), and the mean cross-entropy if targets are given.

        cache (from new_cache()) makes idx the continuation of what the cache already holds: used by generation.
        """
        B, T = idx.shape
        past = cache[0]["k"].size(2) if cache and "k" in cache[0] else 0  # positions already in the cache
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than the model's block_size {self.config.block_size}")
        pos = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C) + (T, C) broadcasts to (B, T, C)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache[i] if cache is not None else None)
        x = self.transformer.ln_f(x)
        # The head runs in float32 even under autocast: the softmax over the vocabulary is where bfloat16's 8 bits of
        # mantissa would blur the loss, and it is one small matmul. So logits are float32 on every device.
        with torch.autocast(x.device.type, enabled=False):
            logits = self.lm_head(x.float())  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    def new_cache(self) -> list[dict]:
        """An empty KV cache: one dict per block, filled by forward(..., cache=...)."""
        return [{} for _ in range(self.config.n_layer)]

    @torch.no_grad()
    def generate_tokens(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        block_size: int | None = None,
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield max_new_tokens sampled ids, each (B, 1), continuing the context idx (B, T). Call model.eval() first.

        block_size, if given, shortens the context the model sees (it cannot exceed config.block_size).
        With use_cache, the prompt is run once and then one new position per step; without, every step recomputes
        the whole context. Both give the same logits.
        """
        context = min(block_size or self.config.block_size, self.config.block_size)
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache or cache is None or idx.size(1) > context:
                # The model has only learned `context` positions, so it sees the most recent `context` tokens. Once
                # the text is longer than that, the window slides and every position shifts: recompute it all.
                cache = self.new_cache() if use_cache else None
                logits, _ = self(idx[:, -context:], cache=cache)
            else:
                logits, _ = self(idx[:, -1:], cache=cache)  # only the newest token; the rest is in the cache
            idx_next = sample_next_token(logits[:, -1, :], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)
            yield idx_next

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
        """Return idx (B, T) extended by max_new_tokens sampled ids: (B, T + max_new_tokens).

        sampling: the keyword arguments of generate_tokens (temperature, top_k, generator, block_size, use_cache).
        """
        return torch.cat([idx, *self.generate_tokens(idx, max_new_tokens, **sampling)], dim=1)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row of logits (B, V); returns ids (B, 1) on the logits' device.

    temperature 0 means greedy (argmax). top_k keeps only the k most likely tokens (k is clamped to V).
    The draw happens on CPU probabilities with a CPU generator: V is small, the result is the same on every device,
    and it sidesteps torch.multinomial bugs on some backends (MPS has returned impossible ids).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if temperature == 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth_best = torch.topk(logits, k, dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    probs = F.softmax(logits, dim=-1).cpu()  # (B, V)
    idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
    return idx_next.to(logits.device)
