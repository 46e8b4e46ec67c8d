"""Where the real data lives (``--data-dir``, then ``$GR_DATA_DIR``, then ``../shared/data``) and where
derived caches go (``$GR_CACHE_DIR``, else ``~/.cache/gr-toolkit``)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("GR_DATA_DIR")
    if env:
        return Path(env)
    # ../shared/data relative to the working directory, then to the repository root.
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        cand = base.parent / "shared" / "data"
        if cand.exists():
            return cand
    return Path.cwd().parent / "shared" / "data"


def cache_root() -> Path:
    """``$GR_CACHE_DIR``, else ``~/.cache/gr-toolkit``: converted models and cached text states."""
    return Path(os.environ.get("GR_CACHE_DIR") or Path.home() / ".cache" / "gr-toolkit")
