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
    # The 2026 pieces, one field each. The defaults are GPT-2's, so a checkpoint saved before these fields existed
    # loads as the model it was.
    position: str = field(default="learned", metadata={"help": "learned: a trained table of absolute positions (GPT-2); rope: rotate queries and keys by position (RoPE), no table", "choices": ["learned", "rope"]})
    norm: str = field(default="layernorm", metadata={"help": "layernorm (GPT-2) or rmsnorm: scale only, no centring and no bias", "choices": ["layernorm", "rmsnorm"]})
    mlp: str = field(default="gelu", metadata={"help": "gelu: 4x wide, GELU (GPT-2); swiglu: gated, 8/3x wide so the parameters stay about the same; relu2: 4x wide, ReLU squared", "choices": ["gelu", "swiglu", "relu2"]})
    qk_norm: bool = field(default=False, metadata={"help": "RMS-normalise each head's queries and keys before attention"})
    n_kv_head: int | None = field(default=None, metadata={"help": "key/value heads, shared by groups of query heads (grouped-query attention); must divide n_head; 1 is multi-query", "default_help": "n_head: ordinary multi-head attention"})
    tie_weights: bool = field(default=True, metadata={"help": "the output head reuses the token embedding matrix (GPT-2); --no-tie_weights gives the head its own"})

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
        """The architecture in a few words, e.g. "rope, rmsnorm, swiglu, qk-norm, 2 kv heads, untied head"."""
        words = [self.position, self.norm, self.mlp] + (["qk-norm"] if self.qk_norm else [])
        if self.kv_heads != self.n_head:
            words.append(f"{self.kv_heads} kv head{'s' if self.kv_heads > 1 else ''}")
        words.append("tied head" if self.tie_weights else "untied head")
        return ", ".join(words)

    @property
    def swiglu_hidden(self) -> int:
        """SwiGLU's hidden width: three matrices of C x h match the GELU MLP's two of C x 4C when h = 8C/3, rounded
        to the nearest multiple of 8."""
        return int(8 * self.n_embd / 3 / 8 + 0.5) * 8


# The sizes of the workshop this repo follows. Every preset sees 256 characters of context.
PRESETS = {
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=128, dropout=0.0),
    "small": GPTConfig(n_layer=4, n_head=4, n_embd=256, dropout=0.1),
    "medium": GPTConfig(n_layer=6, n_head=6, n_embd=384, dropout=0.2),
}


