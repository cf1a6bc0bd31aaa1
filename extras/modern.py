"""The 2026 pieces: what has changed in GPT-style models since GPT-2, each one flag on top of the workshop's
model.

    --position rope     rotary position embeddings (RoPE): queries and keys turned by their position, no table
    --norm rmsnorm      RMSNorm: divide by the root mean square, then a gain; no mean, no bias
    --mlp swiglu|relu2  a gated SiLU MLP (SwiGLU), or ReLU squared
    --qk_norm           RMS-normalised queries and keys
    --n_kv_head N       grouped-query attention: N key/value heads shared by the query heads
    --no-tie_weights    an output head of its own
    --optimizer muon    Muon for the weight matrices inside the blocks (AdamW for the rest)
    --recipe modern     the bundle measured to pay on this data (RECIPES below)

model.py builds GPT-2's pieces and asks this module (make_norm, make_attention, make_mlp there) only for a
field that is not GPT-2's. The parameter names stay GPT-2's (c_attn, c_fc, c_proj), so every checkpoint loads
the same way. Pure torch, like model.py.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from extras.cpu import cpu_has_native_bfloat16
from model import MLP, CausalSelfAttention, GPTConfig

# The workshop's GPT-2 and the 2026 pieces measured to help on this data (docs/ablate.sh, docs/BENCHMARKS.md):
# what --recipe sets. A flag given on its own overrides the recipe's value, so
# `--recipe modern --optimizer adamw` is the modern model trained with AdamW alone.
RECIPES = {
    "gpt2": {"position": "learned", "norm": "layernorm", "mlp": "gelu", "qk_norm": False, "n_kv_head": None,
             "tie_weights": True, "optimizer": "adamw"},
    "modern": {"position": "rope", "norm": "layernorm", "mlp": "relu2", "qk_norm": False, "n_kv_head": None,
               "tie_weights": True, "optimizer": "muon"},
}

def make_norm(config: GPTConfig) -> nn.Module:
    """RMSNorm: divide by the root mean square, then a gain. One statistic fewer than LayerNorm, the same
    results in modern LLMs."""
    return nn.RMSNorm(config.n_embd, eps=1e-5)


def make_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLUMLP(config) if config.mlp == "swiglu" else ReLU2MLP(config)


# ------------------------------------------------------------------------------------------------------------
# Rotary position embeddings (RoPE)


def rotary_tables(head_size: int, positions: torch.Tensor, base: float = 10000.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, head_size), of the angle RoPE turns each channel by at each position.

    Channels i and i + head_size/2 form pair i, which turns by position * base^(-2i / head_size): fast for the
    first pairs, slower for the later ones. Both channels of a pair get the pair's angle, so the tables are as
    wide as a head and apply_rotary needs no slicing of them.
    """
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device)
                        / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs): pair i's angle at channels i and i + hs/2
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (channel i, channel i + hs/2) of x (B, nh, T, hs) by the angles in cos/sin (T, hs).

    A query at position m and a key at position n, both rotated, have a dot product that depends only on m -
    n: the model sees relative positions, and needs no position table.
    """
    dtype, x = x.dtype, x.float()
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    # (x1, x2) turned by angle a is (x1 cos a - x2 sin a, x2 cos a + x1 sin a): all of x times cos, plus the
    # halves swapped (the first negated) times sin. Five whole-width operations; the same numbers as
    # pair-by-pair formulas.
    rotated = x * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rotated.to(dtype)


# ------------------------------------------------------------------------------------------------------------
# Attention with RoPE, QK-norm and grouped-query attention


class ModernAttention(CausalSelfAttention):
    """GPT-2's attention with any of: RoPE (--position rope), QK-norm (--qk_norm), grouped-query attention
    (--n_kv_head): groups of query heads share one key/value head, so there are fewer keys and values to
    compute and, above all, to keep in the KV cache while generating."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.n_kv_head = config.kv_heads
        self.kv_width = self.n_kv_head * self.head_size
        if self.n_kv_head != self.n_head:  # queries for n_head heads, keys and values for n_kv_head each
            self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_width, bias=config.bias)
        self.rope = config.position == "rope"
        # QK-norm: each head's queries and keys get unit RMS (times a learned gain), so attention logits
        # cannot grow without bound however large the weights become; that lets training use a higher learning
        # rate.
        self.q_norm = nn.RMSNorm(self.head_size, eps=1e-5) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_size, eps=1e-5) if config.qk_norm else None

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, nh, T, hs), keys and values (B, nkv, T, hs) of x (B, T, C), normalised and rotated as
        configured. x's positions follow those already in this layer's KV cache, if it has one."""
        B, T, C = x.shape
        hs, nh, nkv = self.head_size, self.n_head, self.n_kv_head
        # (B, T, C), (B, T, nkv*hs) x 2
        q, k, v = self.c_attn(x).split([C, self.kv_width, self.kv_width], dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:  # keys are rotated by their own positions before they are cached
            past = self.cache.length if self.cache is not None else 0
            cos, sin = rotary_tables(hs, torch.arange(past, past + T, device=x.device))
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return q, k, v

    def share_kv_heads(self, t: torch.Tensor) -> torch.Tensor:
        """Repeat each key/value head (B, nkv, T, hs) for the nh / nkv query heads it serves, in a row."""
        return (t if self.n_kv_head == self.n_head
                else t.repeat_interleave(self.n_head // self.n_kv_head, dim=1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return super().attend(q, self.share_kv_heads(k), self.share_kv_heads(v))


# ------------------------------------------------------------------------------------------------------------
# MLPs


class ReLU2MLP(MLP):
    """GPT-2's MLP with ReLU squared in place of GELU: 4C wide."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h * h))  # ReLU squared, as one multiply


