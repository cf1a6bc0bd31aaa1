"""The 2026 pieces: RoPE, grouped-query attention and the KV cache, every option's parameter count, AdamW + Muon,
--recipe modern end to end (train, resume, sample, evaluate, torchrun), old checkpoints, and flags that must fail."""

import itertools
import math
import re
import shutil
from collections import Counter
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from extras import cli
import evaluate
import generate
import train
from model import PRESETS
from extras import run as run_module
from extras.files import save_checkpoint
from conftest import needs, read_metrics, run_train
from extras import engine
from extras.inside import attention_maps
from extras.modern import RECIPES, Muon, apply_rotary, rotary_tables, swiglu_hidden
from model import GPT, GPTConfig
from extras.step import configure_optimizer

OPTIONS = {"position": ["learned", "rope"], "norm": ["layernorm", "rmsnorm"], "mlp": ["gelu", "swiglu", "relu2"],
           "qk_norm": [False, True], "n_kv_head": [None, 1, 2], "tie_weights": [True, False]}
NEW_FIELDS = list(OPTIONS)  # the GPTConfig fields a checkpoint from before them lacks
ALL_PIECES = dict(position="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, tie_weights=False)  # every option on
MODERN = {k: v for k, v in RECIPES["modern"].items() if k not in ("optimizer", "n_kv_head")}  # the recipe's model


def every_combination():
    """Every combination of the options, as GPTConfig keyword arguments: 144 of them."""
    return [dict(zip(OPTIONS, values)) for values in itertools.product(*OPTIONS.values())]


@torch.no_grad()
def scrambled(model: GPT, seed: int = 0) -> GPT:
    """model in eval mode with every weight redrawn so logits vary by whole units. At GPT-2's init (std 0.02) they are
    nearly flat, and a wrong rotation or cache would hide under any tolerance."""
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        if p.dim() == 2:
            p.copy_(noise / math.sqrt(p.shape[1]))  # a matrix keeps its input's scale
        elif name.endswith("weight"):
            p.copy_(1 + 0.3 * noise)  # a norm's gain
        else:
            p.copy_(0.1 * noise)  # a bias
    return model.eval()


def one_line_error(capsys) -> str:
    """stderr holds exactly one line, an "error: ..." without a traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").split("\n") if line.strip() and not line.startswith("train:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# RoPE


def test_rope_scores_depend_only_on_the_distance_between_positions():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)  # (B, nh, T, hs)

    def scores(positions):
        cos, sin = rotary_tables(8, positions)
        return apply_rotary(q, cos, sin) @ apply_rotary(k, cos, sin).transpose(-2, -1)  # (B, nh, T, T)

    positions = torch.arange(10)
    assert torch.allclose(scores(positions + 7), scores(positions), atol=1e-4)
    assert torch.allclose(scores(positions + 100), scores(positions), atol=1e-4)
    assert not torch.allclose(scores(2 * positions), scores(positions), atol=1e-2)  # other distances, other scores
    assert torch.equal(apply_rotary(q, *rotary_tables(8, torch.zeros(10))), q)  # position 0 turns nothing
    rotated = apply_rotary(q, *rotary_tables(8, positions))
    assert torch.allclose(rotated.norm(dim=-1), q.norm(dim=-1), atol=1e-5)  # a rotation keeps lengths


# ---------------------------------------------------------------------------------------------------------------
# grouped-query attention and the KV cache


def reference_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """What CausalSelfAttention computes, head by head in plain matmuls: query head h reads key/value head
    h // (n_head / n_kv_head); QK-norm divides by the RMS; RoPE turns channel pair (i, i + hs/2) at position t by
    t * 10000^(-2i/hs), done here as a complex multiplication."""
    B, T, C = x.shape
    nh, nkv, hs = attn.n_head, getattr(attn, "n_kv_head", attn.n_head), attn.head_size
    qkv = attn.c_attn(x)
    q, k, v = qkv[..., :C], qkv[..., C:C + nkv * hs], qkv[..., C + nkv * hs:]
    angles = torch.arange(T)[:, None] * 10000.0 ** (-torch.arange(0, hs, 2) / hs)  # (T, hs/2)

    def rotate(t):
        turned = torch.complex(t[..., : hs // 2], t[..., hs // 2:]) * torch.polar(torch.ones_like(angles), angles)
        return torch.cat((turned.real, turned.imag), dim=-1)

    def rms_norm(t, gain):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5) * gain

    future = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    heads = []
    for h in range(nh):
        g = h // (nh // nkv)
        qh, kh, vh = q[..., h * hs:(h + 1) * hs], k[..., g * hs:(g + 1) * hs], v[..., g * hs:(g + 1) * hs]  # (B, T, hs)
        if getattr(attn, "q_norm", None) is not None:
            qh, kh = rms_norm(qh, attn.q_norm.weight), rms_norm(kh, attn.k_norm.weight)
        if getattr(attn, "rope", False):
            qh, kh = rotate(qh), rotate(kh)
        scores = (qh @ kh.transpose(-2, -1) / math.sqrt(hs)).masked_fill(future, float("-inf"))  # (B, T, T)
        heads.append(F.softmax(scores, dim=-1) @ vh)
    return attn.c_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("n_kv_head, position, qk_norm", [(None, "rope", True), (4, "learned", False),
                                                          (4, "rope", True), (2, "rope", True), (1, "learned", True)])
def test_attention_equals_a_head_by_head_reference(n_kv_head, position, qk_norm):
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=4, n_embd=32, n_kv_head=n_kv_head,
                       position=position, qk_norm=qk_norm)
    attn = scrambled(GPT(config), seed=1).transformer.h[0].attn
    x = torch.randn(2, 11, 32)
    with torch.no_grad():
        assert torch.allclose(attn(x), reference_attention(attn, x), atol=1e-5)


def _widen_kv(tensor: torch.Tensor, C: int, nkv: int, hs: int, groups: int, tiled: bool = False) -> torch.Tensor:
    """c_attn's weight or bias with each key and value head copied `groups` times in a row (or, tiled, the whole
    set of heads repeated): the rows of a multi-head c_attn."""
    q, k, v = tensor.split([C, nkv * hs, nkv * hs])

    def repeat(t):
        heads = t.reshape(nkv, hs, *t.shape[1:])
        heads = heads.repeat(groups, *[1] * (heads.dim() - 1)) if tiled else heads.repeat_interleave(groups, dim=0)
        return heads.reshape(nkv * groups * hs, *t.shape[1:])

    return torch.cat((q, repeat(k), repeat(v)))


def test_each_kv_head_serves_its_group_of_query_heads_in_order():
    gqa_config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, **ALL_PIECES)
    gqa = scrambled(GPT(gqa_config), seed=2)
    idx = torch.randint(11, (2, 16))

    def mha_copy(tiled):
        state = {name: _widen_kv(t, 32, 2, 8, 2, tiled) if ".attn.c_attn." in name else t
                 for name, t in gqa.state_dict().items()}
        mha = GPT(replace(gqa_config, n_kv_head=None))
        mha.load_state_dict(state)  # strict: every shape must fit
        return mha.eval()

    with torch.no_grad():
        logits = gqa(idx)[0]
        assert torch.allclose(mha_copy(tiled=False)(idx)[0], logits, atol=1e-5)
        # Heads 0, 1 share kv head 0 and heads 2, 3 kv head 1; pairing them 0, 1, 0, 1 instead is another model.
        assert not torch.allclose(mha_copy(tiled=True)(idx)[0], logits, atol=1e-2)


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_the_kv_cache_holds_only_the_kv_heads(n_kv_head):
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32, n_kv_head=n_kv_head, **ALL_PIECES)
    gqa, mha = GPT(config).eval(), GPT(replace(config, n_kv_head=None)).eval()
    idx = torch.randint(11, (3, 16))
    sizes = {}
    for name, model in [("gqa", gqa), ("mha", mha)]:
        with torch.no_grad(), engine.kv_caches(model, batch_size=3) as caches:
            model(idx)
        heads = model.config.kv_heads
        assert len(caches) == 2  # one per layer, each (B, kv heads, T, hs)
        assert all(tuple(c.k.shape) == tuple(c.v.shape) == (3, heads, 16, 8) for c in caches)
        sizes[name] = sum(t.numel() * t.element_size() for c in caches for t in (c.k, c.v))
        assert engine.kv_cache_bytes(model.config, 3, 16) == sizes[name]
    assert sizes["mha"] == sizes["gqa"] * 4 // n_kv_head
    assert engine.kv_cache_bytes(gqa.config, 3, 16, torch.bfloat16) * 2 == engine.kv_cache_bytes(gqa.config, 3, 16)


def test_cached_logits_equal_uncached_for_every_combination_of_options():
    T, failures = 8, []
    combinations = every_combination()
    assert len(combinations) == 144
    for i, options in enumerate(combinations):
        model = scrambled(GPT(GPTConfig(vocab_size=11, block_size=T, n_layer=2, n_head=4, n_embd=16, **options)), i)
        idx = torch.randint(11, (2, T), generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            full, _ = model(idx)  # (2, T, 11), every position at once
            with engine.kv_caches(model, batch_size=2):  # prefill 3 positions, then one at a time
                cached = torch.cat([model(idx[:, :3])[0]]
                                   + [model(idx[:, t:t + 1], start=t)[0] for t in range(3, T)], dim=1)
        assert full.std() > 0.5, options  # logits far from flat, so the tolerance below means something
        if not torch.allclose(cached, full, atol=1e-5):
            failures.append((options, (cached - full).abs().max().item()))
    assert not failures


@pytest.mark.parametrize("window", ["slide", "shift"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_of_a_rope_gqa_model_past_block_size_equals_recomputing(temperature, window):
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_kv_head=1, n_embd=32, **ALL_PIECES)
    model = scrambled(GPT(config), seed=3)
    start = torch.randint(11, (2, 5), generator=torch.Generator().manual_seed(3))
    runs = [engine.generate(model, start, 3 * config.block_size, temperature=temperature, use_cache=use_cache, window=window,
                           generator=torch.Generator().manual_seed(3)) for use_cache in (True, False)]
    assert torch.equal(*runs)
    assert len(set(runs[0][0].tolist())) > 3  # the sample is not one token repeated


@pytest.mark.parametrize("options", [{}, dict(ALL_PIECES, n_kv_head=2)], ids=["gpt2", "every-piece-gqa"])
def test_attention_maps_are_the_weights_forward_averages_values_with(options):
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32, **options)
    model = scrambled(GPT(config), seed=5)
    idx = torch.randint(11, (2, 12), generator=torch.Generator().manual_seed(0))
    maps = attention_maps(model, idx)  # (layers, B, heads, T, T)
    assert maps.shape == (2, 2, 4, 12, 12)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, 12), atol=1e-5)  # each row is a distribution
    assert (maps.triu(diagonal=1) == 0).all()  # no position attends to a later one
    assert (maps[..., torch.ones(12, 12, dtype=torch.bool).tril()] > 0).all()  # every earlier one gets some weight
    # Averaging the values with these weights gives exactly what the fused kernel computed in forward.
    attn = model.transformer.h[0].attn
    with torch.no_grad():
        x = model.transformer.h[0].ln_1(model.transformer.wte(idx) + (model.transformer.wpe(torch.arange(12))
                                                                      if config.position == "learned" else 0))
        _, _, v = attn.heads(x)
        v = v.repeat_interleave(4 // v.size(1), dim=1)  # each value head for its group of query heads
        y = (maps[0] @ v).transpose(1, 2).reshape(2, 12, 32)  # (B, T, C)
        assert torch.allclose(attn.c_proj(y), attn(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# parameter counts


def closed_form_params(c: GPTConfig) -> int:
    """The parameter count from the architecture alone, each option by hand."""
    C, V, bias, hs, kv = c.n_embd, c.vocab_size, int(c.bias), c.n_embd // c.n_head, c.n_kv_head or c.n_head
    norm = C + bias * C if c.norm == "layernorm" else C  # RMSNorm has a gain and never a bias
    attention = C * (C + 2 * kv * hs) + bias * (C + 2 * kv * hs) + C * C + bias * C + (2 * hs if c.qk_norm else 0)
    if c.mlp == "swiglu":
        h = swiglu_hidden(c)
        mlp = C * 2 * h + bias * 2 * h + h * C + bias * C
    else:
        mlp = C * 4 * C + bias * 4 * C + 4 * C * C + bias * C
    embeddings = V * C + (c.block_size * C if c.position == "learned" else 0) + (0 if c.tie_weights else V * C)
    return embeddings + c.n_layer * (2 * norm + attention + mlp) + norm


def test_parameter_count_matches_the_closed_form_for_every_combination_of_options():
    wrong = []
    for options, bias in itertools.product(every_combination(), [True, False]):
        config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=32, bias=bias, **options)
        if GPT(config).num_params() != closed_form_params(config):
            wrong.append((options, bias, GPT(config).num_params(), closed_form_params(config)))
    assert not wrong


@pytest.mark.parametrize("n_embd", [32, 128, 256, 384, 100])
def test_swiglu_hidden_is_the_multiple_of_8_nearest_8c_over_3_and_keeps_the_mlp_size(n_embd):
    config = GPTConfig(vocab_size=65, n_layer=1, n_head=4, n_embd=n_embd, mlp="swiglu")
    h = swiglu_hidden(config)
    assert h % 8 == 0 and abs(h - 8 * n_embd / 3) <= 4
    assert 3 * n_embd * h == pytest.approx(8 * n_embd**2, rel=0.1)  # about the GELU MLP's two C x 4C matrices
    assert GPT(config).transformer.h[0].mlp.c_fc.weight.shape == (2 * h, n_embd)


def test_pieces_names_the_architecture():
    assert GPTConfig().pieces() == "learned, layernorm, gelu, tied head"
    modern = GPTConfig(n_head=4, n_kv_head=1, **ALL_PIECES)
    assert modern.pieces() == "rope, rmsnorm, swiglu, qk-norm, 1 kv head, untied head"
    assert "2 kv heads" in GPTConfig(n_head=4, n_kv_head=2).pieces()


# ---------------------------------------------------------------------------------------------------------------
# the optimizers: AdamW, and Muon for the matrices inside the blocks


def _optimizer_model(tie_weights: bool, modern: bool) -> GPT:
    pieces = {**ALL_PIECES, "tie_weights": tie_weights} if modern else {"qk_norm": True, "tie_weights": tie_weights}
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_kv_head=2, n_embd=16, **pieces))


@pytest.mark.parametrize("modern", [False, True])
@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_every_parameter_is_in_exactly_one_group_and_muon_gets_the_block_matrices(kind, tie_weights, modern):
    model = _optimizer_model(tie_weights, modern)
    optimizers = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind=kind, muon_lr=0.02)
    placed = Counter(id(p) for o in optimizers for g in o.param_groups for p in g["params"])
    assert placed == Counter(id(p) for p in model.parameters())  # each parameter once, and nothing else

    names = {id(p): name for name, p in model.named_parameters()}
    block_matrices = {f"transformer.h.{i}.{m}.weight" for i in range(2)
                      for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    outside = {"transformer.wte.weight"} | ({"transformer.wpe.weight"} if not modern else set()) \
        | ({"lm_head.weight"} if not tie_weights else set())
    assert type(optimizers[0]) is torch.optim.AdamW
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in optimizers[0].param_groups)
    assert all(model.get_parameter(n).dim() == 1 for n in no_decay) and len(no_decay) > 0  # norm gains, biases
    assert [g["weight_decay"] for g in optimizers[0].param_groups] == [0.1, 0.0]
    assert [g["peak_lr"] for g in optimizers[0].param_groups] == [1e-3, 1e-3]
    if kind == "adamw":
        assert len(optimizers) == 1 and decay == outside | block_matrices
        return
    muon = optimizers[1]
    assert len(optimizers) == 2 and type(muon) is Muon
    assert decay == outside  # embeddings and a separate head stay with AdamW
    in_blocks = {id(p) for p in model.transformer.h.parameters()}
    assert all(p.dim() == 2 and id(p) in in_blocks for g in muon.param_groups for p in g["params"])
    assert {names[id(p)] for g in muon.param_groups for p in g["params"]} == block_matrices
    assert all(g["peak_lr"] == g["lr"] == 0.02 for g in muon.param_groups)
    default = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind="muon")
    assert [g["peak_lr"] for g in default[1].param_groups] == [1e-3]  # no muon_lr: the learning rate


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_one_training_step_moves_every_parameter(kind):
    torch.manual_seed(0)
    model = _optimizer_model(tie_weights=False, modern=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizers = configure_optimizer(model, 1e-2, 0.1, (0.9, 0.99), torch.device("cpu"), kind=kind)
    x = torch.randint(11, (4, 8))
    _, loss = model(x, x.roll(-1, 1))  # one step as train.py takes it: forward, backward, update
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    assert [name for name, p in model.named_parameters() if torch.equal(p, before[name])] == []


def test_configure_optimizer_refuses_an_unknown_kind_and_needs_no_torch_optim_muon(monkeypatch):
    model = _optimizer_model(tie_weights=True, modern=True)
    with pytest.raises(ValueError, match="adamw or muon"):
        configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind="sgd")
    monkeypatch.delattr(torch.optim, "Muon", raising=False)  # as on torch 2.4 to 2.8: ours is all it takes
    assert type(configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind="muon")[1]) is Muon


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_a_tiny_modern_model_overfits_one_batch(kind):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_kv_head=1, n_embd=32, bias=False, **ALL_PIECES)
    model = GPT(config)
    x, y = torch.randint(65, (4, 32)), torch.randint(65, (4, 32))
    optimizers = configure_optimizer(model, 3e-3, 0.0, (0.9, 0.99), torch.device("cpu"), kind=kind)
    _, loss = model(x, y)
    assert loss.item() == pytest.approx(math.log(65), abs=0.1)
    for _ in range(150):
        _, loss = model(x, y)
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
    assert loss.item() < 0.1


# ---------------------------------------------------------------------------------------------------------------
# --recipe modern end to end

# Warmup longer than the run: the learning rate still changes every step (so saved rates show the schedule), yet it
# does not depend on --max_iters, so a 4-step run resumed to 8 steps must equal an 8-step run exactly.
MODERN_RUN = ["--recipe", "modern", "--eval_interval", "4", "--learning_rate", "3e-3", "--muon_lr", "0.02",
              "--warmup_iters", "100"]


@pytest.fixture(scope="module")
def _modern_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modern")
    lines = ["To be, or not to be: that is the question.", "All the world's a stage,",
             "And all the men and women merely players;", "Now is the winter of our discontent!"]
    (folder / "text.txt").write_text("\n".join(lines[i % 4] for i in range(500)) + "\n", encoding="utf-8")
    assert run_train(folder / "text.txt", folder / "run", *MODERN_RUN, "--max_iters", "4") == 0
    return folder


@pytest.fixture
def modern_run(_modern_template, tmp_path):
    """A finished 4-step --recipe modern run (out_dir) and its text, in a folder of this test's own."""
    shutil.copytree(_modern_template, tmp_path, dirs_exist_ok=True)
    return tmp_path / "run", tmp_path / "text.txt"


