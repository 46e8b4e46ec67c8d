"""Lexical identifiers: query -> multi-span vs SEAL's single n-gram, on Home Depot and Best Buy.

Per dataset, two ``lexical`` indexes that differ only in ``target_mode`` (``multispan``: up to
``n_spans`` title spans chosen by overlap with the query, joined by a separator; ``seal``: one span),
the same SEATER encoder-decoder trained on each with the generation loss only (same seed, same
budget), then test Recall@K / NDCG@K per head/torso/tail bucket with SEAL-style span scoring.
Everything goes through the CLI; the exact commands are recorded in the markdown and in each result.

    nice -n 10 .venv/bin/python recipes/lexical_vs_seal.py --datasets bestbuy,homedepot --seed 0

Best Buy items have no names: the loader describes an item by the training queries that clicked it,
so its "titles" (the span corpus) are query text. Home Depot buckets are a query-length proxy (no
traffic); Best Buy buckets are by real query traffic.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(ROOT / ".venv/bin/gr-toolkit")]
MODES = {"multispan": [], "seal": ["--target-mode", "seal"]}
METRICS = ["recall@1", "recall@10", "recall@50", "ndcg@10"]


def run(cmd: list[str], log: Path) -> str:
    """Run one CLI command (appending its output to ``log``); return it as a shell string."""
    text = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {text}", flush=True)
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {text}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}), see {log}: {text}")
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return text.replace(str(ROOT) + "/", "")


def budget(name: str, args: argparse.Namespace) -> list[str]:
    """Training options: same for both target modes of a dataset (CPU-sized, see --help)."""
    opts = ["--epochs", str(args.epochs), "--max_steps_per_epoch", str(args.max_steps), "--eval_max_examples",
            str(args.eval_max_examples), "--eval_beam", str(args.beam), "--patience", str(args.patience),
            "--eval_every", str(args.eval_every), "--threads", "1",
            "--progress", "false", "--batch_size", str(args.batch_size)]
    if name == "bestbuy":
        opts += ["--weighted", "true"]  # real traffic: draw training pairs by clicks
    return opts


def run_dataset(name: str, args: argparse.Namespace, log: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for mode in args.modes.split(","):
        extra = MODES[mode]
        method = f"lexical-{mode}"
        index_dir = ROOT / "indexes" / f"{name}__{method}"
        run_dir = ROOT / "runs" / f"{name}__{method}__s{args.seed}{args.run_suffix}"
        result = ROOT / "eval" / "results" / f"{name}__{method}.json"
        cmds = []
        if not (index_dir / "manifest.json").exists():
            cmds.append(run(CLI + ["index", name, "--scheme", "lexical", "--config", "indexes/configs/lexical.yaml",
                                   *extra, "--out", str(index_dir)], log))
        else:
            cmds.append(f"(reused) gr-toolkit index {name} --scheme lexical --config indexes/configs/lexical.yaml "
                        f"{' '.join(extra)} --out {index_dir.relative_to(ROOT)}")
        cmds.append(run(CLI + ["train", name, "--index", str(index_dir), "--model", "seater", "--losses", "gen",
                               "--seed", str(args.seed), "--out", str(run_dir), *budget(name, args)], log))
        eval_cmd = CLI + ["eval", name, "--run", str(run_dir), "--out", str(result), "--method", method,
                          "--beam", str(args.beam), "--k", "1,5,10,20,50", "--batch-size", "64"]
        rec = json.loads(result.read_text()) if result.exists() else {}
        if args.reuse_results and rec.get("run") == str(run_dir):  # evaluated by an earlier call of this recipe
            cmds.append(rec.get("command", " ".join(shlex.quote(c) for c in eval_cmd)).replace(str(ROOT) + "/", ""))
        else:
            cmds.append(run(eval_cmd, log))
        rec = json.loads(result.read_text())
        rec["recipe_commands"] = cmds
        result.write_text(json.dumps(rec, indent=2) + "\n")
        out[method] = rec
    return out


def fmt(v) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown(results: dict[str, dict[str, dict]], args: argparse.Namespace) -> str:
    lines = ["# Lexical identifiers: query -> multi-span vs SEAL single n-gram", "",
             "Each result below was produced by `recipes/lexical_vs_seal.py`; the per-dataset options are in the "
             "commands under each table (and in the `recipe_commands` field of each result JSON).", "",
             "Same SEATER encoder-decoder (1 layer, d=64), generation loss only, same seed and CPU budget for "
             "both target modes; ranking = SEAL-style span scoring (each span weighted by its own token "
             "log-probabilities vs. its corpus frequency, non-overlapping spans summed per item). Test split, "
             f"beam {args.beam}.", "",
             "**Best Buy items have no names**: the loader describes each SKU by the training queries that "
             "clicked it (17 of 413 SKUs have none, so they cannot be retrieved by any span); the span corpus "
             "is therefore query text. Best Buy buckets are by real query traffic; Home Depot buckets use the "
             "`proxy:query-length` proxy (no traffic in that data set).", ""]
    for name, recs in results.items():
        any_rec = next(iter(recs.values()))
        lines += [f"## {name} ({any_rec.get('bucketing')} buckets, {any_rec.get('n_examples')} test queries)", "",
                  "| bucket | n | method | " + " | ".join(METRICS) + " |",
                  "|---|---|---|" + "---|" * len(METRICS)]
        for bucket in ("all", "head", "torso", "tail"):
            for method, rec in recs.items():
                m = rec["metrics"].get(bucket)
                if m is None:
                    continue
                lines.append(f"| {bucket} | {m.get('n', '')} | {method} | "
                             + " | ".join(fmt(m.get(k)) for k in METRICS) + " |")
        lines.append("")
        lines.append("| method | train s | best epoch | retrieve s |")
        lines.append("|---|---|---|---|")
        for method, rec in recs.items():
            lines.append(f"| {method} | {fmt(rec.get('train_seconds'))} | {rec.get('best_epoch')} | "
                         f"{fmt(rec.get('retrieve_seconds'))} |")
        lines += ["", "Commands:", "", "```"]
        for rec in recs.values():
            lines += rec.get("recipe_commands", [])
        lines += ["```", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="bestbuy,homedepot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="multispan,seal", help="target modes to run (both by default)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-steps", type=int, default=40, help="optimiser steps per epoch (CPU budget)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-max-examples", type=int, default=300, help="validation subset for model selection")
    p.add_argument("--beam", type=int, default=50)
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience in evaluations (0 = never)")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--run-suffix", default="", help="appended to run directory names (a second budget)")
    p.add_argument("--report", default="eval/results/lexical_vs_seal.md")
    p.add_argument("--reuse-results", action="store_true",
                   help="keep a result JSON already written for the same run directory (no re-evaluation)")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild the markdown from the result JSONs of --datasets (runs done separately)")
    args = p.parse_args()
    log = ROOT / "runs" / "lexical_vs_seal.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    report = ROOT / args.report
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if args.report_only:
            results[name] = {f"lexical-{m}": json.loads((ROOT / "eval" / "results" / f"{name}__lexical-{m}.json")
                                                        .read_text()) for m in MODES}
        else:
            results[name] = run_dataset(name, args, log.with_name(f"lexical_vs_seal__{name}.log"))
        report.write_text(markdown(results, args))  # after each dataset: partial results survive
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
