"""Helpers shared by the benchmarks: which code a timing was measured on."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def git_state(paths: Sequence[str], cwd: str | Path | None = None) -> tuple[str, bool] | None:
    """``(HEAD sha, whether paths have uncommitted changes)`` of the checkout at ``cwd`` (default: the
    current directory); ``None`` without git or outside a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=cwd, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip(), bool(dirty.stdout.strip())


def commit_label(paths: Sequence[str] = ("gr_toolkit",)) -> str:
    """``<sha>``, ``<sha>-dirty`` when ``paths`` (the code a benchmark measures) have uncommitted changes,
    or ``unknown``."""
    state = git_state(paths)
    if state is None:
        return "unknown"
    sha, dirty = state
    return sha + ("-dirty" if dirty else "")