def test_modern_recipe_saves_the_modern_model_and_both_optimizers(modern_run):
    out_dir, _ = modern_run
    last = torch.load(out_dir / "last.pt", weights_only=True, map_location="cpu")
    assert {k: last["model_config"][k] for k in MODERN} == MODERN and last["model_config"]["n_kv_head"] is None
    assert (last["train_config"]["recipe"], last["train_config"]["optimizer"]) == ("modern", "muon")
    tied = last["model"]["lm_head.weight"].equal(last["model"]["transformer.wte.weight"])
    assert tied == MODERN["tie_weights"]
    assert "transformer.wpe.weight" not in last["model"]  # RoPE has no position table
    adamw_lr = last["optimizer"]["param_groups"][0]["lr"]
    muon_lr = last["muon"]["param_groups"][0]["lr"]
    assert last["muon"]["state"]  # Muon's momentum is saved for --resume
    assert adamw_lr == pytest.approx(3e-3 * 4 / 100)  # the warmup's rate at the last step taken (step 3)
    assert muon_lr / adamw_lr == pytest.approx(0.02 / 3e-3)
    assert last["muon"]["param_groups"][0]["peak_lr"] == 0.02


def test_generate_and_evaluate_run_on_a_modern_checkpoint(modern_run, capsys):
    out_dir, _ = modern_run
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(out_dir / "last.pt"), "--prompt", "To be", "--max_new_tokens", "30",
                          "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("To be") and len(captured.out) == len("To be") + 30 + 1
    assert GPTConfig(**MODERN).pieces() in captured.err and "rope" in captured.err
    assert evaluate.main(["--checkpoint", str(out_dir / "last.pt"), "--device", "cpu"]) == 0
    printed = float(re.search(r"full val loss (\S+)", capsys.readouterr().out).group(1))
    assert printed == pytest.approx(read_metrics(out_dir)[-1]["val_loss"], abs=1e-4)  # the loss the run logged


