"""``gr-toolkit bench``: speed/memory benchmarks that compare against a reference in the same run.

Each benchmark lives in ``gr_toolkit.bench.<name>`` and exposes ``command`` (a typer command function).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Benchmarks (results are JSON files; commit them under eval/bench/).", no_args_is_help=True)

for _name, _mod in [
    ("tree-build", "gr_toolkit.bench.tree_build"),
    ("decode", "gr_toolkit.bench.decode"),
    ("fm-index", "gr_toolkit.bench.fm_index"),
    ("hf-decode", "gr_toolkit.bench.hf_decode"),
]:
    try:
        app.command(name=_name)(importlib.import_module(_mod).command)
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a benchmark is being developed
        if _e.name != _mod:
            raise
