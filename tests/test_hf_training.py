"""SFT and DPO on tiny HF models: the loss falls, trl runs on CPU, plug-in losses attach, DPO moves
the policy towards the chosen identifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr_toolkit.training.dpo import DPOTrainConfig, dpo_loss, pair_logprobs, train_preferences
from gr_toolkit.training.hf_sft import HFSFTConfig, train_sft
from gr_toolkit.training.preferences import PreferencePairs
from tests.hf_helpers import (
    HistoryFeaturizer,
    learnable_examples,
    tiny_causal,
    tiny_t5,
    tree_index,
    variable_index,
)


@pytest.fixture(scope="module")
def data():
    return tree_index(), HistoryFeaturizer(), learnable_examples(16)


def _first_last(history, key="loss", k=2):
    vals = [h[key] for h in history]
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


def test_t5_sft_loss_falls_with_seater_plugins(data):
    index, fz, ex = data
    model = tiny_t5(index, seed=0)
    cfg = HFSFTConfig(losses="gen,align,rank", max_steps=10, batch_size=16, lr=5e-3, device="cpu")
    out = train_sft(model, index, fz, ex, cfg)
    first, last = _first_last(out["history"])
    assert out["steps"] == 10 and last < first
    assert {"gen", "align", "rank"} <= set(out["history"][0])


def test_causal_sft_with_trl_loss_falls_and_plugins_run(data, tmp_path):
    index, fz, ex = data
    model = tiny_causal(index, seed=0)
    cfg = HFSFTConfig(losses="gen,align", max_steps=8, batch_size=16, lr=5e-3, log_every=1, device="cpu")
    out = train_sft(model, index, fz, ex, cfg, tmp_path / "sft")
    first, last = _first_last(out["history"])
    assert out["steps"] == 8 and last < first
    assert not any(p.name == "gen" for p in out["plugins"])  # trl's own loss is the generation loss


def test_causal_sft_generic_loop_variable_length(tmp_path):
    index, fz, ex = variable_index(), HistoryFeaturizer(), learnable_examples(16, seed=1)
    model = tiny_causal(index, arch="llama", seed=1)
    out = train_sft(model, index, fz, ex, HFSFTConfig(losses="gen", max_steps=8, batch_size=16, lr=5e-3,
                                                      use_trl=False, device="cpu"))
    first, last = _first_last(out["history"])
    assert last < first


def _pairs(ex, n_items=16):
    chosen = np.array([int(t[0]) for t in ex.targets])
    return PreferencePairs(np.arange(len(ex)), chosen, (chosen + 5) % n_items)


def test_own_dpo_on_t5_raises_chosen_over_rejected(data):
    index, fz, ex = data
    model = tiny_t5(index, seed=2)
    pairs = _pairs(ex)
    dev = torch.device("cpu")
    with torch.no_grad():
        c0, r0 = pair_logprobs(model.eval(), index, fz, ex, pairs, np.arange(len(pairs)), dev, "allowed")
    out = train_preferences(model, index, fz, ex, pairs, DPOTrainConfig(max_steps=8, batch_size=16, lr=5e-3,
                                                                        beta=0.5, device="cpu"))
    first, last = _first_last(out["history"])
    assert out["history"][0]["loss"] == pytest.approx(np.log(2), abs=1e-4)  # policy == reference at step 1
    assert last < first
    with torch.no_grad():
        c1, r1 = pair_logprobs(model.eval(), index, fz, ex, pairs, np.arange(len(pairs)), dev, "allowed")
    assert float(((c1 - c0) - (r1 - r0)).mean()) > 0


def test_trl_dpo_on_causal_lm_with_frozen_copy_reference(data, tmp_path):
    index, fz, ex = data
    model = tiny_causal(index, seed=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = train_preferences(model, index, fz, ex, _pairs(ex), DPOTrainConfig(max_steps=4, batch_size=8, lr=5e-3,
                                                                             log_every=1, device="cpu"),
                            tmp_path / "dpo")
    assert out["steps"] == 4
    losses = [h["loss"] for h in out["history"]]
    assert losses[0] == pytest.approx(np.log(2), abs=1e-3) and losses[-1] < losses[0]
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_dpo_loss_hand_value():
    pc, pr = torch.tensor([-1.0]), torch.tensor([-2.0])
    rc, rr = torch.tensor([-1.5]), torch.tensor([-1.5])
    # margin = (-1 + 1.5) - (-2 + 1.5) = 1; loss = -log sigmoid(beta * 1) = log(1 + e^-0.5)
    assert float(dpo_loss(pc, pr, rc, rr, beta=0.5)) == pytest.approx(np.log1p(np.exp(-0.5)), rel=1e-6)


def test_run_dpo_stage_on_a_finished_sft_run(tmp_path, tiny_history_dataset):
    """The ``--stage dpo`` entry point: SFT run dir in, a new loadable run dir out."""
    import dataclasses
    import json

    from gr_toolkit.data.featurize import SourceFeaturizer
    from gr_toolkit.identifiers.codes import CodeIndex
    from gr_toolkit.models.hf_seq2seq import HFSeq2SeqRetriever, T5RetrieverConfig
    from gr_toolkit.training.dpo import run_dpo_stage
    from gr_toolkit.training.run import RunDir

    ds = tiny_history_dataset
    n = len(ds.catalog)
    codes = np.stack([np.arange(n) // 20, 15 + np.arange(n) % 20], axis=1)
    vocab = 35
    index = CodeIndex("rq", codes, np.full(n, 2), vocab, np.full(vocab, -1), (np.arange(vocab) >= 15).astype(np.int64),
                      ds.catalog.fingerprint())
    fz = SourceFeaturizer().fit(ds)
    cfg = T5RetrieverConfig(d_model=16, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=32, dropout=0.0)
    model = HFSeq2SeqRetriever.build(index, fz, cfg)
    run = RunDir(tmp_path / "sft")
    run.create(model_name="t5", model_config=dataclasses.asdict(cfg), train_config={}, dataset=ds.name,
               catalog_fingerprint=ds.catalog.fingerprint(), index=index, index_source=None, featurizer=fz)
    run.save_best(model)
    run.update_manifest(status="finished")
    out = run_dpo_stage(tmp_path / "sft", ds, DPOTrainConfig(pairs="mined", mine_beam=4, mine_max_examples=24,
                                                             max_steps=2, batch_size=12, device="cpu"), log=lambda *_: None)
    man = json.loads((out / "manifest.json").read_text())
    assert out == tmp_path / "sft-dpo" and man["stage"] == "dpo" and man["dpo"]["pairs"] > 0
    reloaded = HFSeq2SeqRetriever.build(index, fz, cfg)
    RunDir(out).load_best(reloaded)
    changed = any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values(),
                                                         strict=True))
    assert changed  # DPO moved the weights, and the new run holds them
    with pytest.raises(Exception, match="not empty"):
        run_dpo_stage(tmp_path / "sft", ds, DPOTrainConfig(pairs="mined", max_steps=1, device="cpu"), out_dir=out)