def test_a_modern_run_resumed_gives_the_same_losses_and_weights(modern_run, tmp_path):
    out_dir, text = modern_run
    assert run_train(text, tmp_path / "whole", *MODERN_RUN, "--max_iters", "8") == 0
    assert run_train(text, out_dir, *MODERN_RUN, "--max_iters", "8", "--resume") == 0
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(out_dir)
    assert [r["step"] for r in resumed] == [0, 4, 8]
    assert [(r["train_loss"], r["val_loss"]) for r in resumed] == [(r["train_loss"], r["val_loss"]) for r in whole]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(out_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)  # Muon's momentum carried over too


@pytest.mark.parametrize("flags, named", [(["--optimizer", "adamw"], "--optimizer adamw (checkpoint has muon)"),
                                          (["--recipe", "gpt2"], "--recipe gpt2 (checkpoint has modern)")])
def test_resume_refuses_another_optimizer_or_recipe(modern_run, capsys, flags, named):
    out_dir, text = modern_run
    before = (out_dir / "last.pt").read_bytes()
    capsys.readouterr()
    assert run_train(text, out_dir, *MODERN_RUN[2:], "--max_iters", "8", "--resume", *flags) == cli.EXIT_USAGE
    assert named in one_line_error(capsys)
    assert (out_dir / "last.pt").read_bytes() == before


