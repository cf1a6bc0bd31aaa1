"""A GPT language model in plain PyTorch: GPT-2, as the workshop teaches it.

Read top to bottom: the config and the presets, the three pieces of a transformer block (attention, MLP, the
block itself), the whole model, and sampling. Pure torch: no files, no printing, no command line. Tensor
shapes use B = batch size, T = sequence length (time), C = embedding width (n_embd), V = vocabulary size, nh =
heads, hs = head size (C / nh).

The 2026 pieces (RoPE, RMSNorm, SwiGLU / ReLU², QK-norm, grouped-query attention) are GPTConfig fields whose
defaults are GPT-2's; make_norm, make_attention and make_mlp below plug them in from extras/modern.py.
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """The architecture of a GPT: everything needed to rebuild the same network, and nothing else."""

    vocab_size: int = 65  # distinct tokens (train.py sets it from the data)
    block_size: int = 256  # context length: the most tokens the model sees at once
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block; must divide n_embd
    n_embd: int = 384  # embedding width C
    dropout: float = 0.0  # probability of zeroing an activation while training
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    # The 2026 pieces: extras/modern.py plugs them in (make_norm, make_attention, make_mlp below).
    # The defaults are GPT-2's, so a checkpoint saved before these fields existed loads as the model it was.
    position: str = "learned"  # learned: a trained table of positions; rope: rotate queries and keys
    norm: str = "layernorm"  # layernorm, or rmsnorm: scale only, no centring, no bias
    mlp: str = "gelu"  # gelu (4C wide), swiglu (gated, 8C/3 wide) or relu2 (ReLU squared, 4C wide)
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before attending
    n_kv_head: int | None = None  # key/value heads shared by groups of query heads; None: n_head
    tie_weights: bool = True  # the output head reuses the token embedding matrix

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is not set."""
        return self.n_kv_head or self.n_head

    def check(self) -> None:
        """Raise ValueError, naming the fields, for shapes this model cannot have."""
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})")
        if self.position == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"position rope needs an even head size, but n_embd / n_head = "
                             f"{self.n_embd} / {self.n_head} = {self.n_embd // self.n_head}")

    def pieces(self) -> str:
        """The architecture in a few words, e.g. "learned, layernorm, gelu, tied head" for GPT-2."""
        words = [self.position, self.norm, self.mlp] + (["qk-norm"] if self.qk_norm else [])
        if self.kv_heads != self.n_head:
            words.append(f"{self.kv_heads} kv head{'s' if self.kv_heads > 1 else ''}")
        words.append("tied head" if self.tie_weights else "untied head")
        return ", ".join(words)


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
        config.check()
        self.n_head, self.head_size = config.n_head, config.n_embd // config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        # While generating, extras/engine.py gives each layer a KV cache of its own: the keys and values of
        # the positions seen so far, so that each new token computes only its own.
        self.cache = None

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of x (B, T, C), each split into heads: (B, nh, T, hs)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        # Split C into nh heads of size hs and move the heads next to the batch dimension.
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ / √hs) v with the future masked out: (B, nh, T, hs), by PyTorch's fastest
        kernel."""
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=q.size(2) > 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x)  # (B, nh, T, hs) each
        if self.cache is not None:  # generating: attend to the cached positions too
            q, k, v = self.cache.update(q, k, v)  # k, v: (B, nh, T_past + T, hs)
        y = self.attend(q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C).to(x.dtype)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The feed-forward half of a block: widen to 4C, GELU, project back to C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h))  # (B, T, C)


# GPT-2's pieces, or the 2026 alternative a GPTConfig field asks for (extras/modern.py, imported only then).
def make_norm(config: GPTConfig) -> nn.Module:
    """LayerNorm: subtract the mean, divide by the standard deviation, then a learned gain and bias."""
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd, bias=config.bias)
    from extras import modern
    return modern.make_norm(config)


def make_attention(config: GPTConfig) -> nn.Module:
    if config.position == "learned" and not config.qk_norm and config.kv_heads == config.n_head:
        return CausalSelfAttention(config)
    from extras import modern
    return modern.ModernAttention(config)


def make_mlp(config: GPTConfig) -> nn.Module:
    if config.mlp == "gelu":
        return MLP(config)
    from extras import modern
    return modern.make_mlp(config)


class Block(nn.Module):
    """One transformer block: attention then MLP, each on a normalised copy added back to the residual
    stream."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = make_attention(config)
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pre-norm: the residual stream x itself is never normalised, which keeps deep stacks easy to train.
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Token + position embeddings, a stack of blocks, a final norm and a head tied to the token embedding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        config.check()
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))  # token embedding
        if config.position == "learned":  # RoPE has no table: it turns queries and keys inside attention
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        modules.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
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
        """Count the parameters, a tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor only once

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, start: int = 0):
        """Map token ids (B, T) to next-token logits (B, T, V), and the mean cross-entropy if targets are
        given. start: the position of idx's first token (0, unless generation continues a cached text)."""
        B, T = idx.shape
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of length {start + T} is longer than the model's block_size "
                             f"{self.config.block_size}")
        x = self.transformer.wte(idx)  # (B, T, C)
        if "wpe" in self.transformer:
            positions = torch.arange(start, start + T, device=idx.device)  # (T,)
            x = x + self.transformer.wpe(positions)  # + (T, C) broadcasts over the batch
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        # The head runs in float32 even under autocast (switched off where on; torch 2.4 has none for mps) or
        # with bfloat16 weights: the softmax over the vocabulary is where bfloat16 would blur the loss.
        amp_on = torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if amp_on else nullcontext():
            logits = F.linear(x.float(), self.lm_head.weight.float())  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return idx (B, T) extended by max_new_tokens sampled ids. Call model.eval() first.

        Each step feeds the last block_size tokens through the whole model and samples from the last
        position's logits. extras/engine.py gives the same tokens much faster (it keeps every position's keys
        and values); generate.py uses it.
        """
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])  # (B, T, V)
            idx_next = sample_next_token(logits[:, -1], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# ------------------------------------------------------------------------------------------------------------
# Sampling: from the last position's logits to the next token.


def next_token_candidates(logits: torch.Tensor, temperature: float, top_k: int | None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens sampling may pick after logits (B, V), and their probabilities: (probs, ids), each (B, k).

    Temperature divides the logits before the softmax (below 1 sharpens, above 1 flattens); top_k keeps the k
    most likely tokens (k clamped to V; ties broken by torch.topk), most likely first. Temperature 0 is
    greedy: the single most likely token, probability 1.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    logits = logits.float()
    if temperature == 0:
        top_k = 1
    if top_k is not None and top_k < logits.size(-1):
        logits, ids = torch.topk(logits, top_k, dim=-1)  # (B, k), most likely first
    else:
        ids = torch.arange(logits.size(-1), device=logits.device).expand_as(logits)  # (B, V): every token
    probs = F.softmax(logits / (temperature or 1.0), dim=-1)  # (B, k)
    return probs, ids


def sample_next_token(logits: torch.Tensor, temperature: float, top_k: int | None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one next token per row of logits (B, V); returns ids (B, 1) on the logits' device.

    The draw is one uniform number per row from a CPU generator, looked up in the running sum of the
    candidates' probabilities: the same tokens on every device for one seed, and no torch.multinomial (on MPS
    it has returned impossible ids).
    """
    probs, ids = next_token_candidates(logits, temperature, top_k)
    if temperature == 0:
        return ids[:, :1]
    cumulative = probs.cpu().cumsum(dim=-1)  # (B, k), ends at 1 (up to rounding)
    u = torch.rand((probs.size(0), 1), generator=generator)  # (B, 1) in [0, 1)
    choice = (cumulative <= u).sum(dim=-1, keepdim=True).clamp_(max=probs.size(-1) - 1)  # first entry above u
    return ids.gather(-1, choice.to(ids.device))
