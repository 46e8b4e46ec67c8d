"""Dataset loaders by name: ``load_dataset("beauty")``, ``load_dataset("esci:/path/to/dir")``.

Every loader is a function ``(data_dir: Path | None, seed: int, **opts) -> Dataset`` registered in
``DATASETS``. Names with a colon (``esci:PATH``, ``jsonl:PATH``) pass the path after the colon as
``path=``. Real-data loaders read below ``gr_toolkit.paths.data_dir(data_dir)`` (``--data-dir``,
then ``$GR_DATA_DIR``, then ``../shared/data``).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

from gr_toolkit.data.types import DataError, Dataset
from gr_toolkit.paths import data_dir as resolve_data_dir
from gr_toolkit.registry import Registry

Loader = Callable[..., Dataset]


class _DatasetRegistry(Registry[Loader]):
    """Imports a loader module on first use, so ``DATASETS.get("beauty")`` works without importing
    every loader (and pandas) when the package is imported."""

    def get(self, name: str) -> Loader:
        if name not in self._items:
            if name not in _MODULES:
                raise KeyError(f"unknown dataset {name!r}; known: {', '.join(self.names())}")
            importlib.import_module(_MODULES[name])
        return super().get(name)

    def names(self) -> list[str]:
        return sorted(set(_MODULES) | set(self._items))


DATASETS: _DatasetRegistry = _DatasetRegistry("dataset")

# Names whose loader takes a user path after a colon.
PATH_DATASETS = ("esci", "jsonl")
# Module that registers each name (imported lazily so `import gr_toolkit.data.loaders` stays cheap).
_MODULES = {
    "synthetic": "gr_toolkit.data.loaders.builtin",
    "synthetic-seq": "gr_toolkit.data.loaders.builtin",
    "homedepot": "gr_toolkit.data.loaders.homedepot",
    "bestbuy": "gr_toolkit.data.loaders.bestbuy",
    "beauty": "gr_toolkit.data.loaders.amazon",
    "games": "gr_toolkit.data.loaders.amazon",
    "scientific": "gr_toolkit.data.loaders.amazon",
    "esci": "gr_toolkit.data.loaders.esci",
    "jsonl": "gr_toolkit.data.loaders.jsonl",
}
# Sub-folder of the data dir per real dataset (for messages and `real_data` checks).
DATA_SUBDIRS = {
    "homedepot": "homedepot",
    "bestbuy": "bestbuy_xbox",
    "beauty": "amazon_beauty",
    "games": "amazon_games",
    "scientific": "amazon_scientific",
}


def dataset_names() -> list[str]:
    """Every accepted name (path datasets shown as ``esci:PATH`` / ``jsonl:PATH``)."""
    return [n for n in _MODULES if n not in PATH_DATASETS] + [f"{n}:PATH" for n in PATH_DATASETS]


def _ensure_registered(base: str) -> None:
    if base in DATASETS:
        return
    mod = _MODULES.get(base)
    if mod is None:
        raise DataError(f"unknown dataset {base!r}; valid names: {', '.join(dataset_names())}")
    importlib.import_module(mod)


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0, **opts) -> Dataset:
    """Load a dataset by name. ``opts`` are loader options (e.g. ``max_history=50``,
    ``positive_threshold=2.5``); unknown options raise a ``TypeError`` naming them."""
    base, sep, path = name.partition(":")
    if base in PATH_DATASETS:
        if not sep or not path:
            raise DataError(f"dataset {base!r} needs a path: use '{base}:/path/to/files'")
        opts["path"] = path
    elif sep:
        raise DataError(f"dataset {name!r}: only {', '.join(PATH_DATASETS)} take a ':PATH' suffix")
    _ensure_registered(base)
    loader = DATASETS.get(base)
    return loader(data_dir=data_dir, seed=seed, **opts)


def loader_options(name: str) -> dict[str, object]:
    """Option name -> default value of a dataset's loader (for help texts and CLI coercion)."""
    base = name.partition(":")[0]
    _ensure_registered(base)
    loader = DATASETS.get(base)
    # Loaders that forward **opts name the function whose parameters they accept.
    sig = inspect.signature(getattr(loader, "option_source", loader))
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p.default for k, p in sig.parameters.items()
            if k not in ("data_dir", "seed", "path", "name") and p.kind in kinds}


def parse_loader_options(name: str, raw: dict[str, str]) -> dict[str, object]:
    """Coerce ``--key value`` strings from the command line to the types of the loader's defaults."""
    known = loader_options(name)
    out: dict[str, object] = {}
    for key, val in raw.items():
        if key not in known:
            raise DataError(f"dataset {name!r} has no option {key!r}; options: {', '.join(known) or '(none)'}")
        default = known[key]
        try:
            if val.lower() in ("none", "null") and not isinstance(default, str | bool | int | float | tuple):
                out[key] = None
            elif isinstance(default, bool):
                if val.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(val)
                out[key] = val.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                out[key] = int(val)
            elif isinstance(default, float):
                out[key] = float(val)
            elif isinstance(default, tuple):
                out[key] = tuple(float(x) for x in val.split(","))
            else:
                out[key] = None if val.lower() in ("none", "null") else val
        except ValueError:
            raise DataError(f"option {key!r} of dataset {name!r}: cannot read {val!r} as {type(default).__name__}") from None
    return out


def dataset_dir(name: str, data_dir: str | Path | None) -> Path:
    """The folder a real dataset is read from; a clear error when it is missing."""
    root = resolve_data_dir(data_dir)
    sub = root / DATA_SUBDIRS[name]
    if not sub.is_dir():
        if data_dir:
            src = "from --data-dir"
        elif os.environ.get("GR_DATA_DIR"):
            src = "from $GR_DATA_DIR"
        else:
            src = "the default ../shared/data"
        raise DataError(
            f"data for {name!r} not found: tried {sub} (data dir {root}, {src}); pass --data-dir DIR or set "
            f"the GR_DATA_DIR environment variable to the folder that holds {DATA_SUBDIRS[name]}/"
        )
    return sub


__all__ = ["DATASETS", "DataError", "dataset_dir", "dataset_names", "load_dataset", "loader_options", "parse_loader_options"]
