"""Sand-glass diagnostics of RQ semantic IDs on real catalogs, before and after pruning.

For each dataset: text item vectors (all-MiniLM-L6-v2 via ``gr_toolkit.vectors.text``; Best Buy items
are described by their training queries, as the data loader builds them) -> RQ-KMeans codes with
``levels`` levels at two codebook sizes: the TIGER default 256 and the catalog-sized
``round(n ** (1/levels))`` -> per-level diagnostics, the sand-glass verdict, drop-level and adaptive
pruning of the same codes. Writes ``eval/rq/<dataset>_diagnostics.{json,md}`` and one PNG per codebook
size (rank-frequency per level: before, after drop-level, after adaptive).

    nice -n 10 .venv/bin/python recipes/rq_diagnostics.py --datasets beauty,homedepot,bestbuy --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.evaluation.results import current_command
from gr_toolkit.identifiers.plots import plot_rank_frequency
from gr_toolkit.identifiers.pruning import PruneDecision, pruned_level_codes
from gr_toolkit.identifiers.rq import RQConfig, build_code_index, check_vectors, codebook_for, quantize
from gr_toolkit.identifiers.sandglass import (
    SANDGLASS_MARGIN,
    DiagnosticsTable,
    diagnose,
    is_sandglass,
    level_counts,
    verdict,
)


def item_vectors(dataset, cache_dir: Path) -> tuple[np.ndarray, str]:
    """Text vectors of the catalog, cached (with the catalog fingerprint) under ``cache_dir``."""
    from gr_toolkit.vectors.io import load_vectors, save_vectors
    from gr_toolkit.vectors.text import item_text_vectors

    cat = dataset.catalog
    path = cache_dir / f"{dataset.name}__text.npy"
    if path.exists():
        return load_vectors(path, cat), f"text: all-MiniLM-L6-v2 (cached {path})"
    t = time.time()
    vecs = item_text_vectors(cat)
    save_vectors(path, vecs, {"method": "text", "model": "all-MiniLM-L6-v2", "dataset": dataset.name,
                              "catalog_fingerprint": cat.fingerprint()})
    return vecs, f"text: all-MiniLM-L6-v2 ({time.time() - t:.0f} s to embed)"


def stage_counts(codes: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return [level_counts(codes, lvl, c) for lvl, c in enumerate(sizes)]


def residual_norms_by_token_rank(x: np.ndarray, rq) -> list[dict[str, float]]:
    """Per level: mean norm of the residual ENTERING the level for items routed by the level's most
    frequent 10% of entries (at least 1) vs all other items (evidence for why a level concentrates: k-means on residuals
    gathers the many small residuals in a few central entries)."""
    r = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = []
    for lvl, book in enumerate(rq.codebooks):
        codes = rq.codes[:, lvl]
        norms = np.linalg.norm(r, axis=1)
        counts = np.bincount(codes, minlength=len(book))
        k = max(1, int(np.ceil(0.1 * len(book))))
        top = np.isin(codes, np.argsort(-counts, kind="stable")[:k])
        out.append({
            "level": lvl,
            "top_entries": k,
            "mean_norm_top_items": float(norms[top].mean()),
            "mean_norm_other_items": float(norms[~top].mean()) if (~top).any() else float("nan"),
            "top_entries_item_share": float(top.mean()),
        })
        r = r - book[codes]
    return out


def run_codebook(x: np.ndarray, fingerprint: str, levels: int, codebook: int, seed: int, png: Path,
                 dataset: str, method: str, forced_k_fraction: float = 0.1) -> dict[str, Any]:
    cfg = RQConfig(levels=levels, codebook=codebook, seed=seed, method=method)
    t = time.time()
    rq = quantize(x, cfg)
    quant_s = time.time() - t
    sizes = rq.codebook_sizes
    before = diagnose(rq.codes, sizes)
    tables: dict[str, DiagnosticsTable] = {"before pruning": before}
    counts = {"before": stage_counts(rq.codes, sizes)}
    variants: dict[str, Any] = {}
    # The rule-chosen adaptive K is 0 when the middle level is not the most concentrated; the
    # "adaptive-given-K" variant shows what stripping a fixed share of the middle codebook does anyway.
    given_k = max(1, int(round(forced_k_fraction * sizes[1]))) if levels >= 3 else None
    plans = [("none", {}), ("drop-level", {}), ("adaptive", {})]
    if given_k is not None:
        plans.append((f"adaptive K={given_k}", {"prune": "adaptive", "adaptive_top_k": given_k}))
    for label, opts in plans:
        pcfg = RQConfig(levels=levels, codebook=codebook, seed=seed, method=method,
                        **({"prune": label} if not opts else opts))
        index = build_code_index(rq.codes, sizes, fingerprint, pcfg)
        decision = index.meta_extra["prune"]
        variants[label] = {
            "decision": decision,
            "vocab_size": index.vocab_size,
            "disambiguation_tokens": index.meta_extra["n_disambig"],
            "disambiguated_items": index.meta_extra["n_disambiguated_items"],
            "length_min": int(index.lengths.min()),
            "length_mean": float(index.lengths.mean()),
            "length_max": int(index.lengths.max()),
        }
        if label != "none":
            codes_after, sizes_after = pruned_level_codes(
                rq.codes, index.extras["rq_keep"].astype(bool), sizes, PruneDecision(**decision)
            )
            tag = f"adaptive, rule K={decision['top_k']}" if label == "adaptive" else label
            tables[f"after {tag}"] = diagnose(codes_after, sizes_after)
            counts[f"after {tag}"] = stage_counts(codes_after, sizes_after)
    mechanism = residual_norms_by_token_rank(x, rq) if method == "kmeans" else None
    plot_rank_frequency(
        counts, png,
        title=f"{dataset}: RQ-{method} L={levels} C={codebook} ({len(x)} items), items per token by level",
    )
    return {
        "codebook_requested": codebook,
        "codebook_sizes": sizes,
        "notes": rq.notes,
        "recon_mse": rq.recon_mse,
        "quantize_seconds": round(quant_s, 2),
        "is_sandglass": is_sandglass(before),
        "verdict": verdict(before),
        "variants": variants,
        "tables": {k: v.to_dict() for k, v in tables.items()},
        "plot": str(png),
        "residual_norms": mechanism,
        "_tables": tables,
    }


def markdown(name: str, info: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = [f"# RQ semantic-ID diagnostics: {name}\n"]
    lines.append(f"- command: `{info['command']}`")
    for k in ("n_items", "vectors", "levels", "method", "seed"):
        lines.append(f"- {k}: {info[k]}")
    lines.append(f"- sand-glass rule: a middle level's Gini exceeds BOTH neighbours' by >= {SANDGLASS_MARGIN}")
    lines.append("")
    lines.append("## Verdict\n")
    for r in runs:
        lines.append(f"- C={r['codebook_requested']} (actual {r['codebook_sizes']}): {r['verdict']}")
    for r in runs:
        lines.append(f"\n## Codebook {r['codebook_requested']} (actual sizes {r['codebook_sizes']})\n")
        lines.append(f"Plot: `{Path(r['plot']).name}`. RQ-KMeans residual MSE per level: "
                     + ", ".join(f"{m:.4f}" for m in r["recon_mse"]) + f"; quantisation {r['quantize_seconds']} s.")
        for n in r["notes"]:
            lines.append(f"\nNote: {n}")
        if r.get("residual_norms"):
            lines.append("\nMean norm of the residual entering each level, items routed by its most frequent "
                         "10% of entries (share of items in brackets) vs the rest: " + "; ".join(
                             f"L{m['level']}: {m['mean_norm_top_items']:.3f} ({m['top_entries_item_share']:.2f}) "
                             f"vs {m['mean_norm_other_items']:.3f}"
                             for m in r["residual_norms"]) + ".")
        lines.append("\n| identifiers | vocab | disamb. tokens | items with one | length min/mean/max | pruning |")
        lines.append("|---|---:|---:|---:|---|---|")
        for mode, v in r["variants"].items():
            lines.append(
                f"| {mode} | {v['vocab_size']} | {v['disambiguation_tokens']} | {v['disambiguated_items']} | "
                f"{v['length_min']}/{v['length_mean']:.3f}/{v['length_max']} | {v['decision']['rule']} |"
            )
        for stage, table in r["_tables"].items():
            lines.append(f"\n### {stage}\n\n{verdict(table)}\n\n{table.markdown()}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="beauty,homedepot,bestbuy")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebooks", default="256,auto", help="comma list; 'auto' = round(n ** (1/levels))")
    ap.add_argument("--method", default="kmeans", choices=["kmeans", "vae"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--given-k-fraction", type=float, default=0.1,
                    help="extra adaptive variant stripping round(f * C) middle tokens (besides the rule's K)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="eval/rq")
    ap.add_argument("--cache", default="indexes/vectors", help="where item vectors are cached (git-ignored)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = current_command()
    for name in args.datasets.split(","):
        ds = load_dataset(name, data_dir=args.data_dir, seed=args.seed)
        vecs, how = item_vectors(ds, Path(args.cache))
        x = check_vectors(vecs, len(ds.catalog))
        n = len(ds.catalog)
        sizes = []
        for c in args.codebooks.split(","):
            size = codebook_for(n, args.levels) if c == "auto" else int(c)
            if size not in sizes:
                sizes.append(size)
        suffix = "" if args.method == "kmeans" else f"_{args.method}"
        runs = [
            run_codebook(x, ds.catalog.fingerprint(), args.levels, c, args.seed,
                         out / f"{name}{suffix}_C{c}_token_distribution.png", name, args.method,
                         args.given_k_fraction)
            for c in sizes
        ]
        info = {"dataset": name, "n_items": n, "vectors": how, "levels": args.levels, "method": args.method,
                "seed": args.seed, "command": command}
        if name == "bestbuy":
            info["vectors"] += " over item text = the item's training queries (products have no names)"
        record = {**info, "runs": [{k: v for k, v in r.items() if k != "_tables"} for r in runs]}
        (out / f"{name}{suffix}_diagnostics.json").write_text(json.dumps(record, indent=2) + "\n")
        (out / f"{name}{suffix}_diagnostics.md").write_text(markdown(name, info, runs))
        for r in runs:
            print(f"{name} C={r['codebook_requested']}: {r['verdict']}", flush=True)


if __name__ == "__main__":
    main()
