"""SEATER for e-commerce SEARCH (query text -> product) on Home Depot and Best Buy, head/torso/tail.

Pipeline per dataset: MiniLM text vectors of the items (`gr-toolkit embed DATASET --method text`) ->
balanced k-ary tree (`seater` scheme) -> SEATER encoder-decoder whose encoder reads the query's
sentencepiece tokens (trained on training queries + titles) -> gen + align + rank losses, selection on
validation Recall@10 -> test metrics per bucket -> eval/results/<dataset>__seater.json and
eval/results/<dataset>__seater.md.

    nice -n 10 .venv/bin/python recipes/seater_search.py --datasets bestbuy,homedepot --seed 0

Buckets: Best Buy by real traffic (query frequency in the training log); Home Depot has no traffic, its
buckets are the `proxy:query-length` proxy (named in every result). Best Buy trains on queries drawn in
proportion to their traffic (`weighted`); Home Depot pairs are used once per epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gr_toolkit.cli.train import run_training
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.training.pipeline import build_or_load_index, evaluate_run, write_markdown

VECTOR_DIR = Path("indexes/vectors")


def text_vectors(dataset, explicit: str | None = None):
    """``(vectors, source)``: ``explicit`` (a .npy of this catalog), else an existing text-vector file of
    this catalog, else MiniLM vectors computed and cached."""
    from gr_toolkit.vectors.io import VectorError, load_vectors, save_vectors

    if explicit:
        side = Path(explicit).with_suffix(".json")
        cmd = json.loads(side.read_text()).get("command", "") if side.exists() else ""
        return load_vectors(explicit, dataset.catalog), f"{explicit} ({cmd})"

    for path in (VECTOR_DIR / f"{dataset.name}__text.npy", VECTOR_DIR / f"hf_{dataset.name}__text.npy"):
        if path.exists():
            try:
                vec = load_vectors(path, dataset.catalog)
            except VectorError:
                continue
            side = path.with_suffix(".json")
            cmd = json.loads(side.read_text()).get("command", "") if side.exists() else ""
            return vec, f"{path} ({cmd})"
    from gr_toolkit.vectors.text import item_text_vectors

    vec = item_text_vectors(dataset.catalog)
    path = VECTOR_DIR / f"{dataset.name}__text.npy"
    save_vectors(path, vec, {"method": "text", "dataset": dataset.name, "model": "all-MiniLM-L6-v2",
                             "catalog_fingerprint": dataset.catalog.fingerprint(),
                             "command": "recipes/seater_search.py (item_text_vectors, field=text)"})
    return vec, str(path)


def run_one(spec: str, args) -> dict:
    ds = load_dataset(spec, data_dir=args.data_dir, seed=0)
    name = ds.name  # file-safe: a spec like jsonl:/abs/path must not become part of a path
    explicit = dict(kv.split("=", 1) for kv in args.vectors.split(",")).get(name) if args.vectors else None
    vectors, vec_source = text_vectors(ds, explicit)
    tag = Path(explicit).stem.split("__")[-1] if explicit else "text"
    index_dir = Path("indexes") / f"{name}__seater_k{args.k}_{tag}"
    index, index_seconds = build_or_load_index(ds, "seater", vectors, {"k": args.k, "seed": 0}, index_dir)
    method = args.method or "seater"
    train_opts = {
        "losses": args.losses, "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
        "lr": args.lr, "weight_decay": args.weight_decay, "align_weight": args.align_weight,
        "rank_weight": args.rank_weight, "rank_beta": args.rank_beta, "eval_beam": args.beam,
        "rank_max_examples": args.rank_max_examples,
        "seed": args.seed, "threads": args.threads, "weighted": ds.bucketing == "traffic",
        "max_steps_per_epoch": args.max_steps_per_epoch, "eval_batch_size": 512,
    }
    run_dir = Path(args.runs_dir) / f"{name}__{method}__s{args.seed}"
    run_training(spec, index_dir, run_dir, "seater", {"dropout": args.dropout, "max_query_len": 32}, train_opts,
                 {"vocab_size": args.text_vocab}, data_dir=args.data_dir, log=print)
    record = evaluate_run(run_dir, ds, method, (1, 5, 10, 20, 50, 100), args.beam, args.seed, {
        "index": str(index_dir), "index_scheme": "seater", "k": args.k, "vectors": vec_source,
        "index_seconds": round(index_seconds, 2), "losses": args.losses,
    }, out_dir=Path(args.results_dir))
    m = record["metrics"]
    print(f"{name} {method}: " + "  ".join(
        f"{b} R@10 {m[b]['recall@10']:.4f} (n={m[b]['n']})" for b in ("all", "head", "torso", "tail") if b in m))
    notes = [f"Dataset {name}: protocol {ds.protocol}, buckets `{ds.bucketing}`"
             + (" (a proxy: this data has no traffic counts)" if ds.bucketing.startswith("proxy") else "")
             + f"; {len(ds.catalog):,} items, {len(ds.train):,} train / {len(ds.valid):,} valid / {len(ds.test):,} "
             "test queries; full-catalog constrained beam search.",
             "Model selection on the validation split only."]
    write_markdown([record], Path(args.results_dir) / f"{name}__{method}.md", f"SEATER search on {name}", notes)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="bestbuy,homedepot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--vectors", default=None, help="per-dataset item vectors, e.g. homedepot=indexes/vectors/x.npy")
    ap.add_argument("--losses", default="gen,align,rank")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--align-weight", type=float, default=0.05)
    ap.add_argument("--rank-weight", type=float, default=0.05)
    ap.add_argument("--rank-beta", type=float, default=0.001)
    ap.add_argument("--rank-max-examples", type=int, default=None, help="rows per batch for the ranking loss")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--text-vocab", type=int, default=8000)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--max-steps-per-epoch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", default=None)
    ap.add_argument("--results-dir", default="eval/results")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        run_one(name, args)


if __name__ == "__main__":
    main()
