"""train.py: schedule, batches, download, checkpoints, resume, determinism, config resolution, bad input."""

import functools
from dataclasses import replace
import http.server
import hashlib
import itertools
import math
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import torch

from extras import cli
from extras import dataset
from extras import metrics
import train
from model import PRESETS
from extras import run as run_module
from extras import download
from conftest import TINY_FLAGS, needs, read_metrics, run_train
from extras.dataset import prepare
from extras.checkpoint import load_checkpoint
from extras.evaluation import eval_windows, evaluate
from extras.modern import RECIPES
from model import GPT, GPTConfig
from extras.precision import make_precision


# ---------------------------------------------------------------------------------------------------------------
# get_lr


@pytest.mark.parametrize("warmup, max_iters", [(100, 5000), (10, 50), (0, 20), (30, 30)])
def test_lr_schedule_properties(warmup, max_iters):
    cfg = train.TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=warmup, max_iters=max_iters)
    lrs = [train.get_lr(s, cfg) for s in range(max_iters + 1)]
    assert lrs[0] > 0
    assert max(lrs) == pytest.approx(cfg.learning_rate)
    assert lrs[max(warmup - 1, 0)] == pytest.approx(cfg.learning_rate)  # peak at the end of warmup
    assert lrs[max_iters] == pytest.approx(cfg.min_lr)
    after = lrs[warmup:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # non-increasing after warmup
    assert min(lrs) >= cfg.min_lr or warmup > 0


def test_warmup_rises_linearly():
    cfg = train.TrainConfig(learning_rate=1e-3, warmup_iters=100)
    assert train.get_lr(0, cfg) == pytest.approx(1e-5)
    assert train.get_lr(49, cfg) == pytest.approx(5e-4)


# ---------------------------------------------------------------------------------------------------------------
# data


def _batch(data, block_size, batch_size, generator):
    starts = train.sample_starts(len(data), block_size, batch_size, generator)
    return train.get_batch(data, block_size, starts, torch.device("cpu"))


def test_batches_are_windows_with_targets_shifted_by_one():
    data = np.arange(1000, dtype=np.uint16)
    x, y = _batch(data, 16, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 16) and x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(5, 15, dtype=torch.long))  # contiguous windows


def test_batches_reach_the_last_token_and_no_further():
    data = np.arange(20, dtype=np.uint16)
    seen = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = _batch(data, 8, 4, generator)
        seen.update(y.flatten().tolist())
    assert max(seen) == 19


def test_batches_read_a_memory_map_of_a_wide_vocabulary(tmp_path):
    ids = np.arange(70_000, 70_100, dtype=np.uint32)  # ids past uint16, as a vocabulary of 70k tokens has
    ids.tofile(tmp_path / "ids.bin")
    data = np.memmap(tmp_path / "ids.bin", dtype=np.uint32, mode="r")
    x, y = _batch(data, 10, 3, torch.Generator().manual_seed(0))
    assert x.min() >= 70_000 and torch.equal(y[:, :-1], x[:, 1:])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base_url)."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_good_file(http_dir, tmp_path):
    served, url = http_dir
    payload = "First Citizen:\nBefore we proceed any further, hear me speak.\n".encode()
    (served / "input.txt").write_bytes(payload)
    target = tmp_path / "data" / "corpus.txt"
    download.download(f"{url}/input.txt", target, hashlib.sha256(payload).hexdigest())
    assert target.read_bytes() == payload
    assert sorted(p.name for p in target.parent.iterdir()) == ["corpus.txt"]  # no temporary file left behind


def test_download_wrong_checksum_saves_nothing(http_dir, tmp_path):
    served, url = http_dir
    (served / "input.txt").write_text("not the real corpus", encoding="utf-8")
    target = tmp_path / "data" / "corpus.txt"
    with pytest.raises(dataset.DataError, match="sha256"):
        download.download(f"{url}/input.txt", target, download.DATA_SHA256)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_download_into_a_folder_that_cannot_be_made_names_the_fix(http_dir, tmp_path):
    served, url = http_dir
    payload = b"First Citizen:\n"
    (served / "input.txt").write_bytes(payload)
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    target = blocker / "data" / "corpus.txt"  # its folder cannot be made: a file stands in the way
    with pytest.raises(dataset.DataError, match=r"could not save the corpus to .*--data PATH"):
        download.download(f"{url}/input.txt", target, hashlib.sha256(payload).hexdigest())


