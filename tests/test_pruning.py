import numpy as np
import pytest

from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import load_index
from gr_toolkit.identifiers.pruning import choose_adaptive_k, plan_pruning, pruned_level_codes
from gr_toolkit.identifiers.rq import ResidualQuantizationScheme, RQConfig, build_code_index
from gr_toolkit.identifiers.sandglass import diagnose, is_sandglass


def _sandglass_codes(n=400, seed=0):
    """Level-aligned codes with an hourglass: even level 0/2 over 8, level 1 dominated by entries 0 and 1."""
    rng = np.random.default_rng(seed)
    mid = rng.choice(8, size=n, p=[0.45, 0.3, 0.05, 0.05, 0.05, 0.04, 0.03, 0.03])
    return np.stack([rng.integers(0, 8, n), mid, rng.integers(0, 8, n)], axis=1)


def _fp(n):
    return Catalog("c", [f"i{i}" for i in range(n)]).fingerprint()


def _index(codes, **cfg):
    return build_code_index(codes, [8, 8, 8], _fp(len(codes)), RQConfig(codebook=8, **cfg))


def _unique(idx):
    rows = np.concatenate([idx.codes, idx.lengths[:, None]], axis=1)
    return len(np.unique(rows, axis=0)) == idx.n_items


def test_hand_computed_adaptive_k():
    # counts (6,1,1,1): Gini 15/36; without the top entry (1,1,1): 0
    k, rem = choose_adaptive_k(np.array([1, 6, 1, 1]), target_gini=0.1, max_k=3)
    assert (k, rem) == (1, 0.0)
    k, _ = choose_adaptive_k(np.array([1, 6, 1, 1]), target_gini=0.5, max_k=3)
    assert k == 0  # already below the target: nothing to prune
    k, _ = choose_adaptive_k(np.array([100, 50, 20, 10, 5, 1]), target_gini=0.0, max_k=2)
    assert k == 2  # target unreachable within the cap: the cap


def test_drop_level_default_is_most_concentrated_middle_and_codes_unique():
    codes = _sandglass_codes()
    assert is_sandglass(diagnose(codes, 8))
    idx = _index(codes, prune="drop-level")
    assert idx.meta_extra["prune"]["level"] == 1
    off = idx.meta_extra["level_offsets"]
    lvl1 = (idx.codes >= off[1]) & (idx.codes < off[2])
    assert not lvl1.any()  # no level-1 token survives
    assert not idx.variable_length and _unique(idx)
    # dropping the level makes items collide on (level 0, level 2): they are re-disambiguated
    assert idx.meta_extra["diagnostics_after"]["collision_rate"] > 0 and idx.codes.shape[1] == 3


def test_adaptive_pruning_gives_unique_variable_length_codes():
    codes = _sandglass_codes()
    idx = _index(codes, prune="adaptive")
    dec = idx.meta_extra["prune"]
    assert dec["level"] == 1 and dec["top_k"] >= 1
    removed = np.isin(codes[:, 1], dec["removed_tokens"])
    assert removed.any() and not removed.all()
    assert dec["items_pruned"] == int(removed.sum())
    off = idx.meta_extra["level_offsets"]
    has_lvl1 = ((idx.codes >= off[1]) & (idx.codes < off[2])).any(axis=1)
    np.testing.assert_array_equal(has_lvl1, ~removed)  # exactly the carriers of top-K tokens lost it
    assert idx.variable_length and _unique(idx)
    # the most frequent middle tokens are the removed ones
    assert set(dec["removed_tokens"][:2]) <= {0, 1}
    assert dec["remaining_gini"] <= dec["target_gini"] or dec["top_k"] == 2  # rule met or cap (8 // 4)
    # every pruned identifier still ends in a level-2 token or a disambiguation token
    last = idx.codes[np.arange(idx.n_items), idx.lengths - 1]
    assert (last >= off[2]).all()
    targets = idx.decoder_targets(np.arange(5))
    assert (targets == idx.eos_id).sum(dim=1).tolist() == [1] * 5


def test_adaptive_with_given_k_and_errors():
    codes = _sandglass_codes()
    idx = _index(codes, prune="adaptive", adaptive_top_k=3)
    counts = np.bincount(codes[:, 1], minlength=8)
    top3 = sorted(np.lexsort((np.arange(8), -counts))[:3].tolist())
    assert idx.meta_extra["prune"]["removed_tokens"] == top3 and {0, 1} <= set(top3)
    assert _unique(idx)
    with pytest.raises(ValueError, match="adaptive_top_k must be in 0..7"):
        _index(codes, prune="adaptive", adaptive_top_k=8)
    with pytest.raises(ValueError, match="outside 0..2"):
        plan_pruning(codes, [8, 8, 8], "drop-level", level=5)


def test_pruning_that_collapses_codes_still_gives_unique_ids():
    # items differ ONLY in the middle level: dropping it makes them all collide
    codes = np.stack([np.zeros(8, dtype=int), np.arange(8), np.zeros(8, dtype=int)], axis=1)
    idx = _index(codes, prune="drop-level", drop_level=1)
    assert _unique(idx) and idx.meta_extra["n_disambig"] == 8
    ada = _index(codes, prune="adaptive", adaptive_top_k=4)
    assert _unique(ada)
    # only the 4 pruned items collide (on (0, 0)); the other 4 keep all 3 levels and need no extra token
    assert sorted(ada.lengths.tolist()) == [3] * 8
    assert ada.meta_extra["n_disambiguated_items"] == 4


