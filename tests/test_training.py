import json

import numpy as np
import pytest
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.data.types import DataError
from gr_toolkit.losses import build_losses
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner
from gr_toolkit.training.config import TrainConfig
from gr_toolkit.training.sft import train_model, train_step
from tests.seater_helpers import digit_tree_index

TINY = SeaterConfig(d_model=16, heads=2, ffn=32, dropout=0.1)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    ds = make_synthetic(seed=0, n_items=40, n_queries=120, n_events=600, n_users=150, kind="history")
    idx = digit_tree_index(ds.catalog, k=4)
    fz = SourceFeaturizer(FeaturizerConfig()).fit(ds)
    return ds, idx, fz


def _cfg(**kw):
    base = dict(epochs=2, batch_size=64, eval_beam=8, progress=False, max_steps_per_epoch=4, threads=1,
                eval_max_examples=40)
    return TrainConfig(**{**base, **kw})


def _fresh(idx, fz, cfg, seed=0):
    torch.manual_seed(seed)
    m = SeaterModel.build(idx, fz, TINY)
    return m, build_losses(cfg.loss_names(), m.hidden_size, cfg.loss_options())


def test_a_few_steps_reduce_the_loss(setup):
    ds, idx, fz = setup
    cfg = _cfg()
    m, losses = _fresh(idx, fz, cfg)
    m.eval()  # no dropout: the same batch must get a lower loss after a few steps
    opt = torch.optim.Adam(list(m.parameters()) + list(losses[2].parameters()), lr=1e-2)
    ex, items = ds.train.pairs()
    sel = np.arange(64)

    def total():
        torch.manual_seed(0)  # same rank-loss negatives each time
        parts = train_step(m, idx, ds, fz, losses, ex[sel], items[sel], torch.device("cpu"))
        return sum(lo.weight * parts[lo.name] for lo in losses)

    before = float(total().detach())
    for _ in range(15):
        opt.zero_grad()
        total().backward()
        opt.step()
    assert float(total().detach()) < 0.8 * before


def test_train_save_load_retrieve_round_trip(setup, tmp_path):
    ds, idx, fz = setup
    cfg = _cfg()
    m, losses = _fresh(idx, fz, cfg)
    res = train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=lambda *_: None)
    assert res.epochs_done == 2 and res.best_epoch in (1, 2)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["status"] == "finished" and man["model"] == "seater"
    hist = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2] and "recall@10" in hist[0]["valid"]
    runner = GenerativeRetrieverRunner.load(tmp_path / "run", device="cpu")
    items, scores = runner.retrieve(ds.test, top_k=5, beam_size=8, batch_size=32)
    assert items.shape == (len(ds.test), 5)
    assert ((items >= 0) & (items < len(ds.catalog))).all()
    assert all(len(set(r)) == 5 for r in items.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    # the loaded model reproduces the in-memory best model
    m.eval()
    batch = fz.batch(ds.test, np.arange(4))
    torch.testing.assert_close(runner.model.encode(batch)["states"], m.encode(batch)["states"])
    with pytest.raises(DataError, match="cannot take query text"):
        runner.retrieve_text(["red shoes"])
    out = runner.evaluate(ds, "test", ks=[1, 5], beam_size=8)
    assert set(out["metrics"]) == {"all", "head", "torso", "tail"}
    assert 0.0 <= out["metrics"]["all"]["recall@5"] <= 1.0


def test_resume_continues_from_the_saved_epoch(setup, tmp_path):
    ds, idx, fz = setup
    logs = []
    # uninterrupted 2 epochs
    cfg2 = _cfg(patience=0)
    m_full, l_full = _fresh(idx, fz, cfg2)
    train_model(m_full, idx, ds, fz, l_full, cfg2, tmp_path / "full", log=lambda *_: None)
    # 1 epoch, then "restart" with epochs=2 in the same directory
    m1, l1 = _fresh(idx, fz, cfg2)
    train_model(m1, idx, ds, fz, l1, _cfg(epochs=1, patience=0), tmp_path / "part", log=lambda *_: None)
    m2, l2 = _fresh(idx, fz, cfg2, seed=123)  # different init: must be overwritten by the checkpoint
    res = train_model(m2, idx, ds, fz, l2, cfg2, tmp_path / "part", log=logs.append)
    assert any("after epoch 1" in str(x) for x in logs)
    assert res.epochs_done == 2
    hist = [json.loads(x) for x in (tmp_path / "part" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]
    full_hist = [json.loads(x) for x in (tmp_path / "full" / "history.jsonl").read_text().splitlines()]
    assert hist[1]["loss_total"] == pytest.approx(full_hist[1]["loss_total"], rel=1e-5)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_resume_refuses_a_different_setup_and_bad_index(setup, tmp_path):
    ds, idx, fz = setup
    cfg = _cfg(epochs=1)
    m, losses = _fresh(idx, fz, cfg)
    train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=lambda *_: None)
    with pytest.raises(ArtifactError, match="different setup"):
        train_model(m, idx, ds, fz, losses, _cfg(epochs=1, lr=0.5), tmp_path / "run", log=lambda *_: None)
    other = make_synthetic(seed=1, n_items=30, n_queries=50, n_events=200, n_users=60, kind="history")
    with pytest.raises(ArtifactError, match="different catalog"):
        train_model(m, idx, other, fz, losses, cfg, tmp_path / "run2", log=lambda *_: None)
    with pytest.raises(ArtifactError, match="does not exist"):
        GenerativeRetrieverRunner.load(tmp_path / "nope")


def _scripted_validation(monkeypatch, values):
    """Replace validation with a fixed sequence of recall@10 values, to force plateaus where wanted."""
    it = iter(values)
    monkeypatch.setattr("gr_toolkit.training.sft.validate_model", lambda *a, **k: {"recall@10": next(it)})


def _history(run):
    return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]