def test_download_unreachable_names_the_fix(tmp_path):
    target = tmp_path / "corpus.txt"
    # A port bound but not listening refuses connections, and stays ours (no other process can take it)
    # until the download has failed.
    with socket.socket() as s, pytest.raises(dataset.DataError, match="--data PATH") as e:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        download.download(f"http://127.0.0.1:{port}/input.txt", target, download.DATA_SHA256, timeout=5)
    assert str(target) in str(e.value)
    assert not target.exists()


def test_main_downloads_the_default_corpus_when_missing(http_dir, tmp_path, small_text, monkeypatch, capsys):
    served, url = http_dir
    payload = small_text.read_bytes()
    (served / "input.txt").write_bytes(payload)
    target = tmp_path / "data" / "tinyshakespeare.txt"
    monkeypatch.setattr(run_module, "DEFAULT_DATA", target)
    monkeypatch.setattr(download, "DATA_URL", f"{url}/input.txt")
    monkeypatch.setattr(download, "DATA_SHA256", hashlib.sha256(payload).hexdigest())
    code = train.main(["--out_dir", str(tmp_path / "out"), *TINY_FLAGS, "--max_iters", "2", "--eval_interval", "2"])
    assert code == 0
    assert target.read_bytes() == payload
    assert "downloading" in capsys.readouterr().out


def test_main_offline_without_corpus_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    target = tmp_path / "data" / "tinyshakespeare.txt"
    monkeypatch.setattr(run_module, "DEFAULT_DATA", target)
    with socket.socket() as s:  # bound, not listening: refused, and no other process can take the port
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(download, "DATA_URL", f"http://127.0.0.1:{s.getsockname()[1]}/input.txt")
        code = train.main(["--out_dir", str(tmp_path / "out"), *TINY_FLAGS])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert err.count("\n") == 1 and str(target) in err and "--data" in err


# ---------------------------------------------------------------------------------------------------------------
# configuration


def test_cpu_without_preset_gets_the_quick_defaults():
    cfg, model_cfg = run_module.resolve_configs({}, torch.device("cpu"), train.TrainConfig)
    assert cfg.preset == run_module.CPU_DEFAULTS["preset"]
    assert cfg.max_iters == run_module.CPU_DEFAULTS["max_iters"]
    assert model_cfg.n_layer == PRESETS[run_module.CPU_DEFAULTS["preset"]].n_layer
    cfg, model_cfg = run_module.resolve_configs({"max_iters": 7}, torch.device("cpu"), train.TrainConfig)
    assert cfg.max_iters == 7 and cfg.preset == run_module.CPU_DEFAULTS["preset"]  # a flag overrides one default only


