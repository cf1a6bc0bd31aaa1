"""model.py: shapes, initial loss, causality, attention reference, parameter counts, learning, sampling."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from extras import engine
from extras.inside import next_token_probs
from model import GPT, PRESETS, CausalSelfAttention, GPTConfig, sample_next_token

SMALL = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


def closed_form_params(c: GPTConfig) -> int:
    """Parameter count from the architecture alone; the head shares the token embedding so it adds nothing."""
    C, bias = c.n_embd, int(c.bias)
    layer_norm = C + bias * C
    per_block = (2 * layer_norm + (C * 3 * C + bias * 3 * C) + (C * C + bias * C)
                 + (C * 4 * C + bias * 4 * C) + (4 * C * C + bias * C))
    return c.vocab_size * C + c.block_size * C + c.n_layer * per_block + layer_norm


def test_forward_shapes():
    model = GPT(SMALL)
    idx = torch.randint(65, (3, 17))
    logits, loss = model(idx)
    assert logits.shape == (3, 17, 65)
    assert loss is None
    _, loss = model(idx, idx)
    assert loss.shape == ()


def test_sequence_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size 32"):
        GPT(SMALL)(torch.zeros((1, 33), dtype=torch.long))


@pytest.mark.parametrize("name", list(PRESETS))
def test_initial_loss_is_that_of_a_uniform_guess(name):
    torch.manual_seed(0)
    model = GPT(replace(PRESETS[name], vocab_size=65, block_size=64)).eval()
    idx = torch.randint(65, (4, 64))
    _, loss = model(idx, torch.randint(65, (4, 64)))
    assert abs(loss.item() - math.log(65)) < 0.1


def test_changing_a_later_token_leaves_earlier_logits_unchanged():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    idx = torch.randint(65, (1, 20))
    t = 9
    changed = idx.clone()
    changed[0, t + 1] = (idx[0, t + 1] + 1) % 65
    before, _ = model(idx)
    after, _ = model(changed)
    assert torch.equal(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1], after[:, t + 1])


def test_sdpa_attention_equals_explicit_masked_softmax():
    torch.manual_seed(0)
    attn = CausalSelfAttention(replace(SMALL, n_head=4)).eval()
    x = torch.randn(2, 11, 32)
    B, T, C = x.shape
    hs = C // 4
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, 4, hs).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    reference = attn.c_proj((F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C))
    assert torch.allclose(attn(x), reference, atol=1e-5)


@pytest.mark.parametrize("config", [*[replace(p, vocab_size=65) for p in PRESETS.values()], replace(SMALL, bias=False)])
def test_parameter_count_matches_closed_form(config):
    assert GPT(config).num_params() == closed_form_params(config)


def test_head_is_tied_to_token_embedding():
    model = GPT(SMALL)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_residual_projections_start_smaller():
    torch.manual_seed(0)
    model = GPT(replace(SMALL, n_embd=128, n_layer=8, n_head=4))
    proj_std = model.transformer.h[0].attn.c_proj.weight.std().item()
    fc_std = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert fc_std == pytest.approx(0.02, rel=0.05)
    assert proj_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_dropout_only_while_training():
    torch.manual_seed(0)
    model = GPT(replace(SMALL, dropout=0.5))
    idx = torch.randint(65, (2, 16))
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(SMALL)
    x = torch.randint(65, (4, 32))
    y = torch.randint(65, (4, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_temperature_zero_is_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert sample_next_token(logits, 0.0, None).tolist() == [[1], [0]]


def test_top_k_keeps_only_the_k_best_and_clamps_to_vocab():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0, 1.0]])
    generator = torch.Generator().manual_seed(0)
    draws = {sample_next_token(logits, 5.0, 2, generator).item() for _ in range(300)}
    assert draws == {0, 1}
    draws = {sample_next_token(logits, 100.0, 1000, generator).item() for _ in range(300)}  # k clamped to 5
    assert draws == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.5, 3), (1.2, 1), (0.0, None), (0.8, 1000)])
def test_the_sampling_distribution_sums_to_one_with_exactly_k_candidates(temperature, top_k):
    logits = torch.randn(3, 65, generator=torch.Generator().manual_seed(0)) * 3
    probs = next_token_probs(logits, temperature, top_k)  # (3, 65)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    k = 1 if temperature == 0 else min(top_k or 65, 65)
    assert ((probs > 0).sum(-1) == k).all()
    # The candidates are the k largest logits, and within them temperature reshapes a softmax.
    top = logits.topk(k, dim=-1).indices
    assert torch.equal(probs.gather(-1, top) > 0, torch.ones(3, k, dtype=torch.bool))
    if temperature:
        expected = torch.softmax(logits.gather(-1, top) / temperature, dim=-1)
        assert torch.allclose(probs.gather(-1, top), expected, atol=1e-6)


def test_lower_temperature_sharpens_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    top = [next_token_probs(logits, t, None)[0, 0].item() for t in (0.5, 0.8, 1.0, 1.2)]
    assert top == sorted(top, reverse=True) and top[0] > 0.85


def test_sampled_tokens_follow_the_distribution():
    logits = torch.tensor([[1.0, 0.0, 2.0, -1.0, 0.5]]).expand(4000, 5)  # 4000 rows drawn at once
    draws = sample_next_token(logits, 1.0, 3, torch.Generator().manual_seed(0))[:, 0]
    frequencies = torch.bincount(draws, minlength=5).float() / 4000
    assert torch.allclose(frequencies, next_token_probs(logits[:1], 1.0, 3)[0], atol=0.03)
    assert frequencies[1] == frequencies[3] == 0  # outside the top 3


@pytest.mark.parametrize("temperature, top_k, why", [(-0.1, None, "temperature must be >= 0, got -0.1"),
                                                     (1.0, 0, "top_k must be >= 1, got 0")])
def test_sampling_rejects_bad_settings(temperature, top_k, why):
    with pytest.raises(ValueError, match=why):
        sample_next_token(torch.zeros(1, 5), temperature, top_k)


def test_seeded_generation_repeats_and_top_k_one_is_greedy():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    start = torch.zeros((1, 1), dtype=torch.long)

    def sample(seed, **kw):
        return model.generate(start, 40, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(sample(7, temperature=1.0, top_k=10), sample(7, temperature=1.0, top_k=10))
    assert not torch.equal(sample(7, temperature=1.0), sample(8, temperature=1.0))
    assert torch.equal(sample(7, temperature=1.0, top_k=1), sample(8, temperature=0.0))


def test_slide_past_block_size_uses_the_last_block_size_tokens():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    start = torch.randint(65, (2, 30))
    out = engine.generate(model, start, 10, temperature=0.0, window="slide")
    assert out.shape == (2, 40)
    assert torch.equal(out[:, :30], start)
    # The last token must be the greedy choice given only the 32 tokens before it.
    logits, _ = model(out[:, -33:-1])
    assert torch.equal(out[:, -1], logits[:, -1].argmax(-1))


def test_shift_keeps_the_last_half_of_the_window_and_fills_it_again():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()  # block_size 32
    start = torch.randint(65, (2, 30))
    out = engine.generate(model, start, 40, temperature=0.0)  # shift is the default
    assert out.shape == (2, 70) and torch.equal(out[:, :30], start)
    # Drawing token 32 (0-based) overfills the window [0, 32), so the window becomes its last 16 tokens, [17, 33), and
    # grows to [17, 49); drawing token 49 overfills it again: [34, 50), and so on, 17 tokens further each time.
    for t in range(30, 70):
        window_start = 0 if t <= 32 else 17 * ((t - 33) // 17 + 1)
        logits, _ = model(out[:, window_start:t])
        assert torch.equal(out[:, t], logits[:, -1].argmax(-1)), f"token {t}, window from {window_start}"


def test_the_running_text_and_the_cache_stay_bounded(monkeypatch):
    model = GPT(SMALL).eval()
    made = []
    real_cache = engine.KVCache
    monkeypatch.setattr(engine, "KVCache", lambda *a, **kw: made.append(real_cache(*a, **kw)) or made[-1])
    tokens = list(engine.generate_tokens(model, torch.zeros((1, 1), dtype=torch.long), 5 * SMALL.block_size))
    assert len(tokens) == 5 * SMALL.block_size and all(t.shape == (1, 1) for t in tokens)
    # one cache per layer, allocated once, for one window
    assert len(made) == SMALL.n_layer and all(c.capacity == SMALL.block_size for c in made)
    assert all(block.attn.cache is None for block in model.transformer.h)  # taken away again afterwards


def test_cached_logits_equal_uncached_logits_at_every_position():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    idx = torch.randint(65, (2, SMALL.block_size))
    full, _ = model(idx)  # (2, 32, 65): every position computed at once, no cache
    with engine.kv_caches(model, batch_size=2):
        prefill, _ = model(idx[:, :5])
        assert torch.allclose(prefill, full[:, :5], atol=1e-4)
        for t in range(5, SMALL.block_size):
            step, _ = model(idx[:, t : t + 1], start=t)
            assert torch.allclose(step[:, 0], full[:, t], atol=1e-4), f"position {t}"
        with pytest.raises(ValueError, match="block_size"):
            model(idx[:, :1], start=SMALL.block_size)  # the cache is full: no position 32 exists


@pytest.mark.parametrize("window", ["slide", "shift"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_past_block_size_equals_recomputing_the_same_window(temperature, window):
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    start = torch.randint(65, (2, 10))
    runs = [engine.generate(model, start, 3 * SMALL.block_size, temperature=temperature, window=window,
                            generator=torch.Generator().manual_seed(3), use_cache=use_cache) for use_cache in (True, False)]
    assert torch.equal(*runs)


@pytest.mark.parametrize("top_k", [None, 5])
def test_the_plain_generate_gives_the_engines_slide_window_tokens(top_k):
    # model.py's generate() recomputes the last block_size tokens each step: the engine's slide window, cached or not.
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    start = torch.randint(65, (2, 10))
    plain = model.generate(start, 3 * SMALL.block_size, temperature=1.0, top_k=top_k,
                           generator=torch.Generator().manual_seed(3))
    for use_cache in (True, False):
        fast = engine.generate(model, start, 3 * SMALL.block_size, temperature=1.0, top_k=top_k, window="slide",
                               generator=torch.Generator().manual_seed(3), use_cache=use_cache)
        assert torch.equal(plain, fast)