def make_norm(config: GPTConfig, width: int) -> nn.Module:
    """LayerNorm (subtract the mean, divide by the standard deviation, then a gain and a bias) or RMSNorm (divide by
    the root mean square, then a gain): one statistic fewer, and the same results in modern LLMs."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(width, eps=1e-5)
    return nn.LayerNorm(width, bias=config.bias)


def rotary_tables(head_size: int, positions: torch.Tensor, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, head_size), of the angle RoPE turns each channel by at each position.

    Channels i and i + head_size/2 form pair i, which turns by position * base^(-2i / head_size): fast for the first
    pairs, slower for the later ones. Both channels of a pair get the pair's angle, so the tables are as wide as a head
    and apply_rotary needs no slicing of them.
    """
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs): pair i's angle at channels i and i + hs/2
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (channel i, channel i + hs/2) of x (B, nh, T, hs) by the angles in cos/sin (T, hs).

    A query at position m and a key at position n, both rotated, have a dot product that depends only on m - n: the
    model sees relative positions, and needs no position table.
    """
    dtype, x = x.dtype, x.float()
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    # (x1, x2) turned by angle a is (x1 cos a - x2 sin a, x2 cos a + x1 sin a): all of x times cos, plus the halves
    # swapped (the first negated) times sin. Five whole-width operations; the same numbers as pair-by-pair formulas.
    rotated = x * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rotated.to(dtype)


class KVCache:
    """Keys and values of the positions seen so far, for every block: what generation reuses instead of recomputing.

    Allocated once for `length` positions, then filled in place: no tensor grows while generating. Only the
    n_kv_head key/value heads are kept (grouped-query attention shrinks it by n_head / n_kv_head).
    """

    def __init__(self, config: GPTConfig, batch_size: int, length: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, batch_size, config.kv_heads, length, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (n_layer, B, nkv, length, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled so far; GPT.forward advances it once every block has added its keys

    @property
    def capacity(self) -> int:
        """The most positions the cache can hold."""
        return self.k.size(3)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys and values (B, nkv, T, hs) after the earlier ones; return all of them so far."""
        end = self.length + k.size(2)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nkv, end, hs) views, no copy

    def reset(self) -> None:
        """Forget every position (the memory stays allocated)."""
        self.length = 0


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only looks at positions <= t.

    With n_kv_head < n_head, groups of query heads share one key/value head (grouped-query attention): fewer
    keys and values to compute and, above all, to keep in the KV cache while generating.
    """

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        config.check()
        self.layer = layer  # which block this is: where its keys and values go in a KVCache
        self.n_head, self.n_kv_head = config.n_head, config.kv_heads
        self.head_size = config.n_embd // config.n_head
        self.dropout = config.dropout
        self.rope = config.position == "rope"
        # One matmul makes queries (n_head heads) and keys and values (n_kv_head heads each) at once.
        self.kv_width = self.n_kv_head * self.head_size
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_width, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        # QK-norm: each head's queries and keys get unit RMS (times a learned gain), so attention logits cannot grow
        # without bound however large the weights become; that lets training use a higher learning rate.
        self.q_norm = nn.RMSNorm(self.head_size, eps=1e-5) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_size, eps=1e-5) if config.qk_norm else None

    def heads(self, x: torch.Tensor, rotary: tuple | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, nh, T, hs), keys and values (B, nkv, T, hs) of x (B, T, C), normalised and rotated as configured."""
        B, T, C = x.shape
        hs, nh, nkv = self.head_size, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split([C, self.kv_width, self.kv_width], dim=2)  # (B, T, C), (B, T, nkv*hs) x 2
        # Split into heads of size hs and move heads next to the batch dimension.
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        return q, k, v

    def share_kv_heads(self, t: torch.Tensor) -> torch.Tensor:
        """Repeat each key/value head (B, nkv, T, hs) for the nh / nkv query heads it serves, in a row: (B, nh, T, hs)."""
        return t if self.n_kv_head == self.n_head else t.repeat_interleave(self.n_head // self.n_kv_head, dim=1)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, rotary: tuple | None = None) -> torch.Tensor:
        """Attend over x (B, T, C). With a cache, x holds only the positions after those already cached, whose keys and
        values are reused. rotary: the (cos, sin) tables of x's positions, for RoPE."""
        B, T, C = x.shape
        q, k, v = self.heads(x, rotary)
        if cache is not None:
            # Keys and values of earlier positions never change, so they are kept, not recomputed. With RoPE they are
            # kept already rotated by their own positions. The cache may hold another dtype than the weights (float32
            # for bfloat16 weights: see new_cache), and then attention runs in the cache's dtype.
            k, v = cache.update(self.layer, k, v)  # (B, nkv, T_past + T, hs)
            q = q.to(k.dtype)
        # The causal mask below is only right when queries and keys are the same positions; with a cache we add
        # one position at a time after the first pass, and that newest query may look at every key.
        assert T == 1 or T == k.size(2), "with a cache, fill it all at once, then add one position at a time"
        # softmax(q k^T / sqrt(hs)) v with the future masked out; PyTorch picks the fastest kernel for the device.
        y = F.scaled_dot_product_attention(
            q, self.share_kv_heads(k), self.share_kv_heads(v), dropout_p=self.dropout if self.training else 0.0,
            is_causal=T > 1,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C).to(x.dtype)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def attention_weights(self, x: torch.Tensor, rotary: tuple | None = None) -> torch.Tensor:
        """The weights forward() averages values with, written out: (B, nh, T, T), row t sums to 1 over keys 0..t.

        forward() never builds this matrix (the fused kernel does not need it); this is for looking at it.
        """
        T = x.size(1)
        q, k, _ = self.heads(x, rotary)
        scores = q.float() @ self.share_kv_heads(k).float().transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)  # key after query
        return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


