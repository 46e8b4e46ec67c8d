"""``gr-toolkit eval DATASET --run DIR [--split test] [--k 5,10,20,50] --out FILE.json``.

Retrieves every example of the split with the run's model (constrained beam search), computes
Recall/HR/NDCG@K and MRR overall and per head/torso/tail bucket, writes the result file of DESIGN.md
(``command`` = this exact command line) and prints the per-bucket table.

``--fuse bm25`` also writes the hybrid rows ``<method>+bm25-rrf`` / ``<method>+bm25-score`` beside
``--out`` (``<out stem>+bm25-<fusion>.json``): BM25's setting and the generative run's fusion weight are
chosen on the VALIDATION split, then the split is fused once. Every result of a query dataset reports
``unseen``: the share of relevant items that are never a training target found in the top 10.
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


def parse_weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise ValueError(f"--fusion-weights must be comma-separated numbers, got {text!r}") from None
    if not weights or any(not (w >= 0 and w < float("inf")) for w in weights):
        raise ValueError(f"--fusion-weights must be finite numbers >= 0, got {text!r}")
    return weights


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
    fuse: str | None = typer.Option(None, "--fuse", help="bm25: also write the run fused with BM25"),
    fusion: str = typer.Option("rrf,score", "--fusion", help="fusion methods for --fuse: rrf, score"),
    fusion_weights: str = typer.Option("0.05,0.1,0.25,0.5,0.75,1,1.5,2,3", "--fusion-weights",
                                       help="generative-run weights tried on validation (BM25 = 1)"),
    bm25_index: Path | None = typer.Option(None, "--bm25-index", help="Lucene index dir for --fuse (default: indexes/<dataset>__bm25)"),
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
        if beam is not None and beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        fusions = [f.strip() for f in fusion.split(",") if f.strip()]
        weights = parse_weights(fusion_weights)
        if fuse is not None and fuse != "bm25":
            raise ValueError(f"--fuse {fuse!r}: only bm25 can be fused")
        from gr_toolkit.retrieval.hybrid import FUSION_METHODS

        if fuse and (not fusions or set(fusions) - set(FUSION_METHODS)):
            raise ValueError(f"--fusion {fusion!r}: use a comma list of {', '.join(FUSION_METHODS)}")
        if fuse and split == "valid":
            raise ValueError("--fuse chooses its weights on the validation split: evaluate --split test")
        from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner

        runner = GenerativeRetrieverRunner.load(run, device=device)
        from gr_toolkit.data.loaders import load_dataset

        ds = load_dataset(dataset, data_dir=data_dir, seed=data_seed)
        res = runner.evaluate(ds, split=split, ks=ks, beam_size=beam, batch_size=batch_size)
        hybrid = []
        if fuse:
            from gr_toolkit.retrieval.hybrid import hybrid_results

            typer.echo(f"fusing with BM25 (setting and weights chosen on {len(ds.valid):,} validation queries)")
            hybrid = hybrid_results(runner, ds, split, (res["items"], res["scores"]), ks, res["beam_size"], batch_size,
                                    fusions, weights, bm25_index or Path("indexes") / f"{ds.name}__bm25",
                                    log=typer.echo)
    except typer.Exit:
        raise
    except (DataError, ArtifactError, ValueError, KeyError) as e:
        _fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return
    man = runner.manifest
    examples = ds.split(split)
    unseen = None
    if ds.kind == "query" and split != "train":
        from gr_toolkit.evaluation.metrics import unseen_target_recall

        unseen = unseen_target_recall(res["items"], examples.targets, ds.train.targets, len(ds.catalog), k=10)
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
        **({"unseen": unseen} if unseen is not None else {}),
    )
    path = write_result(record, out_dir=out.parent, name=out.name)
    paths = [path]
    for h in hybrid:
        from gr_toolkit.evaluation.metrics import unseen_target_recall

        choice = h["choice"]
        fused = {**record, "method": f"{record['method']}+bm25-{h['fusion']}", "metrics": h["metrics"],
                 "fusion": {"method": h["fusion"], "generative_weight": choice.weight, "bm25_weight": 1.0,
                            "selected_on": "valid", "valid": choice.valid, "grid": choice.grid, "bm25": h["bm25"]},
                 "unseen": unseen_target_recall(h["items"], examples.targets, ds.train.targets, len(ds.catalog))}
        paths.append(write_result(fused, out_dir=out.parent, name=f"{out.stem}+bm25-{h['fusion']}{out.suffix}"))
    names = [f"recall@{x}" for x in ks] + [f"ndcg@{x}" for x in ks if x >= 5][:2]
    typer.echo(f"{ds.name} {split} ({ds.bucketing} buckets), beam {res['beam_size']}, "
               f"{res['n_examples']:,} examples in {res['retrieve_seconds']:.1f} s")
    typer.echo(bucket_table(res["metrics"], names))
    if unseen is not None:
        typer.echo(f"never-a-training-target positives ({unseen['n_pairs']:,}, {unseen['share_of_pairs']:.1%} of pairs): "
                   f"{unseen['recall@10']:.4f} found in the top 10")
    for h in hybrid:
        typer.echo(f"{record['method']}+bm25-{h['fusion']} (generative weight {h['choice'].weight}):")
        typer.echo(bucket_table(h["metrics"], names))
    for p in paths:
        typer.echo(f"wrote {p}")