def test_the_quick_run_trains_gpt2_with_adamw_and_modern_is_one_flag_away(monkeypatch, capsys):
    cpu = torch.device("cpu")
    cfg, model_cfg = run_module.resolve_configs({}, cpu, train.TrainConfig)
    assert (cfg.recipe, cfg.optimizer, cfg.learning_rate) == ("gpt2", "adamw", run_module.CPU_DEFAULTS["learning_rate"])
    assert model_cfg == replace(PRESETS["tiny"], block_size=run_module.CPU_DEFAULTS["block_size"])  # GPT-2's model
    assert (cfg.batch_size, cfg.time_budget) == (run_module.CPU_DEFAULTS["batch_size"], run_module.CPU_DEFAULTS["time_budget"])
    assert "recipe=gpt2" in capsys.readouterr().out  # printed at start-up
    cfg, model_cfg = run_module.resolve_configs({"recipe": "modern"}, cpu, train.TrainConfig)  # the 2026 pieces, at their own best
    assert (cfg.recipe, cfg.optimizer, cfg.muon_lr) == ("modern", "muon", run_module.CPU_DEFAULTS_MODERN["muon_lr"])
    assert (model_cfg.position, model_cfg.mlp) == (RECIPES["modern"]["position"], RECIPES["modern"]["mlp"])
    assert (cfg.batch_size, model_cfg.block_size) == (run_module.CPU_DEFAULTS_MODERN["batch_size"],
                                                      run_module.CPU_DEFAULTS_MODERN["block_size"])
    assert cfg.time_budget == run_module.CPU_DEFAULTS["time_budget"]  # the same five minutes
    assert "recipe=modern" in capsys.readouterr().out
    cfg, model_cfg = run_module.resolve_configs({"recipe": "modern", "block_size": 128}, cpu, train.TrainConfig)
    assert model_cfg.block_size == 128 and cfg.batch_size == run_module.CPU_DEFAULTS_MODERN["batch_size"]  # a flag wins
    monkeypatch.delattr(torch.optim, "Muon", raising=False)  # torch 2.4 to 2.8: Muon is ours, so modern stays modern
    cfg, model_cfg = run_module.resolve_configs({"recipe": "modern"}, cpu, train.TrainConfig)
    run_module.validate(cfg, model_cfg)
    assert (cfg.recipe, cfg.optimizer, model_cfg.position) == ("modern", "muon", "rope")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_accelerators_default_to_medium(device):
    cfg, model_cfg = run_module.resolve_configs({}, torch.device(device), train.TrainConfig)
    assert cfg.preset == "medium" and cfg.max_iters == 5000 and cfg.batch_size == 64
    assert (model_cfg.n_layer, model_cfg.n_head, model_cfg.n_embd, model_cfg.block_size) == (6, 6, 384, 256)
    assert model_cfg.dropout == 0.2


def test_explicit_preset_and_model_overrides():
    cfg, model_cfg = run_module.resolve_configs({"preset": "small", "n_layer": 3, "dropout": 0.0}, torch.device("cpu"), train.TrainConfig)
    assert cfg.preset == "small" and cfg.max_iters == 5000
    assert (model_cfg.n_layer, model_cfg.n_embd, model_cfg.dropout) == (3, 256, 0.0)


def test_every_config_field_is_a_flag():
    flags = run_module.parse_flags(["--batch_size", "3", "--n_embd", "48", "--no-bias", "--resume"], train.TrainConfig)
    assert flags == {"batch_size": 3, "n_embd": 48, "bias": False, "resume": True}


# ---------------------------------------------------------------------------------------------------------------
# training runs, checkpoints, resume


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, str, int, float, bool))


def test_training_writes_checkpoints_and_metrics(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "8", "--eval_interval", "4") == 0
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [0, 4, 8]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    vocab_size = len(set(small_text.read_text(encoding="utf-8")))
    assert rows[0]["val_loss"] == pytest.approx(math.log(vocab_size), abs=0.1)  # untrained: a uniform guess
    out = capsys.readouterr().out
    assert "device: cpu" in out and "best val loss" in out
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert _is_plain(last) and _is_plain(best)
    assert last["step"] == 8 and "optimizer" in last and "rng" in last
    assert best["best_val_loss"] == last["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in rows), rel=1e-5)
    assert last["tokenizer"] == {"kind": "char", "data": "".join(sorted(set(small_text.read_text(encoding="utf-8"))))}


def test_checkpoint_round_trip_gives_identical_logits(small_text, tmp_path):
    data = prepare(small_text, tmp_path / "cache")
    cfg = train.TrainConfig(out_dir=str(tmp_path), max_iters=6, eval_interval=3, batch_size=4)
    model_cfg = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    result = train.train(cfg, model_cfg, data, make_precision("cpu"))
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    restored = GPT(GPTConfig(**checkpoint["model_config"]))
    restored.load_state_dict(checkpoint["model"])
    idx = torch.from_numpy(data.train[:16].astype(np.int64))[None]
    assert torch.equal(result["model"].eval()(idx)[0], restored.eval()(idx)[0])


def test_same_seed_same_losses(small_text, tmp_path):
    assert run_train(small_text, tmp_path / "a", "--max_iters", "6", "--eval_interval", "3", "--dropout", "0.1") == 0
    assert run_train(small_text, tmp_path / "b", "--max_iters", "6", "--eval_interval", "3", "--dropout", "0.1") == 0
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [(r["train_loss"], r["val_loss"]) for r in a] == [(r["train_loss"], r["val_loss"]) for r in b]


def _losses(rows):
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in rows]