class MLP(nn.Module):
    """The feed-forward half of a block: widen, a non-linearity, project back.

    gelu: 4C wide, GELU (GPT-2). relu2: 4C wide, ReLU then squared. swiglu: two projections to h = 8C/3, one
    through SiLU gating the other (SiLU(a) * b); three matrices of C x h hold about as many weights as two of C x 4C.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        hidden = config.swiglu_hidden if self.kind == "swiglu" else 4 * config.n_embd
        fc_out = 2 * hidden if self.kind == "swiglu" else hidden  # SwiGLU's gate and value in one matmul
        self.c_fc = nn.Linear(config.n_embd, fc_out, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, hidden), or (B, T, 2 * hidden) for swiglu
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.kind == "relu2":
            h = F.relu(h)
            h = h * h  # ReLU squared, as one multiply
        else:
            h = F.gelu(h)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """One transformer block: attention then MLP, each on a normalised copy added back to the residual stream."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, rotary: tuple | None = None) -> torch.Tensor:
        # Pre-norm: the residual stream x itself is never normalised, which keeps deep stacks easy to train.
        x = x + self.attn(self.ln_1(x), cache, rotary)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Token + position embeddings, a stack of blocks, a final norm and a head tied to the token embedding.

    The GPTConfig fields position, norm, mlp, qk_norm, n_kv_head and tie_weights swap in the 2026 pieces one by one.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        config.check()
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))  # token embedding
        if config.position == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        modules.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
            ln_f=make_norm(config, config.n_embd),
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

    def kv_cache_bytes(self, batch_size: int, length: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes a KV cache of `length` positions takes: keys and values, n_kv_head heads, every layer."""
        c = self.config
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * c.n_layer * batch_size * c.kv_heads * length * (c.n_embd // c.n_head) * itemsize

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """Map token ids (B, T) to next-token logits (B, T, V), and the mean cross-entropy if targets are given.

        cache (from new_cache()) makes idx the continuation of what the cache already holds: used by generation.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0  # positions already in the cache
        if past + T > self.config.block_size or (cache is not None and past + T > cache.capacity):
            raise ValueError(f"sequence of length {past + T} is longer than the model's block_size {self.config.block_size}"
                             + (f" or the cache's {cache.capacity} positions" if cache is not None else ""))
        pos = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C)
        rotary = None
        if self.config.position == "rope":
            rotary = rotary_tables(self.config.n_embd // self.config.n_head, pos)  # positions enter in attention
        else:
            x = x + self.transformer.wpe(pos)  # (B, T, C) + (T, C) broadcasts to (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, cache, rotary)
        if cache is not None:
            cache.length += T  # every block has stored its keys and values for these positions
        x = self.transformer.ln_f(x)
        # The head runs in float32 even under autocast or with bfloat16 weights: the softmax over the vocabulary is
        # where bfloat16's 8 bits of mantissa would blur the loss, and it is one small matmul. So logits are float32.
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.float(), self.lm_head.weight.float())  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    def new_cache(self, batch_size: int = 1, length: int | None = None, dtype: torch.dtype = torch.float32) -> KVCache:
        """An empty KV cache for batch_size sequences of up to `length` positions (default block_size), on the model's
        device; forward(..., cache=...) fills it.

        float32 even for bfloat16 weights: attention of one query over the cached positions was several times faster in
        float32 than in bfloat16 on a 2-core CPU (docs/BENCHMARKS.md), and the cache is small next to the weights.
        """
        return KVCache(self.config, batch_size, length or self.config.block_size, self.transformer.wte.weight.device, dtype)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Every layer's attention weights over idx (B, T): (n_layer, B, nh, T, T). Call model.eval() first."""
        maps = []

        def record(attn: CausalSelfAttention, args: tuple) -> None:  # args: what Block passes, (x, cache, rotary)
            maps.append(attn.attention_weights(args[0], args[2]))

        hooks = [block.attn.register_forward_pre_hook(record) for block in self.transformer.h]
        try:
            self(idx)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(maps)

    @torch.inference_mode()
    def generate_tokens(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        block_size: int | None = None,
        use_cache: bool = True,
        window: str = "shift",
    ) -> Iterator[torch.Tensor]:
        """Yield max_new_tokens sampled ids, each (B, 1), continuing the context idx (B, T). Call model.eval() first.

        The model has learned only block_size positions (block_size, if given, shortens that), so once the text is
        longer it sees a window of the latest tokens. window says how that window moves:
          slide: every step, exactly the last block_size tokens. Every position moves along by one, so every key
                 changes: each step recomputes the whole window (with use_cache, too; the cache cannot help).
          shift: when the window is full, keep its last half and go on from there: one pass over that half refills
                 the cache, then one new position per step again until the window is full once more.
        With use_cache, keys and values of past positions are kept and each step computes only the newest position;
        without, every step recomputes the whole window. Both give the same tokens.
        """
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        if max_new_tokens <= 0:
            return
        context = min(block_size or self.config.block_size, self.config.block_size)
        text = idx[:, -context:]  # (B, <= context): the running text the model sees, never longer than its window
        cache = self.new_cache(idx.size(0), context) if use_cache else None
        logits = self(text, cache=cache)[0][:, -1]  # (B, V): the prompt in one pass
        for i in range(max_new_tokens):
            idx_next = sample_next_token(logits, temperature, top_k, generator)  # (B, 1)
            yield idx_next
            if i == max_new_tokens - 1:
                break  # nothing more to predict
            text = torch.cat((text, idx_next), dim=1)
            if text.size(1) > context:  # the window is full: move it
                text = text[:, -context:] if window == "slide" else text[:, -max(1, context // 2):]
                if cache is not None:
                    cache.reset()
            if cache is None or cache.length == 0:
                logits = self(text, cache=cache)[0][:, -1]  # the whole window in one pass
            else:
                logits = self(idx_next, cache=cache)[0][:, -1]  # only the newest token; the rest is in the cache

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
        """Return idx (B, T) extended by max_new_tokens sampled ids: (B, T + max_new_tokens).

        sampling: the keyword arguments of generate_tokens (temperature, top_k, generator, block_size, use_cache,
        window). The tokens come from inference mode; the cat here, outside it, makes an ordinary tensor of them.
        """
        return torch.cat([idx, *self.generate_tokens(idx, max_new_tokens, **sampling)], dim=1)


# How generation moves its window once the text is longer than the context (see GPT.generate_tokens).
WINDOWS = ("shift", "slide")


def next_token_candidates(logits: torch.Tensor, temperature: float, top_k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens sampling may pick after logits (B, V), and their probabilities: (probs, ids), each (B, k).

    Temperature divides the logits before the softmax (below 1 sharpens, above 1 flattens); top_k keeps the k most
    likely tokens (k clamped to V; exactly k, ties broken by torch.topk), sorted from the most likely. Only those k
    enter the softmax. Temperature 0 is greedy: the single most likely token, probability 1.
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


def next_token_probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The distribution sampling draws from, over the whole vocabulary: (B, V), zero outside the candidates."""
    probs, ids = next_token_candidates(logits, temperature, top_k)
    return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, ids, probs)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row of logits (B, V); returns ids (B, 1) on the logits' device.

    temperature 0 means greedy (argmax). top_k keeps only the k most likely tokens (k is clamped to V).
    The draw is one uniform number per row from a CPU generator, looked up in the cumulative probabilities of the
    candidates (on the CPU: k is small, the result is the same on every device, and it sidesteps torch.multinomial
    bugs on some backends: MPS has returned impossible ids).
    """
    probs, ids = next_token_candidates(logits, temperature, top_k)
    if temperature == 0:
        return ids[:, :1]
    cumulative = probs.cpu().cumsum(dim=-1)  # (B, k), ends at 1 (up to rounding)
    u = torch.rand((probs.size(0), 1), generator=generator)  # (B, 1) in [0, 1)
    choice = (cumulative <= u).sum(dim=-1, keepdim=True).clamp_(max=probs.size(-1) - 1)  # (B, 1): first entry above u
    return ids.gather(-1, choice.to(ids.device))