def swiglu_hidden(config: GPTConfig) -> int:
    """SwiGLU's hidden width: three matrices of C x h match the GELU MLP's two of C x 4C when h = 8C/3,
    rounded to the nearest multiple of 8."""
    return int(8 * config.n_embd / 3 / 8 + 0.5) * 8


class SwiGLUMLP(nn.Module):
    """Two projections to h = 8C/3, one through SiLU gating the other (SiLU(a) * b), then back to C: three
    matrices of C x h hold about as many weights as GPT-2's two of C x 4C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = swiglu_hidden(config)
        # the gate and the value in one matmul
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.c_fc(x).chunk(2, dim=-1)  # (B, T, h) each
        return self.dropout(self.c_proj(F.silu(gate) * value))  # (B, T, C)


# ------------------------------------------------------------------------------------------------------------
# Muon: momentum, then the update orthogonalised
#
# AdamW scales each weight's update by that weight's own gradient history. Muon treats a weight matrix as a
# linear map instead: it takes the momentum of the gradient, G = U S V^T, and replaces it by U V^T, the
# orthogonal matrix closest to it. Every direction the matrix maps is then moved by the same amount, so the
# few directions that dominate a gradient no longer drown out the rest. U V^T is found without an SVD, by a
# few matmuls (Newton-Schulz). torch 2.9 and newer have the same as torch.optim.Muon; this one is ours, so
# that it runs on every torch we support and multiplies in the dtype this machine does best (pick_muon_dtype):
# torch's always uses bfloat16, which most CPUs only emulate.

# The quintic's coefficients and step count of torch.optim.Muon (from Keller Jordan's Muon): chosen for a
# steep slope at 0, so that small singular values grow fast. They leave them spread around 1 (0.68 to 1.13 for
# a random 64 x 192 matrix) rather than at exactly 1, which trains as well and takes fewer steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalize(G: torch.Tensor, dtype: torch.dtype = torch.float32, steps: int = NS_STEPS) -> torch.Tensor:
    """About U V^T for G = U S V^T, a 2-D matrix: G's singular vectors with every singular value near 1, by
    `steps` Newton-Schulz iterations computed in dtype (the result is in dtype too)."""
    a, b, c = NS_COEFFICIENTS
    X = G.to(dtype, copy=True)
    tall = G.size(0) > G.size(1)
    if tall:  # work on the wide way round: the Gram matrix X X^T is then the smaller one
        X = X.mT
    # The Frobenius norm is at least the largest singular value, so after this all of them are in [0, 1],
    # where the iteration converges.
    X = X / X.norm().clamp(min=1e-7)
    for _ in range(steps):
        # With X = U S V^T, X X^T = U S^2 U^T, and each step maps every singular value s to
        # a s + b s^3 + c s^5.
        A = X @ X.mT  # (r, r), r the shorter side
        B = torch.addmm(A, A, A, beta=b, alpha=c)  # b A + c A^2
        X = torch.addmm(X, B, X, beta=a)  # a X + B X
    return X.mT if tall else X


def make_muon(model, lr: float, weight_decay: float, device: torch.device, ns_dtype: torch.dtype | None = None
              ) -> tuple["Muon", list[nn.Parameter]]:
    """Muon over the 2-D weight matrices inside the blocks, where orthogonalised updates help, and the
    model's other parameters, for AdamW: embeddings, a separate head, norms and biases stay with AdamW, as
    Muon's authors advise (an embedding row is a lookup, not a linear map). Muon's lr is in AdamW's units; its
    Newton-Schulz iteration runs in ns_dtype (default: what pick_muon_dtype says for the device: bfloat16
    only where it is native)."""
    block_matrices = {id(p) for p in model.transformer.h.parameters() if p.dim() == 2}
    matrices = [p for p in model.parameters() if id(p) in block_matrices]
    rest = [p for p in model.parameters() if id(p) not in block_matrices]  # a tied matrix comes once
    muon = Muon([{"params": matrices, "peak_lr": lr}], lr=lr, weight_decay=weight_decay,
                ns_dtype=ns_dtype or pick_muon_dtype(device)[0])
    return muon, rest


def match_rms_adamw(shape: torch.Size) -> float:
    """The factor that gives an orthogonalised update of a (rows, cols) matrix AdamW's typical update RMS
    (about 0.2): U V^T has RMS 1 / sqrt(max(rows, cols)) (Moonshot's "Muon is Scalable for LLM Training"), so
    Muon's learning rate is in AdamW's units."""
    return 0.2 * max(shape[0], shape[1]) ** 0.5


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices: Nesterov momentum, the update orthogonalised by Newton-Schulz in
    ns_dtype, scaled by match_rms_adamw, and decoupled weight decay. Its state is torch.optim.Muon's
    ({"momentum_buffer": tensor} per parameter) and its param-group keys a subset of theirs, so a
    torch.optim.Muon checkpoint loads into it."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_dtype: torch.dtype = torch.float32):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov))
        if any(p.dim() != 2 for group in self.param_groups for p in group["params"]):
            raise ValueError("Muon takes 2-D weight matrices only; give the others to AdamW")
        # Not a param-group setting, so that a resumed run multiplies in what its own machine does best.
        self.ns_dtype = ns_dtype

    def describe(self) -> str:
        """The dtype of its Newton-Schulz iteration, and why (pick_muon_dtype): for the start-up line."""
        device = self.param_groups[0]["params"][0].device
        return f"Newton-Schulz in {str(self.ns_dtype).removeprefix('torch.')}: {pick_muon_dtype(device)[1]}"

    @torch.no_grad()
    def step(self, closure=None):
        """Update every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)  # a running average of the gradients: mu * buf + (1 - mu) * grad
                # Nesterov: step with the gradient pulled toward where the momentum is heading
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                p.mul_(1 - lr * group["weight_decay"])  # decoupled weight decay, as AdamW's
                p.add_(orthogonalize(update, self.ns_dtype), alpha=-lr * match_rms_adamw(p.shape))
        return loss


def pick_muon_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype Muon's Newton-Schulz iteration (extras/modern.py) multiplies in, and why: bfloat16 where the
    hardware multiplies it natively, float32 elsewhere.

    The iteration is fifteen matmuls per weight matrix per step. torch.optim.Muon always runs them in
    bfloat16, for tensor cores; where bfloat16 is emulated (CPUs without AVX-512 BF16, T4 and V100 GPUs) that
    made the modern recipe's step several times slower than GPT-2's (docs/BENCHMARKS.md).
    """
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, ("this GPU multiplies bfloat16 natively "
                                    f"(compute capability {major}.{minor})")
        return torch.float32, ("this GPU only emulates bfloat16 "
                               f"(compute capability {major}.{minor}, below 8.0)")
    if device.type == "cpu":
        if cpu_has_native_bfloat16():
            return torch.bfloat16, "this CPU multiplies bfloat16 in hardware"
        return torch.float32, "this CPU only emulates bfloat16, many times slower than float32"
    return torch.float32, f"bfloat16 unmeasured on {device.type}"
