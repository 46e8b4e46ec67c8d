"""Where the real data lives: ``--data-dir``, then ``$GR_DATA_DIR``, then ``../shared/data``."""

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
