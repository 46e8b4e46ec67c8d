"""LexicalIndex / LexicalScheme: build, targets valid under the constraint, save/load, SEAL scoring by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.config import load_yaml
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, BeamOutput, load_index
from gr_toolkit.identifiers.fm_index import TokenSuffixIndex
from gr_toolkit.identifiers.lexical import LexicalConfig, LexicalIndex
from gr_toolkit.retrieval.seal_scoring import seal_rank, seal_weight, split_spans

ROOT = Path(__file__).resolve().parents[1]

TITLES = [
    "DEWALT 20-Volt MAX Cordless Drill Kit",
    "Milwaukee M18 Cordless Hammer Drill",
    "Ryobi 18V Cordless Impact Driver",
    "Glacier Bay Bathroom Faucet in Chrome",
    "Moen Kitchen Faucet with Sprayer in Chrome",
    "Husky 52 in. Tool Chest",
    "Husky Tool Bag",
    "Behr Premium Plus Interior Paint",
    "Behr Exterior Paint Satin",
    "Leviton Light Switch White",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    titles = [f"{t} model {i}" for i, t in enumerate(TITLES * 2)]
    return Catalog("tiny", [f"sku{i}" for i in range(len(titles))], {"title": titles})


@pytest.fixture(scope="module")
def index(catalog) -> LexicalIndex:
    return SCHEMES.get("lexical")(LexicalConfig(vocab_size=150, max_span_len=4)).build(catalog, None)


def test_scheme_registration_and_config_file():
    scheme = SCHEMES.get("lexical")
    assert scheme.needs_vectors is False
    cfg = load_yaml(LexicalConfig, ROOT / "indexes/configs/lexical.yaml")
    assert cfg == LexicalConfig()  # the shipped config spells out the defaults
    with pytest.raises(ValueError, match="target_mode"):
        scheme(LexicalConfig(target_mode="bogus")).build(Catalog("c", ["a"], {"title": ["x"]}), None)


def test_token_convention(index):
    assert index.vocab_size == index.tokenizer.vocab_size + 1
    assert index.separator_id == index.vocab_size - 1
    assert (index.bos_id, index.eos_id) == (index.vocab_size, index.vocab_size + 1)
    assert index.fm.n_docs == index.n_items == 20
    # max_length (EOS excluded) bounds every target and matches the decoder's step budget.
    assert index.max_length + 1 == index.constraint().max_steps == 3 * (4 + 1)
    assert index.to_text(index.title_tokens(0).tolist() + [index.eos_id]) == "dewalt 20-volt max cordless drill kit model 0"


def test_targets_are_accepted_by_the_constraint(index):
    items = np.arange(20)
    queries = ["cordless drill", "hammer", "impact driver 18v", "chrome faucet", "kitchen sprayer",
               "tool chest", "husky bag", "interior paint", "satin", "xyzzy"] * 2
    targets = index.decoder_targets(items, queries)
    assert targets.shape[1] <= index.max_length + 1
    c = index.constraint()
    states = c.start(len(items))
    for t in range(targets.shape[1]):
        tok = targets[:, t]
        live = (tok >= 0).nonzero().squeeze(1)
        cand, valid = c.candidates(states[live])
        assert ((cand == tok[live, None]) & valid).any(dim=1).all(), f"step {t}: a target token is not allowed"
        states[live] = c.advance(states[live], tok[live])
    assert c.is_done(states).all()
    assert index.to_text(targets[0]) == "cordless drill"
    assert index.to_text(targets[3]) == "faucet | chrome"
    assert index.to_text(targets[7]) == "interior paint"
    seal = index.decoder_targets(items[:4], queries[:4], mode="seal")
    assert (seal == index.separator_id).sum() == 0
    no_query = index.decoder_targets(items[:3])  # history data: rarity-chosen spans of each title
    assert (no_query[:, 0] >= 0).all()


def test_save_load_round_trip(index, catalog, tmp_path):
    path = index.save(tmp_path / "lex")
    again = load_index(path, catalog)
    assert isinstance(again, LexicalIndex)
    assert again.vocab_size == index.vocab_size and again.config == index.config
    for name, arr in index.arrays().items():
        np.testing.assert_array_equal(arr, again.arrays()[name], err_msg=name)
    q = ["cordless drill", "chrome faucet"]
    assert torch.equal(index.decoder_targets([0, 3], q), again.decoder_targets([0, 3], q))
    tgt = index.decoder_targets([0, 3], q)
    beams = BeamOutput(tokens=tgt[:, None, :], scores=torch.tensor([[-0.5], [-0.7]]),
                       states=torch.zeros(2, 5, dtype=torch.long), alive=torch.ones(2, 1, dtype=torch.bool))
    a, b = index.rank(beams, 5), again.rank(beams, 5)
    assert torch.equal(a.items, b.items) and a.evidence == b.evidence
    assert a.items[0, :2].tolist() == [0, 10] and a.evidence[0][0] == ["cordless drill"]
    # A different catalog, a swapped tokenizer and a corrupt array are refused with clear messages.
    other = Catalog("other", ["x"], {"title": ["y"]})
    with pytest.raises(ArtifactError, match="fingerprint"):
        load_index(path, other)
    tok = path / "tokenizer.model"
    original = tok.read_bytes()
    tok.write_bytes(original[:-10])
    with pytest.raises(ArtifactError, match="tokenizer"):
        load_index(path, catalog)
    tok.write_bytes(original)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / manifest["arrays"]["fm__sa"]["file"]).write_bytes(b"junk")
    with pytest.raises(ArtifactError, match="checksum"):
        load_index(path, catalog)


def test_seal_scoring_by_hand():
    # Items: 0 = [1, 2, 3], 1 = [1, 4, 5]; N = 6 corpus tokens.
    fm = TokenSuffixIndex.build([[1, 2, 3], [1, 4, 5]], vocab_size=6)
    sep, eos = 6, 8
    rows = [[2, 3, eos], [1, 2, eos], [1, eos, -1], [4, eos, -1], [5, sep, 1]]  # last beam is not alive
    logp = [math.log(0.5), math.log(0.3), math.log(0.4), math.log(0.2), 0.0]
    tokens = torch.tensor([rows])
    alive = torch.tensor([[True, True, True, True, False]])

    def w(pq: float, count: int) -> float:
        pn = count / 6
        return math.log(pq * (1 - pn) / (pn * (1 - pq)))

    w23, w12, w1, w4 = w(0.5, 1), w(0.3, 1), w(0.4, 2), w(0.2, 1)
    assert w23 == pytest.approx(math.log(5))
    ranked = seal_rank(fm, tokens, torch.tensor([logp]), alive, top_k=3, span_text=lambda ids: str(ids.tolist()))
    # Item 0: [2,3] then [1] ([1,2] overlaps [2,3] and is skipped); item 1: [1] + [4].
    assert ranked.items[0].tolist() == [0, 1, -1]
    assert ranked.scores[0, 0].item() == pytest.approx(w23 + w1, rel=1e-5)
    assert ranked.scores[0, 1].item() == pytest.approx(w1 + w4, rel=1e-5)
    assert ranked.evidence[0][0] == ["[1]", "[2, 3]"] and ranked.evidence[0][1] == ["[1]", "[4]"]
    # Without the non-overlap rule item 0 would also count [1, 2]: check that it did not.
    assert ranked.scores[0, 0].item() < w23 + w1 + w12
    # A span no likelier under the model than in the corpus weighs 0.
    assert seal_weight(np.array([math.log(0.1)]), np.array([2]), 6)[0] == 0.0
    # Per-token log-probs, when given, score a span by its own tokens.
    ts = torch.zeros(1, 5, 3)
    ts[0, 3, 0] = math.log(0.9)  # beam 3's span [4]
    again = seal_rank(fm, tokens, torch.tensor([logp]), alive, top_k=2, token_scores=ts)
    assert again.items[0].tolist() == [1, 0]  # [4] is now near-certain and rare: item 1 first


def test_split_spans():
    s = split_spans(np.array([[1, 2, 9, 3, 8, -1], [9, 4, -1, -1, -1, -1]]), n_corpus_tokens=8)
    assert s.tokens.tolist() == [[1, 2], [3, -1], [4, -1]]
    assert s.row.tolist() == [0, 0, 1] and s.start.tolist() == [0, 3, 1] and s.length.tolist() == [2, 1, 1]


def test_beam_search_then_rank_returns_items_that_contain_their_evidence(index, catalog):
    from gr_toolkit.decoding.beam_search import beam_search
    from tests.fakes import TinyGRURetriever, random_batch

    model = TinyGRURetriever(source_vocab=50, vocab_size=index.vocab_size)
    out = beam_search(model, index.constraint(), random_batch(3), beam_size=5, bos_id=index.bos_id)
    assert out.alive.any()
    ranked = index.rank(out, top_k=4)
    assert ranked.items.shape == (3, 4) and ranked.evidence is not None
    titles = [t.lower() for t in catalog.text("title")]
    for b in range(3):
        scores = ranked.scores[b][ranked.items[b] >= 0]
        assert (scores[:-1] >= scores[1:]).all()  # best first
        for j, item in enumerate(ranked.items[b].tolist()):
            if item < 0:
                assert ranked.evidence[b][j] == []
                continue
            assert ranked.evidence[b][j], "every returned item has at least one matched span"
            for span in ranked.evidence[b][j]:
                assert span in titles[item], (span, titles[item])
