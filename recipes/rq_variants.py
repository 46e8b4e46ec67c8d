"""RQ semantic IDs end to end: four identifier variants, trained and evaluated by head/torso/tail.

For each dataset: item vectors -> RQ-KMeans codes (3 levels) -> one index per variant -> a generator
trained on it with the shared trainer -> full-catalog constrained beam search on the test split ->
eval/results/<dataset>__<method>.json and eval/results/<dataset>__rq_variants.md.

Variants (same RQ codes, same model and training budget; only the identifiers / losses differ):

- ``plain``          3-level codes + a disambiguation token where codes collide (TIGER identifiers), L_gen.
- ``drop-level``     the most concentrated middle level dropped (sand-glass pruning (a)), L_gen.
- ``adaptive``       the top-K most frequent middle-level tokens stripped from the identifiers that carry
                     them -> variable-length IDs (pruning (b)). The documented K rule gives K=0 on all
                     three catalogs (no sand-glass, see eval/rq/README.md), which would equal ``plain``,
                     so K is given: ``--adaptive-k`` (default 10% of the middle codebook), L_gen.
- ``seater-losses``  plain codes with one token per code prefix (a real token tree), L_gen + SEATER's
                     alignment and ranking plug-ins (lambda 0.05 each).

Backbones: ``--model t5`` is the TIGER model (T5, 4+4 layers, d=128, from scratch; method names
``tiger``, ``tiger-drop-level``, ...); ``--model seater`` is the 1-layer d=64 SEATER encoder-decoder
(method names ``rq-plain``, ``rq-drop-level``, ...), cheap enough on CPU to run every variant on every
dataset.

    nice -n 10 .venv/bin/python recipes/rq_variants.py --datasets beauty --model t5 --variants plain --seed 0
    nice -n 10 .venv/bin/python recipes/rq_variants.py --datasets bestbuy,homedepot,beauty --model seater --seed 0

Vectors: Beauty = SASRec item vectors (`indexes/beauty_cf.npy`, from `gr-toolkit embed beauty --method cf`);
Home Depot = 64-d LSA of titles (`indexes/vectors/homedepot__lsa64.npy`, recipes/lsa_vectors.py);
Best Buy = MiniLM vectors of each item's training queries (items have no names).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gr_toolkit.cli.train import run_training
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.training.pipeline import build_or_load_index, evaluate_run, write_markdown

VARIANTS = ("plain", "drop-level", "adaptive", "seater-losses")
DEFAULT_VECTORS = {
    "beauty": "indexes/beauty_cf.npy",
    "homedepot": "indexes/vectors/homedepot__lsa64.npy",
    "bestbuy": "indexes/vectors/bestbuy__text.npy",
}
#: Codebook per level: TIGER's 256 where the catalog can fill it; Best Buy's 413 items cannot (levels 1-2
#: would be capped at 242 and 45 distinct residuals, eval/rq/README.md), so 16 (16^3 = 4,096 paths).
DEFAULT_CODEBOOK = {"beauty": 256, "homedepot": 256, "bestbuy": 16}
PUBLISHED_TIGER_BEAUTY = {"recall@5": 0.0454, "recall@10": 0.0648, "ndcg@5": 0.0321, "ndcg@10": 0.0384}


def method_name(model: str, variant: str) -> str:
    base = "tiger" if model == "t5" else "rq"
    if variant == "plain":
        return base if model == "t5" else "rq-plain"
    return f"{base}-{variant}"


def index_options(variant: str, codebook: int, levels: int, adaptive_k: int | None) -> dict:
    opts: dict = {"levels": levels, "codebook": codebook, "seed": 0}
    if variant == "drop-level":
        opts["prune"] = "drop-level"
    elif variant == "adaptive":
        opts["prune"] = "adaptive"
        opts["adaptive_top_k"] = max(2, codebook // 10) if adaptive_k is None else adaptive_k
    elif variant == "seater-losses":
        opts["tokens_are_prefixes"] = True
    return opts


def load_vectors_for(name: str, dataset, explicit: dict[str, str]) -> tuple[np.ndarray, str]:
    from gr_toolkit.vectors.io import load_vectors

    path = Path(explicit.get(name) or DEFAULT_VECTORS[name])
    if not path.exists():
        raise SystemExit(f"{name}: item vectors {path} not found; build them first (see this script's docstring) "
                         f"or pass --vectors {name}=FILE.npy")
    side = path.with_suffix(".json")
    cmd = json.loads(side.read_text()).get("command", "") if side.exists() else ""
    return load_vectors(path, dataset.catalog), f"{path}" + (f" ({cmd})" if cmd else "")


def run_variant(name: str, ds, vectors: np.ndarray, vec_source: str, variant: str, args) -> dict:
    codebook = args.codebook or DEFAULT_CODEBOOK[name]
    opts = index_options(variant, codebook, args.levels, args.adaptive_k)
    tag = "_".join(f"{k}{v}" for k, v in sorted(opts.items()) if k not in ("seed",))
    index_dir = Path("indexes") / f"{name}__rq_{Path(vec_source.split(' ')[0]).stem}_{tag}"
    index, index_seconds = build_or_load_index(ds, "rq", vectors, opts, index_dir)
    method = method_name(args.model, variant)
    losses = "gen,align,rank" if variant == "seater-losses" else "gen"
    history = ds.protocol == "leave-one-out"
    train_opts = {
        "losses": losses, "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
        "lr": args.lr, "weight_decay": args.weight_decay, "eval_beam": args.beam,
        "align_weight": 0.05, "rank_weight": 0.05, "rank_beta": 0.001, "rank_max_examples": 64,
        "eval_max_examples": args.eval_max_examples, "max_steps_per_epoch": args.max_steps_per_epoch,
        "seed": args.seed, "threads": args.threads, "eval_batch_size": 512,
        "weighted": ds.bucketing == "traffic",
    }
    model_opts: dict = {"dropout": args.dropout}
    if args.model == "seater" and not history:
        model_opts["max_query_len"] = 32
    run_dir = Path(args.runs_dir) / f"{name}__{method}__s{args.seed}"
    run_training(name, index_dir, run_dir, args.model, model_opts, train_opts,
                 {} if history else {"vocab_size": args.text_vocab}, data_dir=args.data_dir, log=print)
    meta = getattr(index, "meta_extra", {})
    lengths = np.asarray(index.lengths)
    record = evaluate_run(run_dir, ds, method, (1, 5, 10, 20, 50, 100), args.beam, args.seed, {
        "index": str(index_dir), "index_scheme": "rq", "index_options": opts, "variant": variant,
        "vectors": vec_source, "index_seconds": round(index_seconds, 2), "losses": losses,
        "backbone": args.model, "vocab_size": int(index.vocab_size),
        "id_length_mean": round(float(lengths.mean()), 3),
        "prune_decision": meta.get("prune_decision") or meta.get("prune"),
        "validation_subset": args.eval_max_examples,
    }, out_dir=Path(args.results_dir))
    m = record["metrics"]
    print(f"{name} {method}: " + "  ".join(
        f"{b} R@10 {m[b]['recall@10']:.4f} (n={m[b]['n']})" for b in ("all", "head", "torso", "tail") if b in m))
    return record


def write_report(name: str, ds, results_dir: Path) -> None:
    records = []
    for p in sorted(results_dir.glob(f"{name}__*.json")):
        r = json.loads(p.read_text())
        if r.get("index_scheme") == "rq" and r.get("variant"):
            records.append(r)
    if not records:
        return
    notes = [
        f"Dataset {name}: protocol {ds.protocol}, buckets `{ds.bucketing}`"
        + (" (a proxy: no traffic counts)" if ds.bucketing.startswith("proxy") else "")
        + f"; {len(ds.catalog):,} items; full-catalog constrained beam search (beam {records[0].get('beam_size')}).",
        "Variants share the RQ-KMeans codes (3 levels, seed 0) and the training budget; model selection on "
        "validation Recall@10 only. Identifier shape per row: `id_length_mean`, `vocab_size`, `prune_decision` "
        "in the JSON.",
    ]
    if name == "beauty":
        notes.append("TIGER published on this split (Rajput et al. 2023): " + ", ".join(
            f"{k} {v:.4f}" for k, v in PUBLISHED_TIGER_BEAUTY.items()) + ". Ours differ in item vectors (SASRec "
            "CF vectors here; TIGER used Sentence-T5 embeddings of item metadata, which this data lacks), "
            "training budget (CPU) and a children-only softmax for L_gen.")
    write_markdown(records, results_dir / f"{name}__rq_variants.md", f"RQ identifier variants on {name}", notes)


def write_summary(results_dir: Path, out: Path) -> Path:
    """One table over every dataset's RQ-variant and TIGER results (eval/rq/retrieval.md)."""
    lines = ["# RQ identifier variants and TIGER: retrieval by bucket (test split)", "",
             f"Generated by `python recipes/rq_variants.py --summary-only` from `{results_dir}/<dataset>__rq-*.json` and "
             "`__tiger.json`; each row's exact command is in its JSON (`command`) and in "
             "`<dataset>__rq_variants.md`. Buckets: Best Buy by traffic; Home Depot `proxy:query-length`; Beauty "
             "`proxy:target-popularity`.", "",
             "| dataset | method | backbone | variant | pruning | mean ID length | R@10 all | NDCG@10 all | R@10 head | "
             "R@10 torso | R@10 tail | R@50 all | best / done epochs | train s |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name in ("beauty", "homedepot", "bestbuy"):
        for p in sorted(results_dir.glob(f"{name}__*.json")):
            r = json.loads(p.read_text())
            if r.get("index_scheme") != "rq" or not r.get("variant"):
                continue
            m, dec = r["metrics"], r.get("prune_decision") or {}
            prune = {"drop-level": f"drop level {dec.get('level')}", "adaptive": f"top-{dec.get('top_k')} of level "
                     f"{dec.get('level')}"}.get(dec.get("mode", ""), "none")
            lines.append(
                f"| {name} | {r['method']} | {r['backbone']} | {r['variant']} | {prune} | {r.get('id_length_mean')} | "
                + " | ".join(f"{m.get(b, {}).get(k, float('nan')):.4f}" for k, b in (
                    ("recall@10", "all"), ("ndcg@10", "all"), ("recall@10", "head"), ("recall@10", "torso"),
                    ("recall@10", "tail"), ("recall@50", "all")))
                + f" | {r.get('best_epoch')} / {r.get('epochs_done')} | {r['train_seconds']:.0f} |")
    lines += ["", "TIGER published on Beauty (same leave-one-out split): " + ", ".join(
        f"{k} {v:.4f}" for k, v in PUBLISHED_TIGER_BEAUTY.items()) + "."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="bestbuy,homedepot,beauty")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="seater", choices=("seater", "t5"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=None, help="per-level codebook (default per dataset)")
    ap.add_argument("--adaptive-k", type=int, default=None, help="tokens stripped by `adaptive` (default C/10)")
    ap.add_argument("--vectors", default=None, help="per-dataset vectors, e.g. beauty=indexes/beauty_cf.npy")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--text-vocab", type=int, default=8000)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--eval-max-examples", type=int, default=3000)
    ap.add_argument("--max-steps-per-epoch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results-dir", default="eval/results")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--summary-only", action="store_true", help="only rewrite eval/rq/retrieval.md from the results")
    args = ap.parse_args()
    if args.summary_only:
        print(f"wrote {write_summary(Path(args.results_dir), Path('eval/rq/retrieval.md'))}")
        return
    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    explicit = dict(kv.split("=", 1) for kv in args.vectors.split(",")) if args.vectors else {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name not in DEFAULT_VECTORS and name not in explicit:
            raise SystemExit(f"{name}: no default vectors; pass --vectors {name}=FILE.npy")
        ds = load_dataset(name, data_dir=args.data_dir, seed=0)
        vectors, vec_source = load_vectors_for(name, ds, explicit)
        for variant in variants:
            run_variant(name, ds, vectors, vec_source, variant, args)
            write_report(name, ds, Path(args.results_dir))
    write_summary(Path(args.results_dir), Path("eval/rq/retrieval.md"))


if __name__ == "__main__":
    main()
