"""Generative retrieval with a pretrained source encoder, every item indexed, and BM25 fusion (issue 14).

Per dataset and seed:
1. MiniLM item vectors of the titles -> SEATER balanced 8-ary tree (`gr-toolkit embed` + `index`).
2. SEATER encoder-decoder whose encoder reads FROZEN all-MiniLM-L6-v2 token states of the query
   (`--encoder minilm`), trained on the training queries mixed with indexing examples (item title ->
   identifier, optional random title spans -> identifier; `--indexing`, `--indexing_ratio`), epoch
   selected on validation Recall@10.
3. Test once: the generative row, and its fusion with BM25 (RRF and score fusion; BM25 setting and
   fusion weight chosen on validation) -> rows `<method>`, `<method>+bm25-rrf`, `<method>+bm25-score`.
4. The share of test positives that are never a training target found in the top 10, for the
   generative row, the fused rows and BM25.

Per-seed result files go to eval/results/seeds/; the means over seeds (with their standard deviation,
`metrics_std`) are the rows eval/RESULTS.md shows: eval/results/<dataset>__<method>[+bm25-rrf|+bm25-score].json,
and the table eval/results/<dataset>__<method>__seeds.md. `--summarise-only` rebuilds those from seeds/.

    nice -n 10 .venv/bin/python recipes/search_pretrained.py --datasets homedepot --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gr_toolkit.cli.train import run_training
from gr_toolkit.data.buckets import assign_buckets
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.evaluation.metrics import evaluate_rankings, unseen_target_recall
from gr_toolkit.evaluation.results import current_command, device_name, result_record, write_result
from gr_toolkit.retrieval.hybrid import DEFAULT_WEIGHTS, hybrid_results
from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner
from gr_toolkit.training.pipeline import build_or_load_index

KS = (1, 5, 10, 20, 50, 100)
VECTOR_DIR = Path("indexes/vectors")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def title_vectors(ds):
    from gr_toolkit.vectors.io import load_vectors, save_vectors
    from gr_toolkit.vectors.text import item_text_vectors

    path = VECTOR_DIR / f"{ds.name}__text.npy"
    if path.exists():
        return load_vectors(path, ds.catalog), str(path)
    log(f"MiniLM title vectors for {len(ds.catalog):,} items")
    vec = item_text_vectors(ds.catalog, field="title")
    save_vectors(path, vec, {"method": "text", "dataset": ds.name, "model": "all-MiniLM-L6-v2", "field": "title",
                             "catalog_fingerprint": ds.catalog.fingerprint(),
                             "command": f"gr-toolkit embed {ds.name} --method text --field title --out {path}"})
    return vec, str(path)


def token_init_vectors(ds, vectors: np.ndarray, dim: int) -> str:
    """The title vectors reduced (PCA) to the model width, to start the identifier-token embeddings from."""
    from gr_toolkit.vectors.io import save_vectors
    from gr_toolkit.vectors.reduce import pca_reduce

    path = VECTOR_DIR / f"{ds.name}__text_pca{dim}.npy"
    if not path.exists():
        save_vectors(path, pca_reduce(vectors, dim), {"method": "pca", "source": f"{ds.name}__text.npy", "dim": dim,
                                                      "dataset": ds.name, "catalog_fingerprint": ds.catalog.fingerprint()})
    return str(path)


def run_seed(spec: str, seed: int, args) -> list[dict]:
    ds = load_dataset(spec, data_dir=args.data_dir, seed=0)
    name = ds.name  # a file-safe name: a spec like jsonl:/abs/path must not become part of a path
    vectors, vec_source = title_vectors(ds)
    index_dir = Path("indexes") / f"{name}__seater_k{args.k}_text"
    build_or_load_index(ds, "seater", vectors, {"k": args.k, "seed": 0}, index_dir, log=log)
    method = args.method
    run_dir = Path(args.runs_dir) / f"{name}__{method}__s{seed}"
    model = {"d_model": args.d_model, "heads": args.heads, "ffn": 4 * args.d_model, "layers": args.layers,
             "dropout": args.dropout, "max_query_len": args.max_len, "source_skip": args.source_skip}
    train = {"losses": args.losses, "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
             "lr": args.lr, "eval_beam": args.beam, "seed": seed, "threads": args.threads,
             "weighted": ds.bucketing == "traffic", "eval_batch_size": 512, "progress": False,
             "freeze": args.freeze, "indexing": args.indexing, "indexing_ratio": args.indexing_ratio, "indexing_spans": args.indexing_spans,
             "init_token_vectors": (vec_source.split(" ")[0] if args.source_skip  # feature width: PCA inside
                                    else token_init_vectors(ds, vectors, args.d_model)) if args.init_tokens else None}
    log(f"{name} seed {seed}: training {method} -> {run_dir}")
    run_training(spec, index_dir, run_dir, "seater", model, train, {"encoder": "minilm"}, data_dir=args.data_dir,
                 log=log)
    if args.valid_only:  # a sweep candidate: its validation score is recorded, test is not looked at
        man = json.loads((run_dir / "manifest.json").read_text())
        rec = {"dataset": ds.name, "method": method, "seed": seed, "split": "valid", "valid_best": man.get("best"),
               "epochs_done": man.get("epochs_done"), "train_config": man.get("train_config"),
               "model_config": man.get("model_config"), "command": current_command(), "run": str(run_dir)}
        sweep = Path(args.results_dir) / "sweeps"
        write_result(rec, sweep, name=f"{name}__{method}__s{seed}.valid.json")
        log(f"{name} s{seed} {method}: best valid {man['best']['metric']} {man['best']['value']:.4f} "
            f"(epoch {man['best']['epoch']}); test not scored")
        return [rec]
    runner = GenerativeRetrieverRunner.load(run_dir, device="auto")
    res = runner.evaluate(ds, "test", ks=KS, beam_size=args.beam, batch_size=512)
    man = runner.manifest
    test = ds.test
    unseen = unseen_target_recall(res["items"], test.targets, ds.train.targets, len(ds.catalog))
    base = dict(dataset=ds.name, protocol=ds.protocol, split="test", seed=seed, bucketing=ds.bucketing,
                n_examples=len(test), train_seconds=float(man.get("train_seconds", 0.0)),
                device=device_name(runner.device), command=current_command(), run=str(run_dir),
                index=str(index_dir), vectors=vec_source, best_epoch=(man.get("best") or {}).get("epoch"),
                valid_best=man.get("best"), beam_size=res["beam_size"], model_config=man.get("model_config"),
                train_config=man.get("train_config"))
    out_dir = Path(args.results_dir) / "seeds"
    records = [result_record(method=method, metrics=res["metrics"], unseen=unseen, **base)]
    log(f"fusing with BM25 (setting and weights chosen on {len(ds.valid):,} validation queries)")
    hybrid = hybrid_results(runner, ds, "test", (res["items"], res["scores"]), KS, args.beam, 512, ("rrf", "score"),
                            DEFAULT_WEIGHTS, Path("indexes") / f"{name}__bm25", log=log)
    for h in hybrid:
        c = h["choice"]
        records.append(result_record(
            method=f"{method}+bm25-{h['fusion']}", metrics=h["metrics"],
            unseen=unseen_target_recall(h["items"], test.targets, ds.train.targets, len(ds.catalog)),
            fusion={"method": h["fusion"], "generative_weight": c.weight, "bm25_weight": 1.0, "selected_on": "valid",
                    "valid": c.valid, "grid": c.grid, "bm25": h["bm25"]}, **base))
    bm25_items = hybrid[0]["bm25_items"]
    records.append(result_record(
        method="bm25 (tuned on valid, same run)", metrics=evaluate_rankings(bm25_items, test.targets, KS,
                                                                             assign_buckets(ds, test)),
        unseen=unseen_target_recall(bm25_items, test.targets, ds.train.targets, len(ds.catalog)),
        bm25=hybrid[0]["bm25"], **{**base, "train_seconds": 0.0}))
    for r in records:
        m = r["metrics"]
        log(f"{name} s{seed} {r['method']}: " + "  ".join(
            f"{b} R@10 {m[b]['recall@10']:.4f}" for b in ("all", "head", "torso", "tail") if b in m)
            + f"  unseen R@10 {r['unseen']['recall@10']:.4f}")
        if not r["method"].startswith("bm25"):
            write_result(r, out_dir, name=f"{name}__{r['method']}__s{seed}.json")
    write_result(records[-1], out_dir, name=f"{name}__bm25-tuned__s{seed}.json")
    return records


def _seed_file(results_dir: Path, name: str, row: str, seed: int) -> Path:
    path = results_dir / "seeds" / f"{name}__{row}__s{seed}.json"
    old = results_dir / path.name  # written beside the rows by an earlier version of this recipe
    if old.exists() and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        old.replace(path)
    return path


def mean_record(recs: list[dict]) -> dict:
    """One row from per-seed records: metrics averaged per bucket, their std in ``metrics_std``."""
    out = {k: v for k, v in recs[0].items() if k not in ("metrics", "seed", "command", "run", "best_epoch",
                                                         "valid_best", "train_seconds", "unseen", "fusion")}
    metrics, spread = {}, {}
    for b, m in recs[0]["metrics"].items():
        metrics[b] = {k: (float(np.mean([r["metrics"][b][k] for r in recs])) if k != "n" else v) for k, v in m.items()}
        spread[b] = {k: float(np.std([r["metrics"][b][k] for r in recs])) for k in m if k != "n"}
    out.update(metrics=metrics, metrics_std=spread, seed=",".join(str(r["seed"]) for r in recs), n_seeds=len(recs),
               train_seconds=float(np.mean([r["train_seconds"] for r in recs])),
               unseen={"recall@10": float(np.mean([r["unseen"]["recall@10"] for r in recs])),
                       "recall@10_std": float(np.std([r["unseen"]["recall@10"] for r in recs])),
                       "n_pairs": recs[0]["unseen"]["n_pairs"], "share_of_pairs": recs[0]["unseen"]["share_of_pairs"]},
               command=recs[0]["command"], per_seed=[{"seed": r["seed"], "command": r["command"], "run": r.get("run"),
                                                      "best_epoch": r.get("best_epoch"), "valid_best": r.get("valid_best"),
                                                      "fusion": r.get("fusion"), "recall@10": r["metrics"]["all"]["recall@10"]}
                                                     for r in recs])
    return out


def summarise(name: str, method: str, seeds: list[int], results_dir: Path) -> Path:
    """Mean ± std over seeds per row, from the per-seed result files; the mean rows for RESULTS.md."""
    rows = {}
    for suffix in ("", "+bm25-rrf", "+bm25-score"):
        recs = [json.loads(_seed_file(results_dir, name, f"{method}{suffix}", s).read_text()) for s in seeds]
        rows[f"{method}{suffix}"] = recs
        write_result(mean_record(recs), results_dir, name=f"{name}__{method}{suffix}.json")
    recs = [json.loads(_seed_file(results_dir, name, "bm25-tuned", s).read_text()) for s in seeds]
    rows["bm25 (tuned on valid, same run)"] = recs[:1]  # deterministic: one run
    lines = [f"# {name}: {method} over seeds {', '.join(map(str, seeds))}", "",
             f"Test split, n = {rows[method][0]['n_examples']} queries per row (the same queries in every row); "
             f"buckets `{rows[method][0]['bucketing']}`. Every choice (epoch, BM25 setting, fusion weight) was made "
             "on validation; test was scored once per seed. Cells: mean ± std over seeds.", "",
             "| method | R@10 all | head | torso | tail | R@50 all | NDCG@10 | unseen positives R@10 |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(vals):
        vals = [v for v in vals if v == v]
        if not vals:
            return "–"
        return f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}"

    for label, recs in rows.items():
        m = [r["metrics"] for r in recs]
        cells = [cell([x[b]["recall@10"] for x in m]) if b in m[0] else "–" for b in ("all", "head", "torso", "tail")]
        cells += [cell([x["all"]["recall@50"] for x in m]), cell([x["all"]["ndcg@10"] for x in m]),
                  cell([r["unseen"]["recall@10"] for r in recs])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    u = rows[method][0]["unseen"]
    lines += ["", f"Unseen positives: {u['n_pairs']:,} test (query, relevant item) pairs ({u['share_of_pairs']:.1%}) "
              "whose item is never a training target.", "", "Validation choices per seed:", ""]
    for label in (f"{method}+bm25-rrf", f"{method}+bm25-score"):
        for r in rows[label]:
            f = r["fusion"]
            lines.append(f"- {label}, seed {r['seed']}: generative weight {f['generative_weight']} (valid R@10 "
                         f"{f['valid']['recall@10']:.4f}; grid " + ", ".join(
                             f"{g['weight']}: {g['valid']['recall@10']:.4f}" for g in f["grid"]) + ")")
    lines += ["", "Commands:", ""]
    for s, r in zip(seeds, rows[method], strict=True):
        lines.append(f"- seed {s}: `{r['command']}` (best valid epoch {r['best_epoch']}, valid "
                     f"{(r.get('valid_best') or {}).get('value', float('nan')):.4f}, {r['train_seconds']:.0f} s "
                     f"training on {r['device']})")
    path = results_dir / f"{name}__{method}__seeds.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="homedepot")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--method", default="seater-minilm-idx")
    ap.add_argument("--k", type=int, default=40, help="tree branching (40: 3 levels for 54k items)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--source-skip", action=argparse.BooleanOptionalAction, default=False,
                    help="add the pooled MiniLM query embedding (PCA-projected) to every decoder state")
    ap.add_argument("--freeze", default="", help="parameter-name prefixes kept frozen, e.g. token_emb,skip_proj")
    ap.add_argument("--init-tokens", action=argparse.BooleanOptionalAction, default=True,
                    help="start token embeddings from PCA-reduced title vectors (the tree's own vectors)")
    ap.add_argument("--max-len", type=int, default=24, help="MiniLM word pieces per text ([CLS]/[SEP] included)")
    ap.add_argument("--losses", default="gen")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--indexing", default="title")
    ap.add_argument("--indexing-ratio", type=float, default=1.5)
    ap.add_argument("--indexing-spans", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default="eval/results")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--valid-only", action="store_true",
                    help="a sweep candidate: train and record the validation score only (eval/results/sweeps/)")
    ap.add_argument("--summarise-only", action="store_true", help="rebuild the mean rows from eval/results/seeds/")
    args = ap.parse_args()
    if args.summarise_only:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            log(f"wrote {summarise(name, args.method, seeds, Path(args.results_dir))}")
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for spec in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        name = ""
        for seed in seeds:
            name = run_seed(spec, seed, args)[0]["dataset"]
        if not args.valid_only:
            log(f"wrote {summarise(name, args.method, seeds, Path(args.results_dir))}")


if __name__ == "__main__":
    main()
