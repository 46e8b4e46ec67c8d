"""Hybrid retrieval: fusion by hand-computed cases, weight choice on validation, the searcher, the
never-seen-positive share, and ``gr-toolkit eval --fuse bm25``."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gr_toolkit.cli.main import app
from gr_toolkit.evaluation.metrics import unseen_target_recall
from gr_toolkit.retrieval.hybrid import HybridSearcher, fuse, tune_fusion


def _run(rows):
    items = np.array(rows, dtype=np.int64)
    scores = np.tile(np.arange(items.shape[1], 0, -1, dtype=np.float64), (len(rows), 1))
    return items, scores


def test_rrf_by_hand():
    lexical, generative = _run([[0, 1, 2]]), _run([[2, 0, 3]])
    items, scores = fuse([lexical, generative], "rrf", [1.0, 2.0], k=4)
    expect = {0: 1 / 61 + 2 / 62, 1: 1 / 62, 2: 1 / 63 + 2 / 61, 3: 2 / 63}
    order = sorted(expect, key=lambda i: -expect[i])
    assert items[0].tolist() == order == [2, 0, 3, 1]
    assert np.allclose(scores[0], [expect[i] for i in order])


def test_score_fusion_by_hand():
    lexical = (np.array([[0, 1, 2]]), np.array([[10.0, 6.0, 2.0]]))  # min-max: 1, .5, 0
    generative = (np.array([[1, 3, 0]]), np.array([[-1.0, -2.0, -5.0]]))  # min-max: 1, .75, 0
    items, scores = fuse([lexical, generative], "score", [1.0, 0.5], k=4)
    expect = {0: 1.0 + 0.0, 1: 0.5 + 0.5, 2: 0.0, 3: 0.375}
    assert np.allclose(scores[0][:3], [1.0, 1.0, 0.375]) and items[0].tolist()[:3] == [0, 1, 3]
    assert set(items[0].tolist()) == set(expect)


def test_tune_fusion_picks_the_weight_best_on_validation_and_records_every_candidate():
    # validation: the generative run finds the target (item 5) at rank 1, BM25 never does
    lexical, generative = _run([[0, 1, 2, 3]]), _run([[5, 6, 7, 8]])
    targets = [np.array([5])]
    choice = tune_fusion(generative, lexical, targets, "rrf", weights=(0.0, 1.0, 3.0), metric="recall@1")
    assert [g["weight"] for g in choice.grid] == [0.0, 1.0, 3.0]
    assert choice.grid[0]["valid"]["recall@1"] == 0.0  # weight 0 = BM25 alone
    assert choice.weight == 3.0 and choice.valid["recall@1"] == 1.0  # 1.0 ties items 0 and 5 (lower id first): 3.0 wins
    with pytest.raises(ValueError, match="unknown fusion"):
        tune_fusion(generative, lexical, targets, "combmnz")


class _Fixed:
    def __init__(self, run):
        self.run = run

    def retrieve_text(self, queries, top_k, beam_size):
        return self.run

    def rank(self, queries, k):
        return self.run


def test_hybrid_searcher_is_shaped_like_pyserini():
    s = HybridSearcher(_Fixed(_run([[2, 0, 3]])), _Fixed(_run([[0, 1, 2]])), ["a", "b", "c", "d"], "rrf", 2.0)
    hits = s.search("drill", k=3)
    assert [h.docid for h in hits] == ["c", "a", "d"] and hits[0].score == pytest.approx(1 / 63 + 2 / 61)
    assert list(s.batch_search(["drill"], ["q7"], k=2)) == ["q7"]
    with pytest.raises(ValueError, match="2 queries for 1 qids"):
        s.batch_search(["a", "b"], ["q"])


def test_unseen_target_recall_by_hand():
    ranked = np.array([[4, 1, 0], [2, 3, 5]])
    targets = [np.array([4, 7]), np.array([3])]
    train_targets = [np.array([3]), np.array([1])]
    m = unseen_target_recall(ranked, targets, train_targets, n_items=8, k=2)
    # pairs: (0,4) unseen found, (0,7) unseen missed, (1,3) seen -> 1 of 2 unseen pairs found
    assert m == {"recall@2": 0.5, "n_pairs": 2, "share_of_pairs": pytest.approx(2 / 3)}


@pytest.mark.slow
def test_eval_cli_writes_fused_rows(tmp_path, monkeypatch):
    from gr_toolkit.data.loaders import load_dataset
    from tests.seater_helpers import digit_tree_index

    ds = load_dataset("synthetic")
    digit_tree_index(ds.catalog, k=8).save(tmp_path / "idx")
    res = CliRunner().invoke(app, ["train", "synthetic", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "run"),
                                   "--losses", "gen", "--epochs", "1", "--max_steps_per_epoch", "2",
                                   "--eval_max_examples", "20", "--eval_beam", "5", "--d_model", "16", "--ffn", "32",
                                   "--progress", "false", "--threads", "1", "--text_vocab", "400"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "res" / "synthetic__seater.json"
    res = CliRunner().invoke(app, ["eval", "synthetic", "--run", str(tmp_path / "run"), "--k", "5,10", "--beam", "10",
                                   "--out", str(out), "--fuse", "bm25", "--fusion-weights", "0.5,2",
                                   "--bm25-index", str(tmp_path / "bm25")])
    assert res.exit_code == 0, res.output
    plain = json.loads(out.read_text())
    assert plain["unseen"]["n_pairs"] >= 0 and "share_of_pairs" in plain["unseen"]
    for fusion in ("rrf", "score"):
        rec = json.loads((out.parent / f"synthetic__seater+bm25-{fusion}.json").read_text())
        assert rec["method"] == f"seater+bm25-{fusion}" and rec["fusion"]["selected_on"] == "valid"
        assert [g["weight"] for g in rec["fusion"]["grid"]] == [0.5, 2.0]
        assert rec["fusion"]["generative_weight"] in (0.5, 2.0)
        assert rec["metrics"]["all"]["n"] == plain["metrics"]["all"]["n"]
    bad = CliRunner().invoke(app, ["eval", "synthetic", "--run", str(tmp_path / "run"), "--out", str(out),
                                   "--fuse", "bm25", "--split", "valid"])
    assert bad.exit_code == 2 and "chooses its weights on the validation split" in bad.output