def test_resume_after_a_crash_gives_the_same_losses(small_text, tmp_path, monkeypatch):
    flags = ["--max_iters", "12", "--eval_interval", "4", "--dropout", "0.1"]
    assert run_train(small_text, tmp_path / "whole", *flags) == 0

    real_get_lr = train.get_lr

    def crash_at_step_10(step, cfg, elapsed=0.0):
        if step == 10:
            raise RuntimeError("simulated crash")  # after the step-8 checkpoint, before the step-12 one
        return real_get_lr(step, cfg, elapsed)

    monkeypatch.setattr(train, "get_lr", crash_at_step_10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_train(small_text, tmp_path / "split", *flags)
    monkeypatch.setattr(train, "get_lr", real_get_lr)
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["step"] == 8
    assert run_train(small_text, tmp_path / "split", *flags, "--resume") == 0
    assert _losses(read_metrics(tmp_path / "split")) == _losses(read_metrics(tmp_path / "whole"))


def test_ctrl_c_saves_and_resume_continues_exactly(small_text, tmp_path, monkeypatch, capsys):
    flags = ["--max_iters", "12", "--eval_interval", "4"]
    assert run_train(small_text, tmp_path / "whole", *flags) == 0

    real_get_lr = train.get_lr

    def ctrl_c_at_step_6(step, cfg, elapsed=0.0):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return real_get_lr(step, cfg, elapsed)

    monkeypatch.setattr(train, "get_lr", ctrl_c_at_step_6)
    assert run_train(small_text, tmp_path / "split", *flags) == cli.EXIT_INTERRUPTED
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(train, "get_lr", real_get_lr)
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["step"] == 7  # step 6 finished first
    assert run_train(small_text, tmp_path / "split", *flags, "--resume") == 0
    assert _losses(read_metrics(tmp_path / "split")) == _losses(read_metrics(tmp_path / "whole"))
    # Ctrl-C wrote the steps since the last log point before saving last.pt: none missing, none repeated.
    split, whole = (_train_log(tmp_path / d) for d in ("split", "whole"))
    assert [(r["step"], r["lr"]) for r in split] == [(r["step"], r["lr"]) for r in whole]


def test_resume_can_extend_a_finished_run(small_text, tmp_path):
    assert run_train(small_text, tmp_path, "--max_iters", "4", "--eval_interval", "2") == 0
    assert run_train(small_text, tmp_path, "--max_iters", "6", "--eval_interval", "2", "--resume") == 0
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 2, 4, 6]