def test_a_resumed_run_follows_the_learning_rates_it_is_given(modern_run, monkeypatch):
    out_dir, text = modern_run
    applied = []
    real_set_lr = train.set_lr

    def spy(optimizers, fraction):
        real_set_lr(optimizers, fraction)
        applied.append([o.param_groups[0]["lr"] for o in optimizers])

    monkeypatch.setattr(train, "set_lr", spy)
    assert run_train(text, out_dir, "--max_iters", "5", "--resume", "--learning_rate", "6e-3", "--muon_lr", "0.04") == 0
    assert applied == [pytest.approx([6e-3 * 5 / 100, 0.04 * 5 / 100])]  # step 4 of a 100-step warmup


def test_a_flag_given_alone_wins_over_the_recipe(small_text, tmp_path):
    assert run_train(small_text, tmp_path, "--recipe", "modern", "--optimizer", "adamw", "--max_iters", "2",
                     "--eval_interval", "2") == 0
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "muon" not in last and last["train_config"]["optimizer"] == "adamw"
    assert {k: last["model_config"][k] for k in MODERN} == MODERN

    def resolved(**given):
        return run_module.resolve_configs({"preset": "tiny", **given}, torch.device("cpu"), train.TrainConfig)

    cfg, model_cfg = resolved(recipe="modern", position="learned", mlp="swiglu")
    pieces = (model_cfg.position, model_cfg.mlp, model_cfg.norm, model_cfg.tie_weights)
    assert pieces == ("learned", "swiglu", MODERN["norm"], MODERN["tie_weights"])
    assert cfg.optimizer == "muon" and model_cfg.n_layer == PRESETS["tiny"].n_layer  # the preset keeps the sizes
    assert resolved(recipe="gpt2") == resolved()
    assert resolved(recipe="gpt2")[1] == PRESETS["tiny"]  # gpt2 is the GPTConfig defaults
    _, cpu_default = run_module.resolve_configs({"recipe": "modern"}, torch.device("cpu"), train.TrainConfig)  # the CPU quick run too
    assert cpu_default.position == "rope" and cpu_default.n_layer == PRESETS[run_module.CPU_DEFAULTS["preset"]].n_layer


