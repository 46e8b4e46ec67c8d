"""``gr-toolkit demo``: the whole pipeline on the built-in synthetic catalog, no downloads.

data -> buckets -> item text vectors -> SEATER balanced-tree index -> SEATER model trained with the
gen + align + rank losses -> constrained beam search on the test split -> metrics by head/torso/tail,
next to a popularity and a BM25 baseline on the same split. Writes result files, a markdown table and
a bucket bar chart into ``--out``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gr_toolkit.config import parse_cli_overrides, with_overrides
from gr_toolkit.evaluation.results import (
    current_command,
    device_name,
    markdown_table,
    result_record,
    write_result,
)

console = Console()


@dataclass
class DemoConfig:
    seed: int = 0
    #: Synthetic catalog size and query volume (see gr_toolkit.data.synthetic).
    n_items: int = 2000
    k: int = 8
    epochs: int = 20
    patience: int = 3
    batch_size: int = 128
    losses: str = "gen,align,rank"
    beam: int = 50
    ks: str = "1,5,10,20,50"
    bm25: bool = True


def run_demo(cfg: DemoConfig, out: Path) -> list[dict[str, Any]]:
    """Run the pipeline; return the result records (also written under ``out``)."""
    import torch

    import gr_toolkit.identifiers  # noqa: F401  (registers the schemes)
    from gr_toolkit.baselines.popularity import PopularityRetriever
    from gr_toolkit.data.buckets import assign_buckets, traffic_table
    from gr_toolkit.data.featurize import SourceFeaturizer
    from gr_toolkit.data.loaders import load_dataset
    from gr_toolkit.evaluation.metrics import evaluate_rankings
    from gr_toolkit.evaluation.plots import bucket_bar_chart
    from gr_toolkit.identifiers.base import SCHEMES as _SCHEMES
    from gr_toolkit.losses import build_losses
    from gr_toolkit.models import MODELS
    from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner
    from gr_toolkit.training.config import TrainConfig
    from gr_toolkit.training.sft import train_model
    from gr_toolkit.vectors.text import item_text_vectors

    ks = [int(k) for k in cfg.ks.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    command = current_command()
    with console.status("[1/6] generating the synthetic catalog and queries"):
        ds = load_dataset("synthetic", seed=cfg.seed, n_items=cfg.n_items)
    console.print(f"[1/6] data: {len(ds.catalog)} items, train/valid/test = {len(ds.train)}/{len(ds.valid)}/{len(ds.test)} queries")
    console.print(traffic_table(ds).to_string())
    test_buckets = assign_buckets(ds, ds.test)

    with console.status("[2/6] item text vectors (all-MiniLM-L6-v2, offline)"):
        t0 = time.perf_counter()
        vectors = item_text_vectors(ds.catalog)
    console.print(f"[2/6] vectors: {vectors.shape} in {time.perf_counter() - t0:.1f}s")

    scheme_cls = _SCHEMES.get("seater")
    with console.status(f"[3/6] balanced {cfg.k}-ary tree index"):
        t0 = time.perf_counter()
        index = scheme_cls(scheme_cls.config_class(k=cfg.k, seed=cfg.seed)).build(ds.catalog, vectors)
        index_dir = index.save(out / "index", overwrite=True)
    console.print(
        f"[3/6] index: {index.n_items} items, {index.vocab_size} tokens, identifier length {index.max_length}, "
        f"{time.perf_counter() - t0:.1f}s -> {index_dir}"
    )

    torch.manual_seed(cfg.seed)
    featurizer = SourceFeaturizer().fit(ds)
    model_cls = MODELS.get("seater")
    model = model_cls.build(index, featurizer, model_cls.config_class())
    tcfg = TrainConfig(
        losses=cfg.losses, epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size, seed=cfg.seed,
        eval_beam=cfg.beam, device="auto",
    )
    losses = build_losses(tcfg.loss_names(), model.hidden_size, tcfg.loss_options())
    console.print(f"[4/6] training SEATER ({cfg.losses}) for up to {cfg.epochs} epochs, early stopping on valid recall@10")
    result = train_model(model, index, ds, featurizer, losses, tcfg, out / "run", index_source=index_dir, resume=False)

    console.print("[5/6] constrained beam search on the test split")
    runner = GenerativeRetrieverRunner.load(out / "run")
    ev = runner.evaluate(ds, "test", ks=ks, beam_size=cfg.beam)
    dev = device_name(runner.device)
    common = dict(dataset=ds.name, protocol=ds.protocol, split="test", seed=cfg.seed, bucketing=ds.bucketing,
                  n_examples=len(ds.test), device=dev, command=command)
    records = [
        result_record(method="seater", metrics=ev["metrics"], train_seconds=result.train_seconds,
                      retrieve_seconds=round(ev["retrieve_seconds"], 3), **common)
    ]
    pop_items, _ = PopularityRetriever(ds).rank(ds.test, k=max(ks))
    records.append(result_record(method="popularity", metrics=evaluate_rankings(pop_items, ds.test.targets, ks, test_buckets),
                                 train_seconds=0.0, **common))
    if cfg.bm25:
        from gr_toolkit.baselines.bm25 import BM25Unavailable, rank_in_subprocess

        try:
            bm_items, _, index_seconds = rank_in_subprocess(ds.catalog, ds.test.queries, k=max(ks))
            records.append(result_record(method="bm25", metrics=evaluate_rankings(bm_items, ds.test.targets, ks, test_buckets),
                                         train_seconds=index_seconds, **common))
        except BM25Unavailable as e:
            console.print(f"[yellow]BM25 baseline skipped: {e}[/]")

    console.print("[6/6] report")
    for r in records:
        write_result(r, out / "results")
    names = [f"recall@{k}" for k in ks if k in (10, 50)] + ["ndcg@10"]
    md = markdown_table(records, names)
    (out / "results.md").write_text(f"# gr-toolkit demo (synthetic, seed {cfg.seed})\n\nCommand: `{command}`\n\n{md}")
    bucket_bar_chart(records, "recall@10", out / "recall10_by_bucket.png")
    table = Table(title=f"{ds.name} test: metrics by query bucket ({ds.bucketing})")
    table.add_column("method")
    table.add_column("bucket")
    table.add_column("n", justify="right")
    for m in names:
        table.add_column(m, justify="right")
    for r in records:
        for b in ("all", "head", "torso", "tail"):
            row = r["metrics"].get(b)
            if row:
                table.add_row(r["method"], b, str(row["n"]), *[f"{row[m]:.4f}" for m in names])
    console.print(table)
    console.print(f"results: {out / 'results'}  table: {out / 'results.md'}  plot: {out / 'recall10_by_bucket.png'}")
    return records


def demo(
    ctx: typer.Context,
    out: Path = typer.Option(Path("demo_out"), "--out", help="Output folder (index, run, results, plot)."),
) -> None:
    """Run the full generative pipeline on the built-in synthetic catalog (no downloads).

    Options of DemoConfig can be overridden as --key value (e.g. --epochs 5 --k 4 --no-bm25 via --bm25 false).
    """
    cfg = with_overrides(DemoConfig(), parse_cli_overrides(list(ctx.args)))
    run_demo(cfg, out)


demo.accepts_overrides = True  # type: ignore[attr-defined]