def test_after_diagnostics_drop_the_removed_entries_from_the_codebook():
    codes = _sandglass_codes()
    keep, dec = plan_pruning(codes, [8, 8, 8], "adaptive", top_k=2)
    after, sizes = pruned_level_codes(codes, keep, [8, 8, 8], dec)
    assert sizes == [8, 6, 8]
    assert after[:, 1].max() < 6 and (after[:, 1] == -1).sum() == (~keep[:, 1]).sum()
    t = diagnose(after, sizes)
    assert t.levels[1].gini < diagnose(codes, 8).levels[1].gini


def test_pruned_index_save_load_round_trip_and_report(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    cat = Catalog("c", [f"i{i}" for i in range(300)])
    scheme = ResidualQuantizationScheme(RQConfig(codebook=8, prune="adaptive", adaptive_top_k=2))
    idx = scheme.build(cat, x)
    assert idx.variable_length and _unique(idx)
    idx.save(tmp_path / "idx")
    back = load_index(tmp_path / "idx", catalog=cat)
    np.testing.assert_array_equal(back.codes, idx.codes)
    np.testing.assert_array_equal(back.lengths, idx.lengths)
    np.testing.assert_array_equal(back.extras["rq_keep"], idx.extras["rq_keep"])
    assert back.variable_length and back.meta_extra["prune"] == idx.meta_extra["prune"]
    assert back.config["prune"] == "adaptive"
    out = scheme.report(back, tmp_path / "rep")
    assert "after adaptive" in out["markdown"].read_text()
    assert out["png"].stat().st_size > 1000


def test_prefix_tokens_with_variable_length_codes_form_a_tree():
    codes = _sandglass_codes()
    idx = _index(codes, prune="adaptive", tokens_are_prefixes=True)
    c, lens = idx.codes, idx.lengths
    assert idx.variable_length and _unique(idx)
    for p in range(1, c.shape[1]):
        alive = lens > p
        assert (idx.token_parent[c[alive, p]] == c[alive, p - 1]).all()


def test_pruned_variable_length_index_decodes_only_valid_identifiers():
    """Property: constrained beam search over a pruned (variable-length, EOS) RQ index returns only
    identifiers of real items, each mapped back to that item by ``rank``."""
    torch = pytest.importorskip("torch")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gr_toolkit.decoding.beam_search import beam_search
    from tests.fakes import TinyGRURetriever, random_batch

    @settings(max_examples=12, deadline=None)
    @given(seed=st.integers(0, 10**6), beam=st.integers(1, 70), prefixes=st.booleans(), mode=st.sampled_from(["adaptive", "drop-level"]))
    def check(seed, beam, prefixes, mode):
        codes = _sandglass_codes(n=60, seed=seed) % np.array([4, 8, 4])
        idx = build_code_index(codes, [4, 8, 4], _fp(60), RQConfig(prune=mode, adaptive_top_k=2 if mode == "adaptive" else None, tokens_are_prefixes=prefixes))
        eos = idx.eos_id if idx.variable_length else None
        seqs = {tuple(c[:n]) + ((eos,) if eos is not None else ()): i for i, (c, n) in enumerate(zip(idx.codes, idx.lengths, strict=True))}
        model = TinyGRURetriever(source_vocab=50, vocab_size=idx.vocab_size, dim=8, seed=seed % 5)
        with torch.inference_mode():
            out = beam_search(model, idx.constraint(), random_batch(2, seed=seed), beam_size=beam)
        ranked = idx.rank(out, top_k=beam)
        for q in range(2):
            decoded = []
            for j in range(beam):
                if out.alive[q, j]:
                    toks = tuple(t for t in out.tokens[q, j].tolist() if t >= 0)
                    assert toks in seqs, f"decoded {toks} is not an identifier"
                    decoded.append(seqs[toks])
            assert len(decoded) == min(beam, 60) == len(set(decoded))
            assert sorted(decoded) == sorted(i for i in ranked.items[q].tolist() if i >= 0)

    check()


def test_reprune_equals_a_direct_pruned_build():
    from gr_toolkit.config import ConfigError
    from gr_toolkit.identifiers.rq import reprune

    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    cat = Catalog("c", [f"i{i}" for i in range(200)])
    base = ResidualQuantizationScheme(RQConfig(codebook=6)).build(cat, x)
    direct = ResidualQuantizationScheme(RQConfig(codebook=6, prune="adaptive", adaptive_top_k=2)).build(cat, x)
    again = reprune(base, prune="adaptive", adaptive_top_k=2)
    np.testing.assert_array_equal(again.codes, direct.codes)
    np.testing.assert_array_equal(again.lengths, direct.lengths)
    assert again.config == direct.config
    with pytest.raises(ConfigError, match="reprune can change only"):
        reprune(base, codebook=8)