@needs("tokenizers")
def test_bpe_with_the_modern_recipe(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--recipe", "modern", "--tokenizer", "bpe", "--vocab_size", "300",
                     "--max_iters", "2", "--eval_interval", "2") == 0
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["tokenizer"]["kind"] == "bpe" and "muon" in last
    assert last["model"]["lm_head.weight"].shape[0] == last["model_config"]["vocab_size"] > 256
    assert math.isfinite(read_metrics(tmp_path)[-1]["val_loss"])
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(tmp_path / "last.pt"), "--prompt", "Now ", "--max_new_tokens", "8",
                          "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("Now ")


def test_modern_recipe_under_torchrun_matches_one_process(modern_run, tmp_path, torchrun_of_one):
    out_dir, text = modern_run
    assert run_train(text, tmp_path / "ddp", *MODERN_RUN, "--max_iters", "4") == 0
    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert "muon" in ddp and not any(name.startswith("module.") for name in ddp["model"])  # the unwrapped model
    for a, b in zip(read_metrics(tmp_path / "ddp"), read_metrics(out_dir)):
        assert a["step"] == b["step"] and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints from before the options


@pytest.fixture
def old_checkpoint(small_text, tmp_path):
    """A tiny GPT-2 run, and its last.pt as the version before the options wrote it (old.pt, in the same out_dir)."""
    out_dir = tmp_path / "run"
    assert run_train(small_text, out_dir, "--max_iters", "4", "--eval_interval", "2") == 0
    saved = torch.load(out_dir / "last.pt", weights_only=True)
    for key in NEW_FIELDS:
        del saved["model_config"][key]
    for key in ("recipe", "optimizer", "muon_lr"):
        del saved["train_config"][key]
    for group in saved["optimizer"]["param_groups"]:
        del group["peak_lr"]  # the old AdamW had one peak, set straight from the schedule
    save_checkpoint(out_dir / "old.pt", saved)
    return out_dir, small_text


