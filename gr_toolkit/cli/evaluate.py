"""``gr-toolkit eval DATASET --run DIR [--split test] [--k 5,10,20,50] --out FILE.json``.

Retrieves every example of the split with the run's model (constrained beam search), computes
Recall/HR/NDCG@K and MRR overall and per head/torso/tail bucket, writes the result file of DESIGN.md
(``command`` = this exact command line) and prints the per-bucket table.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise ValueError(f"--k must be comma-separated positive integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k must be comma-separated positive integers, got {text!r}")
    return ks


def evaluate(
    dataset: str = typer.Argument(..., help="dataset name the run was trained on"),
    run: Path = typer.Option(..., "--run", help="run directory from `gr-toolkit train`"),
    out: Path = typer.Option(..., "--out", help="result JSON file to write"),
    split: str = typer.Option("test", "--split", help="train | valid | test"),
    k: str = typer.Option("1,5,10,20,50,100", "--k", help="cut-offs, comma-separated"),
    beam: int | None = typer.Option(None, "--beam", help="beam size (default max(50, largest K))"),
    batch_size: int = typer.Option(256, "--batch-size", help="sources per beam-search batch"),
    method: str | None = typer.Option(None, "--method", help="method name in the result (default: the run's model)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default $GR_DATA_DIR, then ../shared/data)"),
    data_seed: int = typer.Option(0, "--data-seed", help="seed passed to the dataset loader"),
) -> None:
    """Evaluate a trained run on a dataset split, per head/torso/tail bucket."""
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.data.types import DataError
    from gr_toolkit.evaluation.results import (
        bucket_table,
        current_command,
        device_name,
        result_record,
        write_result,
    )

    try:
        ks = parse_ks(k)
        from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner

        runner = GenerativeRetrieverRunner.load(run, device=device)
        from gr_toolkit.data.loaders import load_dataset

        ds = load_dataset(dataset, data_dir=data_dir, seed=data_seed)
        res = runner.evaluate(ds, split=split, ks=ks, beam_size=beam, batch_size=batch_size)
    except typer.Exit:
        raise
    except (DataError, ArtifactError, ValueError, KeyError) as e:
        _fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return
    man = runner.manifest
    record = result_record(
        dataset=ds.name,
        protocol=ds.protocol,
        split=split,
        method=method or man["model"],
        seed=int(man.get("train_config", {}).get("seed", 0)),
        bucketing=ds.bucketing,
        n_examples=res["n_examples"],
        metrics=res["metrics"],
        train_seconds=float(man.get("train_seconds", 0.0)),
        device=device_name(runner.device),
        command=current_command(),
        run=str(run),
        index_scheme=man.get("index", {}).get("scheme"),
        losses=man.get("train_config", {}).get("losses"),
        best_epoch=(man.get("best") or {}).get("epoch"),
        beam_size=res["beam_size"],
        retrieve_seconds=round(res["retrieve_seconds"], 3),
    )
    path = write_result(record, out_dir=out.parent, name=out.name)
    names = [f"recall@{x}" for x in ks] + [f"ndcg@{x}" for x in ks if x >= 5][:2]
    typer.echo(f"{ds.name} {split} ({ds.bucketing} buckets), beam {res['beam_size']}, "
               f"{res['n_examples']:,} examples in {res['retrieve_seconds']:.1f} s")
    typer.echo(bucket_table(res["metrics"], names))
    typer.echo(f"wrote {path}")