def _files(folder):
    """Every file under folder with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _resume(out_dir, *flags) -> int:
    """train.py --resume on out_dir with the tiny flags, and --data only if flags give it."""
    return train.main(["--out_dir", str(out_dir), *TINY_FLAGS, "--max_iters", "4", "--eval_interval", "2",
                       "--resume", *flags])


@pytest.fixture
def moved_run(small_text, tmp_path, monkeypatch):
    """A 2-step run on a text that was then moved: (out_dir, the text's old path, its new path). Nothing may
    be downloaded from here on, and the default corpus is a path that does not exist."""
    out_dir, old = tmp_path / "out", tmp_path / "mine" / "my text.txt"
    old.parent.mkdir()
    old.write_bytes(small_text.read_bytes())
    assert run_train(old, out_dir, "--max_iters", "2", "--eval_interval", "2") == 0
    new = tmp_path / "moved.txt"
    old.rename(new)
    monkeypatch.setattr(run_module, "DEFAULT_DATA", tmp_path / "data" / "tinyshakespeare.txt")
    monkeypatch.setattr(download, "download", lambda *a, **k: pytest.fail("resume tried to download"))
    return out_dir, old, new


def test_checkpoints_record_the_sha256_of_their_text(moved_run):
    out_dir, _, new = moved_run
    digest = hashlib.sha256(new.read_bytes()).hexdigest()
    for name in ("best.pt", "last.pt"):
        assert torch.load(out_dir / name, weights_only=True)["data_sha256"] == digest


def test_resume_after_the_text_moved_names_the_path_and_data(moved_run, capsys):
    out_dir, old, new = moved_run
    before = _files(out_dir.parent)
    capsys.readouterr()
    assert _resume(out_dir) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(old) in err and "--data PATH" in err
    assert _files(out_dir.parent) == before  # nothing written, nothing downloaded
    # Told where the text is now, it goes on, and last.pt remembers the new place.
    assert _resume(out_dir, "--data", str(new)) == 0
    assert torch.load(out_dir / "last.pt", weights_only=True)["train_config"]["data"] == str(new)
    assert _resume(out_dir, "--max_iters", "6") == 0


def test_resume_with_a_path_from_another_machine_is_one_line(moved_run, capsys):
    out_dir, _, _ = moved_run
    for name in ("last.pt", "best.pt"):  # as if trained on Colab
        checkpoint = torch.load(out_dir / name, weights_only=True)
        checkpoint["train_config"]["data"] = "/content/quill/my text.txt"
        torch.save(checkpoint, out_dir / name)
    before = _files(out_dir.parent)
    capsys.readouterr()
    assert _resume(out_dir) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/content/quill/my text.txt" in err and "--data" in err
    assert _files(out_dir.parent) == before and not os.path.exists("/content/quill")


@pytest.mark.parametrize("where", ["--data", "the saved path"])
def test_resume_refuses_a_text_other_than_the_one_trained_on(moved_run, tmp_path, capsys, where):
    out_dir, old, new = moved_run
    other = tmp_path / "other.txt"  # the same characters, another text
    other.write_text(new.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    if where == "the saved path":
        other.rename(old)
    before = _files(out_dir.parent)
    capsys.readouterr()
    assert _resume(out_dir, *(["--data", str(other)] if where == "--data" else [])) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other if where == "--data" else old) in err
    assert "not the text this run was trained on" in err and "--data PATH" in err and "--overwrite" in err
    assert _files(out_dir.parent) == before


def test_resume_on_the_default_corpus_never_downloads_another_text(moved_run, capsys):
    out_dir, _, _ = moved_run
    checkpoint = torch.load(out_dir / "last.pt", weights_only=True)
    checkpoint["train_config"]["data"] = None  # trained on the default corpus, which is missing here
    torch.save(checkpoint, out_dir / "last.pt")
    before = _files(out_dir.parent)
    capsys.readouterr()
    # Its sha256 is not Tiny Shakespeare's, so downloading that could not bring the text back.
    assert _resume(out_dir) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(run_module.DEFAULT_DATA) in err and "--data" in err
    assert _files(out_dir.parent) == before


def test_a_checkpoint_without_the_sha256_resumes_with_a_note(moved_run, capsys):
    out_dir, old, new = moved_run
    checkpoint = torch.load(out_dir / "last.pt", weights_only=True)
    del checkpoint["data_sha256"]  # saved before checkpoints kept it
    torch.save(checkpoint, out_dir / "last.pt")
    capsys.readouterr()
    assert _resume(out_dir, "--data", str(new)) == 0
    note = f"note: last.pt was saved before checkpoints kept the text's sha256, so {new} cannot be checked"
    assert note in capsys.readouterr().out


def test_a_new_run_does_not_overwrite_a_saved_one(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2") == 0
    before = (tmp_path / "last.pt").read_bytes()
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2") == cli.EXIT_USAGE
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2", "--overwrite") == 0


# ---------------------------------------------------------------------------------------------------------------
# the train log (train_log.csv) and the loss plot


def _train_log(out_dir):
    return metrics.read_metrics(out_dir / "train_log.csv")


def _record_steps(monkeypatch) -> list:
    """Record, for every step, the lr the loop set on the optimizer and the loss it logged for the step."""
    seen, lrs, real_set_lr, real_add = [], [], train.set_lr, train.TrainLog.add

    def set_lr(optimizers, fraction):
        real_set_lr(optimizers, fraction)
        lrs.append(optimizers[0].param_groups[0]["lr"])

    def add(log, step, lr, loss, *args, **kwargs):
        seen.append((lrs[-1], loss.item()))
        return real_add(log, step, lr, loss, *args, **kwargs)

    monkeypatch.setattr(train, "set_lr", set_lr)
    monkeypatch.setattr(train.TrainLog, "add", add)
    return seen


def test_train_log_has_every_steps_lr_and_the_mean_loss_at_each_log_point(small_text, tmp_path, monkeypatch):
    seen = _record_steps(monkeypatch)
    assert run_train(small_text, tmp_path, "--max_iters", "12", "--warmup_iters", "5", "--log_interval", "4",
                     "--eval_interval", "6") == 0
    rows = _train_log(tmp_path)
    cfg = train.TrainConfig(**load_checkpoint(tmp_path / "last.pt")["train_config"])
    assert [r["step"] for r in rows] == list(range(1, 13))  # steps taken, as in metrics.csv
    assert [r["lr"] for r in rows] == pytest.approx([train.get_lr(step, cfg) for step in range(12)], rel=1e-5)
    assert [r["lr"] for r in rows] == pytest.approx([lr for lr, _ in seen], rel=1e-5)
    # A loss at every log point (4, 8, 12) and at the evaluation at step 6, where last.pt is saved; each the mean
    # over the steps since the previous one, not the last batch's loss.
    logged = {int(r["step"]): r["train_loss"] for r in rows if not math.isnan(r["train_loss"])}
    assert sorted(logged) == [4, 6, 8, 12]
    losses = [loss for _, loss in seen]
    for previous, step in [(0, 4), (4, 6), (6, 8), (8, 12)]:
        assert logged[step] == pytest.approx(np.mean(losses[previous:step]), rel=1e-5)


def test_train_log_records_the_lr_the_clock_chose(small_text, tmp_path, monkeypatch):
    seen = _record_steps(monkeypatch)
    # A clock that reads 0.05 s more at every look: about 20 steps fit the budget, however busy the machine is.
    ticks = itertools.count()
    monkeypatch.setattr(train.RunClock, "elapsed", lambda clock: clock.elapsed_before + 0.05 * next(ticks))
    assert run_train(small_text, tmp_path, "--time_budget", "1", "--max_iters", "100000", "--warmup_iters", "0",
                     "--eval_interval", "100000") == 0
    rows = _train_log(tmp_path)
    assert len(rows) == len(seen) > 1
    assert [r["lr"] for r in rows] == pytest.approx([lr for lr, _ in seen], rel=1e-5)
    # By steps alone the schedule would hardly have moved (a few hundred of 100,000); the clock took it down.
    cfg = train.TrainConfig(**load_checkpoint(tmp_path / "last.pt")["train_config"])
    assert rows[-1]["lr"] < train.get_lr(len(rows) - 1, cfg) / 2


def test_resume_keeps_the_train_log_up_to_the_checkpoint(small_text, tmp_path, monkeypatch):
    flags = ["--max_iters", "12", "--eval_interval", "4", "--log_interval", "3", "--dropout", "0.1"]
    assert run_train(small_text, tmp_path / "whole", *flags) == 0

    real_get_lr = train.get_lr

    def crash_at_step_10(step, cfg, elapsed=0.0):
        if step == 10:
            raise RuntimeError("simulated crash")  # after the step-8 checkpoint and the step-9 log point
        return real_get_lr(step, cfg, elapsed)

    monkeypatch.setattr(train, "get_lr", crash_at_step_10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_train(small_text, tmp_path / "split", *flags)
    monkeypatch.setattr(train, "get_lr", real_get_lr)
    assert [r["step"] for r in _train_log(tmp_path / "split")] == list(range(1, 10))  # one row past last.pt's step 8
    assert run_train(small_text, tmp_path / "split", *flags, "--resume") == 0
    # Rows up to step 8 kept, step 9 dropped and written again: the same file as the run never stopped.
    assert [r["step"] for r in _train_log(tmp_path / "split")] == list(range(1, 13))
    assert (tmp_path / "split" / "train_log.csv").read_text() == (tmp_path / "whole" / "train_log.csv").read_text()


def _drew(fig, x, y) -> bool:
    """Whether any axes of fig holds a line through exactly these points."""
    return any(list(line.get_xdata()) == list(x) and list(line.get_ydata()) == pytest.approx(list(y))
               for ax in fig.axes for line in ax.get_lines())


@needs("matplotlib")
def test_loss_png_draws_the_train_log_and_still_plots_a_run_without_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures, real_savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), real_savefig(fig, *a, **k))[1])
    metrics_path = tmp_path / "metrics.csv"
    metrics.restart_csv(metrics_path, metrics.METRICS_COLUMNS, keep_up_to=None)
    for step, train_loss, val_loss, lr in [(0, 4.2, 4.2, 1e-4), (20, 2.5, 2.6, 1e-3), (40, 2.0, 2.2, 2e-4)]:
        metrics.append_metrics(metrics_path, [step, train_loss, val_loss, 6.0, lr, 1000.0, 1.0])

    # A run from before train_log.csv: the evaluations alone, the lr where they stood.
    metrics.plot_metrics(metrics_path, tmp_path / "old.png", 256)
    assert _drew(figures[0], [0, 20, 40], [4.2, 2.6, 2.2])  # val loss
    assert _drew(figures[0], [0, 20, 40], [1e-4, 1e-3, 2e-4])

    # With the log: its lr at every step and its train loss at every log point.
    lrs = [round(1e-3 * min(s / 10, 1), 6) for s in range(1, 41)]
    log_losses = [3.5, 2.6, 2.3, 2.1]
    metrics.restart_csv(tmp_path / "train_log.csv", metrics.TRAIN_LOG_COLUMNS, keep_up_to=None)
    for i, loss in enumerate(log_losses):  # a row per step, the mean loss of the ten on the last
        metrics.append_rows(tmp_path / "train_log.csv", [[s, lrs[s - 1], loss if s % 10 == 0 else ""] for s in range(10 * i + 1, 10 * i + 11)])
    metrics.plot_metrics(metrics_path, tmp_path / "new.png", 256)
    assert _drew(figures[1], range(1, 41), lrs)
    assert _drew(figures[1], [10, 20, 30, 40], log_losses)
    for png in ("old.png", "new.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# ---------------------------------------------------------------------------------------------------------------
# the time budget and evaluation


def test_time_budget_schedule_follows_whichever_is_further_along():
    cfg = train.TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=1000, time_budget=100.0)
    assert train.get_lr(5, cfg, elapsed=90.0) == train.get_lr(5, cfg, elapsed=0.0)  # warmup goes by steps
    assert train.get_lr(20, cfg, elapsed=50.0) == pytest.approx(train.get_lr(505, cfg))  # time is further along
    assert train.get_lr(800, cfg, elapsed=1.0) == train.get_lr(800, cfg)  # steps are further along
    assert train.get_lr(20, cfg, elapsed=100.0) == pytest.approx(cfg.min_lr)  # fully annealed when time is up
    assert train.get_lr(20, cfg, elapsed=250.0) == pytest.approx(cfg.min_lr)
    lrs = [train.get_lr(10 + i, cfg, elapsed=i * 0.5) for i in range(300)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_a_time_budget_ends_the_run_annealed(small_text, tmp_path, capsys):
    t0 = time.perf_counter()
    # No warmup: warmup goes by steps, and a busy machine may fit only one step in the budget.
    code = run_train(small_text, tmp_path, "--max_iters", "100000", "--time_budget", "3", "--eval_interval", "1000",
                     "--warmup_iters", "0")
    wall_s = time.perf_counter() - t0
    out = capsys.readouterr().out
    rows = read_metrics(tmp_path)
    assert code == 0
    assert "spent the time budget of 3s" in out
    assert 0 < rows[-1]["step"] < 100000
    assert rows[-1]["lr"] == pytest.approx(train.TrainConfig.min_lr)  # the schedule reached its end
    assert rows[-1]["step"] % 1000 != 0 or rows[-1]["step"] == 0  # the last evaluation came from the budget
    # Spent, and counted in real seconds: no more than the run took (however slow a busy machine makes it).
    assert 3 <= rows[-1]["elapsed_s"] <= wall_s


def test_the_cpu_default_run_trains_end_to_end(small_text, tmp_path, capsys):
    # `python train.py` on a CPU, no --preset: the quick run's settings, only its five minutes cut to three
    # seconds. Evaluated at step 0 and when the time is up, best.pt written, a sample printed.
    code = train.main(["--data", str(small_text), "--out_dir", str(tmp_path), "--device", "cpu",
                       "--time_budget", "3"])
    out = capsys.readouterr().out
    assert code == 0
    settings = ", ".join(f"{k}={v}" for k, v in run_module.CPU_DEFAULTS.items())
    assert f"CPU and no --preset: using a quick run ({settings}); pass --preset" in out
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows][0] == 0 and rows[-1]["step"] > 0
    assert all(math.isfinite(r["val_loss"]) for r in rows)
    assert "spent the time budget of 3s" in out
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["train_config"]["preset"] == "tiny" and best["model_config"]["block_size"] == 64
    sample = out.split("sample from the final model:\n", 1)[1]
    assert len(sample) >= train.TrainConfig.sample_chars  # 300 characters, one per token


def _windows(data, block_size, batch_size=64, rank=0, world_size=1):
    batches = list(eval_windows(data, block_size, batch_size, rank, world_size))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_eval_windows_cover_every_target_once():
    data = np.arange(23, dtype=np.uint16)
    x, y = _windows(data, 5)
    assert x.shape == y.shape == (5, 5)  # 22 targets need 5 windows of 5
    assert y[y != -1].tolist() == list(range(1, 23))
    assert torch.equal(x[y != -1], torch.arange(22))


def test_eval_windows_shard_over_ranks_and_batch_without_changing_the_windows():
    data = np.arange(1000, dtype=np.uint16)
    x, y = _windows(data, 16)
    for world_size in (2, 3):
        for rank in range(world_size):
            xr, yr = _windows(data, 16, batch_size=5, rank=rank, world_size=world_size)
            assert torch.equal(xr, x[rank::world_size]) and torch.equal(yr, y[rank::world_size])


def test_eval_windows_read_only_a_batch_of_windows_at_a_time():
    class CountingIds(np.ndarray):  # records how many tokens each read of the "memory map" asks for
        reads = []

        def __getitem__(self, index):
            out = super().__getitem__(index)
            CountingIds.reads.append(np.size(out))
            return out

    ids = np.arange(100_001, dtype=np.uint16).view(CountingIds)
    batches = eval_windows(ids, 32, batch_size=8)
    n_targets = sum(int((y != -1).sum()) for _, y in batches)
    assert n_targets == 100_000
    assert max(CountingIds.reads) <= 8 * 33  # never more than one batch of windows (plus their last targets)


def test_evaluate_equals_the_mean_loss_over_the_whole_split():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(11, (50,))
    # The same number by brute force: each target scored with its own window's context.
    losses = []
    for start in range(0, 49, 8):
        logits, _ = model.eval()(data[start : min(start + 8, 49)][None])
        targets = data[start + 1 : min(start + 9, 50)]
        losses.append(torch.nn.functional.cross_entropy(logits[0], targets, reduction="sum"))
    expected = (sum(losses) / 49).item()
    model.train()
    precision = make_precision("cpu")
    ids = data.numpy().astype(np.uint16)
    assert evaluate(model, eval_windows(ids, 8, batch_size=3), precision) == pytest.approx(expected, rel=1e-5)
    assert model.training  # mode restored
    assert evaluate(model, eval_windows(ids, 8, batch_size=7), precision) == pytest.approx(expected, rel=1e-5)