def test_lr_decay_on_plateau_returns_to_the_best_weights(setup, tmp_path, monkeypatch):
    ds, idx, fz = setup
    _scripted_validation(monkeypatch, [0.5, 0.4, 0.4, 0.3])
    cfg = _cfg(epochs=4, patience=1, lr_decays=1, lr_decay=0.5)
    m, losses = _fresh(idx, fz, cfg)
    logs = []
    res = train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=logs.append)
    # epoch 2 is a plateau -> decay to lr/2 from epoch 1's weights; epoch 3 is another -> no decays left, stop
    assert [h["lr"] for h in _history(tmp_path / "run")] == [1e-3, 1e-3, 5e-4]
    assert res.stopped_early and res.best_epoch == 1 and res.epochs_done == 3
    # the decay is announced after the epoch that triggered it
    i = next(i for i, x in enumerate(logs) if "back to the best weights (epoch 1), lr 0.0005" in str(x))
    assert str(logs[i - 1]).startswith("epoch 2:") and str(logs[i + 1]).startswith("epoch 3:")


def test_stopped_run_continued_with_lr_decays_matches_one_uninterrupted_run(setup, tmp_path, monkeypatch):
    ds, idx, fz = setup
    scores = [0.5, 0.4, 0.6, 0.3]
    _scripted_validation(monkeypatch, scores)
    cfg = _cfg(epochs=4, patience=1, lr_decays=1, lr_decay=0.5)
    m, losses = _fresh(idx, fz, cfg)
    train_model(m, idx, ds, fz, losses, cfg, tmp_path / "once", log=lambda *_: None)

    _scripted_validation(monkeypatch, scores)
    m, losses = _fresh(idx, fz, cfg)
    res = train_model(m, idx, ds, fz, losses, _cfg(epochs=4, patience=1, lr_decay=0.5), tmp_path / "twice",
                      log=lambda *_: None)
    assert res.stopped_early and res.epochs_done == 2
    m, losses = _fresh(idx, fz, cfg, seed=7)
    res = train_model(m, idx, ds, fz, losses, cfg, tmp_path / "twice", log=lambda *_: None)
    assert res.best_epoch == 3 and res.epochs_done == 4
    once, twice = _history(tmp_path / "once"), _history(tmp_path / "twice")
    assert [h["lr"] for h in twice] == [h["lr"] for h in once] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert [h["loss_total"] for h in twice] == pytest.approx([h["loss_total"] for h in once], rel=1e-5)


