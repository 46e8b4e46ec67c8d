"""``gr-toolkit index DATASET --scheme NAME [--vectors FILE.npy] [--config YAML] [--key value ...] --out DIR``.

Builds an identifier index for a dataset's catalog with any registered scheme (``seater``, ``rq``,
``lexical``, ``seater-imbalanced``, ``seater-random``, ``random``, ``atomic``, ...).

- Scheme options come from the scheme's config dataclass: defaults, then ``--config YAML`` (a mapping
  of field names; an optional ``scheme:`` key must agree with ``--scheme`` or supplies it), then
  ``--key value`` pairs on the command line (``--k 8 --splitter exact``). Unknown names are an error
  that lists the valid ones.
- Vectors: ``--vectors FILE.npy`` (row i = catalog item i; checked for shape, finiteness and, when its
  JSON sidecar records one, the catalog fingerprint). Without it, schemes that need vectors get
  text vectors from the bundled MiniLM encoder (``gr_toolkit.vectors.text``); schemes that declare
  ``needs_vectors = False`` (lexical, random, atomic, seater-random) get none.
- The index is written atomically: a failed build or save leaves no output directory behind.
- ``--report`` calls the scheme's optional ``report(index, out_dir)`` hook (e.g. RQ diagnostics).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from gr_toolkit.cli.common import read_yaml_mapping
from gr_toolkit.config import ConfigError, from_dict, parse_cli_overrides, to_dict, with_overrides
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, IdentifierScheme, ItemIndex


class IndexBuildError(ValueError):
    """The index command cannot run as asked (unknown scheme, bad option, missing vectors)."""


def _schemes() -> None:
    import gr_toolkit.identifiers  # noqa: F401  (registers every scheme)


def scheme_class(name: str) -> type[IdentifierScheme]:
    _schemes()
    if name not in SCHEMES:
        raise IndexBuildError(f"unknown scheme {name!r}; valid: {', '.join(SCHEMES.names())}")
    return SCHEMES.get(name)


def read_config_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``(scheme or None, fields)`` from a YAML config file."""
    data = read_yaml_mapping(path, expected="a mapping of option names to values")
    scheme = data.pop("scheme", None)
    return scheme, data


