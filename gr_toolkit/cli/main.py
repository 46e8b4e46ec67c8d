"""``gr-toolkit`` command line. Each command group lives in its own module under ``gr_toolkit.cli``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="gr-toolkit",
    help="Generative retrieval for e-commerce search: build identifiers, train, retrieve, evaluate by bucket.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, attribute, name): sub-apps are typer.Typer groups, commands are plain functions.
_GROUPS = [("gr_toolkit.cli.data", "app", "data"), ("gr_toolkit.cli.bench", "app", "bench")]
_COMMANDS = [
    ("gr_toolkit.cli.demo", "demo", "demo"),
    ("gr_toolkit.cli.embed", "embed", "embed"),
    ("gr_toolkit.cli.index", "index", "index"),
    ("gr_toolkit.cli.train", "train", "train"),
    ("gr_toolkit.cli.evaluate", "evaluate", "eval"),
    ("gr_toolkit.cli.search", "search", "search"),
]

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}

for mod, attr, name in _GROUPS:
    try:
        app.add_typer(getattr(importlib.import_module(mod), attr), name=name)
    except ModuleNotFoundError as e:  # pragma: no cover - only while a command is being developed
        if e.name != mod:
            raise
for mod, attr, name in _COMMANDS:
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except ModuleNotFoundError as e:  # pragma: no cover
        if e.name != mod:
            raise
        continue
    extra = getattr(fn, "accepts_overrides", False)
    app.command(name=name, context_settings=_CTX if extra else None)(fn)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