def test_lr_decay_rejects_a_factor_outside_0_1(setup, tmp_path):
    ds, idx, fz = setup
    cfg = _cfg(lr_decays=2, lr_decay=1.5)
    m, losses = _fresh(idx, fz, cfg)
    with pytest.raises(ValueError, match="lr_decay in \\(0, 1\\).*lr_decay=1.5"):
        train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_init_token_vectors_are_checked_before_the_run_is_written(setup, tmp_path):
    ds, idx, fz = setup
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, TINY.d_model), dtype=np.float32))
    cfg = _cfg(epochs=1, init_token_vectors=str(bad))
    m, losses = _fresh(idx, fz, cfg)
    with pytest.raises(ValueError, match=f"bad.npy: 3 rows but the catalog has {idx.n_items} items"):
        train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=lambda *_: None)
    assert not (tmp_path / "run").exists()
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).normal(size=(idx.n_items, TINY.d_model)).astype(np.float32))
    logs = []
    cfg = _cfg(epochs=1, init_token_vectors=str(good))
    m, losses = _fresh(idx, fz, cfg)
    train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=logs.append)
    assert any(f"{idx.vocab_size:,} identifier-token embeddings start from" in str(x) for x in logs)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["train_config"]["init_token_vectors"] == str(good)


def test_weight_average_matches_a_hand_computed_ema_and_swaps_back():
    from gr_toolkit.training.ema import WeightAverage

    p = torch.nn.Parameter(torch.tensor([0.0, 2.0]))
    ema = WeightAverage([("p", p)], decay=0.5)
    with torch.no_grad():
        p.copy_(torch.tensor([1.0, 1.0]))
    ema.update()  # warm-up decay min(0.5, 1/10) = 0.1: shadow = 0.1 * [0, 2] + 0.9 * [1, 1]
    torch.testing.assert_close(ema.shadow[0], torch.tensor([0.9, 1.1]))
    for _ in range(20):  # past the warm-up the decay is 0.5; the shadow converges to the fixed weights
        ema.update()
    assert ema.current_decay() == 0.5
    torch.testing.assert_close(ema.shadow[0], torch.tensor([1.0, 1.0]), atol=1e-5, rtol=0)
    with torch.no_grad():
        p.copy_(torch.tensor([3.0, 5.0]))
    with ema.averaged():
        torch.testing.assert_close(p.detach(), torch.tensor([1.0, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(p.detach(), torch.tensor([3.0, 5.0]))  # raw weights back after the block
    with pytest.raises(ValueError, match="ema_decay must be in \\(0, 1\\).*1.5"):
        WeightAverage([("p", p)], decay=1.5)


def test_ema_run_saves_the_average_and_resumes_it_exactly(setup, tmp_path, monkeypatch):
    import itertools

    from safetensors.torch import load_file

    ds, idx, fz = setup
    rising = itertools.count(1)  # every epoch is a new best, so the best model is the last epoch's
    monkeypatch.setattr("gr_toolkit.training.sft.validate_model", lambda *a, **k: {"recall@10": next(rising) / 100})
    cfg2 = _cfg(patience=0, ema_decay=0.9)
    m_full, l_full = _fresh(idx, fz, cfg2)
    train_model(m_full, idx, ds, fz, l_full, cfg2, tmp_path / "full", log=lambda *_: None)
    m1, l1 = _fresh(idx, fz, cfg2)
    train_model(m1, idx, ds, fz, l1, _cfg(epochs=1, patience=0, ema_decay=0.9), tmp_path / "part", log=lambda *_: None)
    m2, l2 = _fresh(idx, fz, cfg2, seed=5)
    train_model(m2, idx, ds, fz, l2, cfg2, tmp_path / "part", log=lambda *_: None)
    full_ck = tmp_path / "full" / "checkpoint"
    raw, avg = load_file(str(full_ck / "model.safetensors")), load_file(str(full_ck / "ema.safetensors"))
    assert set(avg) >= {f"model.{k}" for k in raw}
    # the average is not the raw weights, and the best model on disk (epoch 2) is the average, not the raw weights
    assert any(not torch.allclose(raw[k], avg[f"model.{k}"]) for k in raw)
    best = load_file(str(tmp_path / "full" / "model.safetensors"))
    for k in raw:
        torch.testing.assert_close(best[k], avg[f"model.{k}"])
    # stopping after epoch 1 and resuming continues the same average
    part_avg = load_file(str(tmp_path / "part" / "checkpoint" / "ema.safetensors"))
    for k in avg:
        torch.testing.assert_close(avg[k], part_avg[k], atol=1e-6, rtol=1e-5)
    # a different decay is a different run
    m3, l3 = _fresh(idx, fz, cfg2)
    with pytest.raises(ArtifactError, match="ema_decay"):
        train_model(m3, idx, ds, fz, l3, _cfg(patience=0, ema_decay=0.99), tmp_path / "part", log=lambda *_: None)