def scheme_config(
    scheme_name: str,
    overrides: dict[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> Any:
    """The scheme's config: defaults <- YAML file <- overrides (unknown names raise ``ConfigError``)."""
    cls = scheme_class(scheme_name)
    if config_path is not None:
        file_scheme, fields = read_config_file(config_path)
        if file_scheme is not None and file_scheme != scheme_name:
            raise ConfigError(f"{config_path}: config is for scheme {file_scheme!r}, but --scheme is {scheme_name!r}")
        cfg = from_dict(cls.config_class, fields, where=str(config_path))
    else:
        cfg = cls.config_class()
    if overrides:
        cfg = with_overrides(cfg, overrides, where=f"--scheme {scheme_name} options")
    return cfg


def build_index(
    catalog: Catalog,
    vectors: np.ndarray | None,
    scheme_name: str,
    overrides: dict[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> ItemIndex:
    """Build an index of ``catalog`` with the scheme registered as ``scheme_name``."""
    cls = scheme_class(scheme_name)
    cfg = scheme_config(scheme_name, overrides, config_path)
    if getattr(cls, "needs_vectors", True) and vectors is None:
        raise IndexBuildError(f"scheme {scheme_name!r} needs item vectors: pass --vectors FILE.npy")
    return cls(cfg).build(catalog, vectors)


def default_vectors(catalog: Catalog) -> np.ndarray:
    """Text vectors for schemes that need vectors when the user passes none."""
    try:
        from gr_toolkit.vectors.text import item_text_vectors
    except ImportError:  # pragma: no cover - the module ships with the package
        raise IndexBuildError(
            "no --vectors given and text vectors are unavailable: pass --vectors FILE.npy "
            "(e.g. from `gr-toolkit embed DATASET --method text --out FILE.npy`)"
        ) from None
    return item_text_vectors(catalog)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def index(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="dataset name (synthetic, beauty, homedepot, esci:PATH, jsonl:PATH, ...)"),
    scheme: str | None = typer.Option(None, "--scheme", help="seater | rq | lexical | seater-imbalanced | seater-random | random | atomic"),
    out: Path | None = typer.Option(None, "--out", help="output directory of the index (required to build)"),
    vectors: Path | None = typer.Option(None, "--vectors", help="item vectors .npy, shape (n_items, dim); default: text vectors"),
    config: Path | None = typer.Option(None, "--config", help="YAML file of scheme options (see indexes/configs/)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing, non-empty --out"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default $GR_DATA_DIR, then ../shared/data)"),
    data_seed: int = typer.Option(0, "--data-seed", help="seed passed to the dataset loader (synthetic data, splits)"),
    report: bool = typer.Option(False, "--report", help="also write the scheme's diagnostics report into --out"),
    show_options: bool = typer.Option(False, "--show-options", help="list the scheme's options and defaults, then exit"),
) -> None:
    """Build an identifier index for DATASET's catalog. Extra --key value pairs set scheme options
    (e.g. --k 8 --splitter exact); --show-options lists them."""
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.data.types import DataError

    try:
        overrides = parse_cli_overrides(list(ctx.args))
        if scheme is None and config is not None:
            scheme = read_config_file(config)[0]
        if scheme is None:
            _fail("--scheme is required (or a --config file with a 'scheme:' key)")
        cls = scheme_class(scheme)
        cfg = scheme_config(scheme, overrides, config)  # validate options before any slow work
        if show_options:
            typer.echo(f"options of scheme {scheme!r} ({type(cfg).__name__}); current values:")
            for key, value in to_dict(cfg).items():
                typer.echo(f"  --{key.replace('_', '-')} {value}")
            return
        if out is None:
            _fail("--out DIR is required")
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            _fail(f"{out} already exists and is not empty (pass --overwrite to replace it)")

        from gr_toolkit.data.loaders import load_dataset

        ds = load_dataset(dataset, data_dir=data_dir, seed=data_seed)
        catalog = ds.catalog
        x = None
        if vectors is not None:
            from gr_toolkit.vectors.io import load_vectors

            x = load_vectors(vectors, catalog)
        elif getattr(cls, "needs_vectors", True):
            typer.echo(f"no --vectors given: computing text vectors for {len(catalog)} items (MiniLM) ...", err=True)
            x = default_vectors(catalog)

        t0 = time.perf_counter()
        built = cls(cfg).build(catalog, x)
        seconds = time.perf_counter() - t0
        built.save(out, overwrite=overwrite)
    except typer.Exit:
        raise
    except (ConfigError, IndexBuildError, DataError, ArtifactError, ValueError, KeyError) as e:
        # ValueError covers VectorError / SplitError; KeyError an unknown registry name.
        _fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return

    lengths = getattr(built, "lengths", None)
    depth = (
        "n/a"
        if lengths is None
        else (f"{int(lengths.min())}..{int(lengths.max())} (variable)" if lengths.min() != lengths.max() else str(int(lengths.max())))
    )
    typer.echo(f"index: {out}")
    typer.echo(f"  scheme        {scheme}  ({', '.join(f'{k}={v}' for k, v in to_dict(cfg).items())})")
    typer.echo(f"  items         {built.n_items}")
    typer.echo(f"  vocab size    {built.vocab_size}")
    typer.echo(f"  id length     {depth}")
    typer.echo(f"  build seconds {seconds:.2f}")
    if report:
        scheme_obj = cls(cfg)
        hook = getattr(scheme_obj, "report", None)
        if hook is None:
            typer.echo(f"  (scheme {scheme!r} has no report hook)")
        else:
            written = hook(built, out)
            paths = written.values() if isinstance(written, dict) else [written]
            typer.echo(f"  report        {', '.join(str(p) for p in paths)}")


index.accepts_overrides = True  # type: ignore[attr-defined]