def test_generate_and_evaluate_read_a_checkpoint_from_before_the_options(old_checkpoint, capsys):
    out_dir, _ = old_checkpoint
    assert not set(NEW_FIELDS) & torch.load(out_dir / "old.pt", weights_only=True)["model_config"].keys()
    results = {}
    for name in ("last.pt", "old.pt"):
        capsys.readouterr()
        flags = ["--checkpoint", str(out_dir / name), "--device", "cpu"]
        assert generate.main([*flags, "--max_new_tokens", "40", "--temperature", "1.0"]) == 0
        sample = capsys.readouterr()
        assert "learned, layernorm, gelu, tied head" in sample.err
        assert evaluate.main(flags) == 0
        loss_line = capsys.readouterr().out.strip().splitlines()[-1]  # after the token cache's own line
        results[name] = (sample.out, loss_line.split(" | ")[0])  # the loss, without the path
    assert results["old.pt"] == results["last.pt"] and "full val loss" in results["old.pt"][1]


def test_a_checkpoint_from_before_the_options_resumes(old_checkpoint):
    out_dir, text = old_checkpoint
    shutil.copy(out_dir / "old.pt", out_dir / "last.pt")
    assert run_train(text, out_dir, "--max_iters", "6", "--eval_interval", "2", "--resume") == 0
    assert [r["step"] for r in read_metrics(out_dir)] == [0, 2, 4, 6]


