"""Our Muon (extras/modern.py): the Newton-Schulz iteration against a float64 reference, its bfloat16 and float32
modes and where each is picked, one step against torch.optim.Muon's, and checkpoints of torch.optim.Muon resumed."""

import pytest
import torch

from conftest import read_metrics, run_train
from extras import cpu, modern, precision, step
from extras.resume import restore_optimizer
from model import GPT, GPTConfig
from extras.modern import NS_COEFFICIENTS, NS_STEPS, Muon, match_rms_adamw, orthogonalize

HAS_TORCH_MUON = hasattr(torch.optim, "Muon")
needs_torch_muon = pytest.mark.skipif(
    not HAS_TORCH_MUON, reason=f"torch {torch.__version__} has no torch.optim.Muon (2.9 and newer have it) to compare with")


def reference_iteration(G: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """The same iteration written out in float64: X <- a X + b (X X^T) X + c (X X^T)^2 X, on the wide way round."""
    a, b, c = NS_COEFFICIENTS
    X = G.double()
    X = X.T if G.shape[0] > G.shape[1] else X
    X = X / torch.linalg.matrix_norm(X)  # Frobenius
    for _ in range(steps):
        A = X @ X.T
        X = a * X + b * A @ X + c * A @ A @ X
    return X.T if G.shape[0] > G.shape[1] else X


@pytest.mark.parametrize("shape", [(24, 72), (72, 24), (48, 48)])
def test_newton_schulz_matches_a_float64_reference_and_moves_every_direction_alike(shape):
    G = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = reference_iteration(G)
    got = orthogonalize(G, torch.float32)
    assert got.dtype == torch.float32 and got.shape == G.shape
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)
    if shape[0] != shape[1]:  # a random square matrix has singular values near 0 that five steps cannot lift
        singular = torch.linalg.svdvals(got)
        assert singular.min() > 0.6 and singular.max() < 1.25  # near 1 (the quintic's spread, not exactly 1)
    # G's singular vectors are kept: the result points where U V^T does
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    assert torch.nn.functional.cosine_similarity(got.double().flatten(), (U @ Vh).flatten(), dim=0) > 0.98


def test_newton_schulz_in_bfloat16_stays_near_float32():
    G = torch.randn(32, 96, generator=torch.Generator().manual_seed(1))
    low, full = orthogonalize(G, torch.bfloat16), orthogonalize(G, torch.float32)
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).norm() / full.norm() < 0.03  # bfloat16 has 8 bits of mantissa
    assert torch.equal(orthogonalize(G.T, torch.float32), full.T)  # a tall matrix is done as its transpose


