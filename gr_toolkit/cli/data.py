"""``gr-toolkit data ...``: inspect datasets (counts, protocol, head/torso/tail buckets, loader notes)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gr_toolkit.config import ConfigError, parse_cli_overrides

app = typer.Typer(help="Inspect datasets: counts, splits, head/torso/tail buckets.", no_args_is_help=True)
console = Console()


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command(
    "stats",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def stats(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="synthetic, synthetic-seq, homedepot, bestbuy, beauty, games, "
                                  "scientific, esci:PATH or jsonl:PATH"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data folder (default $GR_DATA_DIR, then ../shared/data)"),
    seed: int = typer.Option(0, "--seed", help="split seed"),
    head_share: float = typer.Option(0.5, "--head-share", help="traffic share of the head bucket"),
    torso_share: float = typer.Option(0.3, "--torso-share", help="traffic share of the torso bucket"),
) -> None:
    """Counts per split, protocol, bucketing and bucket sizes/traffic shares; extra ``--option value``
    pairs are loader options (e.g. ``--max-history 50``, ``--positive-threshold 2.5``)."""
    from gr_toolkit.data.buckets import traffic_table
    from gr_toolkit.data.loaders import DataError, load_dataset, parse_loader_options

    try:
        opts = parse_loader_options(dataset, parse_cli_overrides(list(ctx.args)))
        t0 = time.perf_counter()
        with console.status(f"loading {dataset} ..."):
            ds = load_dataset(dataset, data_dir=data_dir, seed=seed, **opts)
        load_s = time.perf_counter() - t0
        with console.status("assigning buckets ..."):
            table = traffic_table(ds, head_share=head_share, torso_share=torso_share)
    except (DataError, ConfigError, ValueError) as e:
        _fail(str(e))
        return

    over = Table(title=f"{ds.name}: {ds.protocol}, {ds.kind} sources, bucketing {ds.bucketing}", title_justify="left")
    for col in ("split", "examples", "distinct sources", "pairs", "mean targets", "traffic"):
        over.add_column(col, justify="right" if col != "split" else "left")
    for s in ("train", "valid", "test"):
        ex = ds.split(s)
        n_pairs = int(sum(len(t) for t in ex.targets))
        keys = ex.keys if ex.keys is not None else ex.sources
        distinct = len(set(keys)) if keys is not None and ex.kind == "query" else len(set(ex.keys or []))
        over.add_row(s, f"{len(ex):,}", f"{distinct:,}", f"{n_pairs:,}",
                     f"{n_pairs / max(len(ex), 1):.2f}", f"{float(np.sum(ex.weights)):,.0f}")
    console.print(over)
    console.print(f"items: [bold]{len(ds.catalog):,}[/]  fields: {', '.join(ds.catalog.fields) or '-'}"
                  f"  attributes: {', '.join(ds.catalog.attributes) or '-'}  (loaded in {load_s:.1f} s)")

    unit = "queries" if ds.kind == "query" else "users"
    bt = Table(title=f"buckets ({ds.bucketing}; head {head_share:.0%} / torso {torso_share:.0%} of training "
                     f"{'traffic' if ds.bucketing == 'traffic' else 'weight'})", title_justify="left")
    for col in ("split", "bucket", unit, "examples", "traffic", "share"):
        bt.add_column(col, justify="left" if col in ("split", "bucket") else "right")
    for row in table.itertuples():
        bt.add_row(row.split, row.bucket, f"{row.queries:,}", f"{row.examples:,}", f"{row.traffic:,.0f}",
                   f"{row.share:.1%}")
    console.print(bt)
    if ds.notes:
        console.print("[bold]notes[/]")
        for n in ds.notes:
            console.print(f"  - {n}", highlight=False, soft_wrap=True)


@app.command("list")
def list_datasets() -> None:
    """The dataset names and their loader options."""
    from gr_toolkit.data.loaders import dataset_names, loader_options

    t = Table(title="datasets")
    t.add_column("name")
    t.add_column("options (default)")
    for name in dataset_names():
        t.add_row(name, ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in loader_options(name).items()))
    console.print(t)