# ---------------------------------------------------------------------------------------------------------------
# combinations that cannot be built


@pytest.mark.parametrize("fields", [dict(n_head=4, n_kv_head=3), dict(n_head=4, n_kv_head=0),
                                    dict(n_head=4, n_kv_head=8), dict(n_embd=30, n_head=2, position="rope")])
def test_config_check_refuses_shapes_the_model_cannot_have(fields):
    config = GPTConfig(**{"n_embd": 32, **fields})
    with pytest.raises(ValueError, match="n_kv_head|position") as refused:
        config.check()
    with pytest.raises(ValueError, match=re.escape(str(refused.value))):  # the same reason, from the model
        GPT(config)
    GPTConfig(n_embd=30, n_head=2).check()  # an odd head size is fine without RoPE
    for n_kv_head in (None, 1, 2, 4):
        GPTConfig(n_embd=32, n_head=4, n_kv_head=n_kv_head, position="rope").check()


@pytest.mark.parametrize("flags, named", [
    (["--n_head", "4", "--n_kv_head", "3"], ["--n_kv_head (3)", "--n_head (4)"]),
    (["--n_head", "4", "--n_kv_head", "0"], ["--n_kv_head", "--n_head"]),
    (["--position", "rope", "--n_embd", "30", "--n_head", "2"], ["--position rope", "--n_embd", "--n_head", "15"]),
    (["--recipe", "modern", "--n_embd", "30", "--n_head", "2"], ["--position rope", "--n_embd", "--n_head"]),
])
def test_train_refuses_a_shape_the_model_cannot_have_in_one_line(small_text, tmp_path, capsys, flags, named):
    capsys.readouterr()
    assert run_train(small_text, tmp_path / "out", *flags, "--max_iters", "2") == cli.EXIT_USAGE
    line = one_line_error(capsys)
    assert all(word in line for word in named), line
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("flags", [["--optimizer", "muon"], ["--recipe", "modern"]])
def test_muon_trains_on_a_torch_without_torch_optim_muon(small_text, tmp_path, monkeypatch, flags):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)  # torch 2.4 to 2.8
    assert run_train(small_text, tmp_path / "out", *flags, "--max_iters", "2", "--eval_interval", "2") == 0
    assert torch.load(tmp_path / "out" / "last.pt", weights_only=True)["muon"]["state"]

