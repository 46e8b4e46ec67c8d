"""The built-in synthetic datasets (no files): ``synthetic`` (search log) and ``synthetic-seq`` (histories)."""

from __future__ import annotations

from gr_toolkit.data.loaders import DATASETS
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.data.types import Dataset


@DATASETS.register("synthetic")
def load_synthetic(data_dir=None, seed: int = 0, kind: str = "query", **opts) -> Dataset:
    """Search-log kind by default; ``kind="history"`` gives the sequence kind."""
    return make_synthetic(seed=seed, kind=kind, **opts)


@DATASETS.register("synthetic-seq")
def load_synthetic_seq(data_dir=None, seed: int = 0, **opts) -> Dataset:
    opts.pop("kind", None)
    return make_synthetic(seed=seed, kind="history", **opts)


load_synthetic.option_source = make_synthetic  # type: ignore[attr-defined]
load_synthetic_seq.option_source = make_synthetic  # type: ignore[attr-defined]
