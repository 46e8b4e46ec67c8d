"""Shared fixtures: tiny synthetic datasets (fast, no files) and a skip marker for real-data tests."""

from __future__ import annotations

import os
import tempfile

import pytest

# Caches written by the code under test (converted models, text states) go to a fresh folder, never
# the user's ~/.cache; set GR_CACHE_DIR to reuse one between test sessions.
os.environ.setdefault("GR_CACHE_DIR", tempfile.mkdtemp(prefix="gr_test_cache_"))

from gr_toolkit.paths import data_dir

REAL_DATA_DIR = data_dir()
HAVE_REAL_DATA = REAL_DATA_DIR.is_dir() and any(REAL_DATA_DIR.iterdir())

_skip_without_data = pytest.mark.skipif(
    not HAVE_REAL_DATA, reason=f"real data not found at {REAL_DATA_DIR} (set GR_DATA_DIR)"
)


def real_data(obj):
    """Decorator for tests (functions or classes) that read ../shared/data: they skip cleanly when it
    is absent and carry the ``realdata`` marker (``pytest -m "not realdata"`` leaves them out)."""
    return pytest.mark.realdata(_skip_without_data(obj))


@pytest.fixture(scope="session")
def real_data_dir():
    if not HAVE_REAL_DATA:
        pytest.skip(f"real data not found at {REAL_DATA_DIR} (set GR_DATA_DIR)")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def tiny_query_dataset():
    """A small synthetic search dataset (about 300 items, a few hundred training queries)."""
    from gr_toolkit.data.synthetic import make_synthetic

    return make_synthetic(seed=0, n_items=300, n_queries=800, n_events=5000, kind="query")


@pytest.fixture(scope="session")
def tiny_history_dataset():
    """A small synthetic sequence dataset (300 items, 300 users, leave-one-out)."""
    from gr_toolkit.data.synthetic import make_synthetic

    return make_synthetic(seed=0, n_items=300, n_users=300, kind="history")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_query_dataset):
    return tiny_query_dataset