def _pair(dtype_a: torch.dtype, dtype_b: torch.dtype, seed: int = 0):
    """Two Muons over two copies of the same wide and tall matrices, Newton-Schulz in dtype_a and dtype_b."""
    torch.manual_seed(seed)
    a = [torch.nn.Parameter(torch.randn(16, 48)), torch.nn.Parameter(torch.randn(48, 16))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    return (a, b, Muon(a, lr=0.02, weight_decay=0.1, ns_dtype=dtype_a),
            Muon(b, lr=0.02, weight_decay=0.1, ns_dtype=dtype_b))


def _step_both(params_a, params_b, opt_a, opt_b, steps: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for pa, pb in zip(params_a, params_b):
            pa.grad = torch.randn(pa.shape, generator=generator)
            pb.grad = pa.grad.clone()
        opt_a.step()
        opt_b.step()


def test_one_muon_step_by_hand():
    """Momentum (Nesterov), the orthogonalised update scaled to AdamW's RMS, decoupled weight decay: the rule."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(16, 48))
    w0, g = w.detach().clone(), torch.randn(16, 48)
    w.grad = g.clone()
    Muon([w], lr=0.02, weight_decay=0.1, momentum=0.95, ns_dtype=torch.float32).step()
    buf = 0.05 * g  # the momentum buffer, from zero: 0.95 * 0 + 0.05 * g
    nesterov = 0.05 * g + 0.95 * buf
    update = orthogonalize(nesterov, torch.float32)
    expected = w0 * (1 - 0.02 * 0.1) - 0.02 * 0.2 * 48 ** 0.5 * update
    torch.testing.assert_close(w.detach(), expected)
    assert match_rms_adamw(w.shape) * update.pow(2).mean().sqrt() == pytest.approx(0.2, rel=0.15)  # AdamW's RMS


def test_bfloat16_and_float32_modes_train_alike_and_keep_float32_weights():
    a, b, low, full = _pair(torch.bfloat16, torch.float32)
    _step_both(a, b, low, full, steps=3)
    assert all(p.dtype == torch.float32 for p in a + b)
    assert all(low.state[p]["momentum_buffer"].dtype == torch.float32 for p in a)
    for pa, pb in zip(a, b):
        assert (pa - pb).norm() / pb.norm() < 1e-3  # three small steps apart by bfloat16's rounding alone


@needs_torch_muon
@pytest.mark.parametrize("ns_dtype, tolerance", [(torch.bfloat16, 1e-6), (torch.float32, 1e-3)])
def test_steps_equal_torch_optim_muons(ns_dtype, tolerance):
    """torch.optim.Muon always orthogonalises in bfloat16: ours in bfloat16 takes its steps, in float32 nearly."""
    torch.manual_seed(0)
    theirs_params = [torch.nn.Parameter(torch.randn(16, 48)), torch.nn.Parameter(torch.randn(48, 16))]
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in theirs_params]
    theirs = torch.optim.Muon(theirs_params, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    ours = Muon(ours_params, lr=0.02, weight_decay=0.1, ns_dtype=ns_dtype)
    _step_both(theirs_params, ours_params, theirs, ours, steps=1)
    for t, o in zip(theirs_params, ours_params):
        assert (t - o).norm() / t.norm() < tolerance
    _step_both(theirs_params, ours_params, theirs, ours, steps=3, seed=2)  # momentum, after a few steps
    for t, o in zip(theirs_params, ours_params):
        assert (t - o).norm() / t.norm() < 10 * tolerance


def test_muon_takes_matrices_only():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))])


# ---------------------------------------------------------------------------------------------------------------
# where each dtype is picked


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_a_cpu_orthogonalises_in_bfloat16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(modern, "cpu_has_native_bfloat16", lambda: native)
    dtype, why = modern.pick_muon_dtype(torch.device("cpu"))
    assert dtype == expected and why
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    _, muon = step.configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind="muon")
    assert muon.ns_dtype == expected
    _, muon = step.configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"), kind="muon",
                                       muon_dtype=torch.float32)
    assert muon.ns_dtype == torch.float32  # asked for


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float32), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16), ((6, 0), torch.float32)])
def test_a_gpu_orthogonalises_in_bfloat16_from_compute_capability_8(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dtype, why = modern.pick_muon_dtype(torch.device("cuda"))
    assert dtype == expected and f"{capability[0]}.{capability[1]}" in why


def test_mps_orthogonalises_in_float32():
    assert modern.pick_muon_dtype(torch.device("mps"))[0] == torch.float32


def test_onednn_capped_below_bfloat16_means_emulated_and_a_bfloat16_run_says_so(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not cpu.cpu_has_native_bfloat16()
    assert modern.pick_muon_dtype(torch.device("cpu"))[0] == torch.float32
    assert "bfloat16 emulated, oneDNN capped at AVX2" in cpu.cpu_class()
    described = precision.make_precision("cpu").describe()  # float32: the class, and no word on bfloat16
    assert f"{torch.backends.cpu.get_cpu_capability()} CPU" in described and "bfloat16" not in described
    assert "this CPU emulates bfloat16: slow" in precision.make_precision("cpu", "bfloat16").describe()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    native = cpu.cpu_has_native_bfloat16()
    assert cpu.cpu_class().endswith("bfloat16 native" if native else "bfloat16 emulated")
    assert ("emulates" in precision.make_precision("cpu", "bfloat16").describe()) == (not native)


def test_the_optimizer_line_names_the_newton_schulz_dtype_and_why(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path / "out", "--recipe", "modern", "--max_iters", "2",
                     "--eval_interval", "2") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("optimizer:"))
    dtype, why = modern.pick_muon_dtype(torch.device("cpu"))
    assert "Muon (" in line and f"Newton-Schulz in {str(dtype).removeprefix('torch.')}: {why}" in line


# ---------------------------------------------------------------------------------------------------------------
# checkpoints of torch.optim.Muon (the previous code) resume with ours


def test_a_torch_optim_muon_state_loads_and_steps_on(tmp_path):
    """torch.optim.Muon's state_dict ({"momentum_buffer": tensor} per parameter, its own param-group keys), saved
    and loaded into ours, steps on as torch's would. Written by torch.optim.Muon where this torch has it, else by
    hand in its layout."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(16, 48)), torch.nn.Parameter(torch.randn(48, 16))]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    if HAS_TORCH_MUON:
        old = torch.optim.Muon([{"params": params, "peak_lr": 0.02}], lr=0.02, weight_decay=0.1,
                               adjust_lr_fn="match_rms_adamw")
    else:
        old = Muon([{"params": params, "peak_lr": 0.02}], lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16)
    _step_both(params, copies, old, Muon(copies, lr=0.02, weight_decay=0.1), steps=2)
    saved = old.state_dict()
    if not HAS_TORCH_MUON:
        saved["param_groups"][0].update(ns_coefficients=NS_COEFFICIENTS, eps=1e-7, ns_steps=NS_STEPS,
                                        adjust_lr_fn="match_rms_adamw")
    assert all(set(state) == {"momentum_buffer"} for state in saved["state"].values())
    torch.save(saved, tmp_path / "muon.pt")

    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = Muon([{"params": resumed_params, "peak_lr": 0.05}], lr=0.05, ns_dtype=torch.bfloat16)
    restore_optimizer(resumed, torch.load(tmp_path / "muon.pt", weights_only=True))
    assert resumed.param_groups[0]["peak_lr"] == 0.05  # this run's peak, as for AdamW
    assert resumed.param_groups[0]["lr"] == 0.02 and resumed.param_groups[0]["weight_decay"] == 0.1
    for p, q in zip(resumed_params, params):
        assert torch.equal(resumed.state[p]["momentum_buffer"], old.state[q]["momentum_buffer"])
    _step_both(params, resumed_params, old, resumed, steps=2, seed=3)
    for p, q in zip(params, resumed_params):  # the steps the old optimizer takes, momentum and all
        torch.testing.assert_close(q, p, atol=1e-6, rtol=1e-5)


@needs_torch_muon
def test_a_run_trained_with_torch_optim_muon_resumes_with_ours(small_text, tmp_path, monkeypatch):
    """A 4-step run whose checkpoint's "muon" entry a real torch.optim.Muon wrote, resumed to 8 steps with ours
    (orthogonalising in bfloat16 as torch's does), gives the losses of an 8-step torch.optim.Muon run."""
    flags = ["--recipe", "modern", "--eval_interval", "4", "--warmup_iters", "100", "--muon_lr", "0.02"]

    def torch_muon(groups, lr, weight_decay, ns_dtype):  # what the previous code built
        return torch.optim.Muon(groups, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")

    with monkeypatch.context() as patched:
        patched.setattr(modern, "Muon", torch_muon)
        assert run_train(small_text, tmp_path / "whole", *flags, "--max_iters", "8") == 0
        assert run_train(small_text, tmp_path / "old", *flags, "--max_iters", "4") == 0
    old = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    assert set(old["muon"]["param_groups"][0]) >= {"ns_coefficients", "ns_steps", "adjust_lr_fn"}  # torch's own
    assert all(set(s) == {"momentum_buffer"} for s in old["muon"]["state"].values())
    monkeypatch.setattr(modern, "pick_muon_dtype", lambda device: (torch.bfloat16, "as torch.optim.Muon"))
    assert run_train(small_text, tmp_path / "old", *flags, "--max_iters", "8", "--resume") == 0
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "old")
    assert [r["step"] for r in resumed] == [0, 4, 8]
    for w, r in zip(whole, resumed):
        assert r["train_loss"] == pytest.approx(w["train_loss"], abs=1e-4)
        assert r["val_loss"] == pytest.approx(w["val_loss"], abs=1e-4)
