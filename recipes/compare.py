"""Every available retrieval method on Home Depot, Best Buy and Beauty: same splits, seeds and metrics.

Baselines run here (each tuned on the VALIDATION split over a small grid, then scored once on test):
- ``popularity``      most popular training items
- ``bm25``            Lucene BM25 via pyserini (k1/b grid, with and without RM3)              [search]
- ``minilm``          zero-shot all-MiniLM-L6-v2 query/item cosine (no training)              [search]
- ``dssm``            two-tower from scratch (hashed words + char trigrams + item id)         [search]
- ``dssm-minilm``     two-tower initialised from MiniLM (frozen encoder + trained adapters)   [search]
- ``bm25+dssm-rrf``   reciprocal-rank fusion of the selected BM25 and two-tower runs          [search]
- ``sasrec``          SASRec two-tower (causal transformer history tower)                     [sequences]

Generative methods (SEATER, TIGER/RQ, SEAL/lexical, LLM backbones) are produced by their own recipes;
this script picks up their ``eval/results/<dataset>__<method>.json`` when present and otherwise lists
them as MISSING with the reason (module not importable, or no result file yet). Nothing is dropped
silently. Every result row records the command that produced it.

    nice -n 10 .venv/bin/python recipes/compare.py --datasets homedepot,bestbuy --methods popularity,bm25 --seed 0
    nice -n 10 .venv/bin/python recipes/compare.py --report-only      # RESULTS.md + plots from eval/results

Writes ``eval/results/<dataset>__<method>.json``, ``eval/RESULTS.md`` and ``eval/results/<dataset>__compare.png``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.data.buckets import assign_buckets
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.data.types import Dataset
from gr_toolkit.evaluation.metrics import evaluate_rankings
from gr_toolkit.evaluation.plots import bucket_bar_chart
from gr_toolkit.evaluation.results import current_command, device_name, result_record, write_result

DATASETS = ("homedepot", "bestbuy", "beauty")
KS = (1, 5, 10, 20, 50, 100)
SELECT = "recall@10"
SEARCH_METHODS = ("popularity", "bm25", "minilm", "dssm", "dssm-minilm", "bm25+dssm-rrf")
SEQ_METHODS = ("popularity", "sasrec")
# Generative methods produced by other recipes: method -> (module that implements it, result-name prefixes
# that count as that method). SEAL is the lexical backend with single n-gram spans (`lexical-seal`, from
# recipes/lexical_vs_seal.py); TIGER is RQ semantic IDs + the T5 backbone (recipes/rq_variants.py --model t5).
GENERATIVE = {
    "seater": ("gr_toolkit.models.seater", ("seater",)),
    "tiger": ("gr_toolkit.identifiers.rq", ("tiger",)),
    "rq": ("gr_toolkit.identifiers.rq", ("rq-",)),
    "seal": ("gr_toolkit.identifiers.lexical", ("seal", "lexical-seal")),
    "hf-t5": ("gr_toolkit.models.hf_seq2seq", ("hf-t5",)),
    "hf-causal": ("gr_toolkit.models.hf_causal", ("hf-causal",)),
}
#: Methods that do not apply to a dataset, with the reason (listed under MISSING, never silently dropped).
NOT_APPLICABLE = {
    "beauty": {"seal": "SEAL generates spans of a document's text from a text query; Beauty is next-item "
                       "recommendation from item-id histories (no query text, items carry only a generated label)"},
}
#: Why a method that applies has no result on a dataset yet (shown instead of the generic reason).
NOT_RUN = {
    ("beauty", "hf-t5"): "the T5 backbone on Beauty is the `tiger` row (the same HFSeq2SeqRetriever on RQ ids, "
                         "SFT only); the SFT -> DPO recipe was not run on Beauty (CPU budget)",
    ("beauty", "hf-causal"): "not run: a from-scratch causal LM on 131k Beauty training sequences took 5-8 s per "
                             "64-example step on the shared 2-core CPU (a smoke run of 4 SFT + 2 DPO steps works); "
                             "needs a GPU session",
    ("homedepot", "hf-causal"): "not run on Home Depot (CPU budget); the causal LM ran on Best Buy",
}
RECIPE_HINT = {
    "seater": "recipes/seater_beauty.py (Beauty) or recipes/seater_search.py",
    "tiger": "recipes/rq_variants.py --model t5 --variants plain",
    "rq": "recipes/rq_variants.py --model seater",
    "seal": "recipes/lexical_vs_seal.py",
    "hf-t5": "recipes/hf_sft_dpo.py --models t5",
    "hf-causal": "recipes/hf_sft_dpo.py --models causal",
}
RESULTS_DIR = Path("eval/results")
VECTOR_CACHE = Path("indexes/vectors")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------- helpers
def evaluate(ds: Dataset, split: str, ranked: np.ndarray) -> dict[str, dict[str, float]]:
    ex = ds.split(split)
    return evaluate_rankings(ranked, ex.targets, ks=KS, buckets=assign_buckets(ds, ex))


def text_vectors(ds: Dataset) -> np.ndarray:
    """MiniLM item vectors, cached beside the other recipes' (indexes/vectors/<name>__text.npy)."""
    from gr_toolkit.vectors.io import load_vectors, save_vectors
    from gr_toolkit.vectors.text import item_text_vectors

    path = VECTOR_CACHE / f"{ds.name}__text.npy"
    if path.exists():
        return load_vectors(path, ds.catalog)
    vecs = item_text_vectors(ds.catalog)
    save_vectors(path, vecs, {"method": "text", "model": "all-MiniLM-L6-v2", "dataset": ds.name,
                              "catalog_fingerprint": ds.catalog.fingerprint()})
    return vecs


def query_text_vectors(ds: Dataset) -> dict[str, np.ndarray]:
    from gr_toolkit.vectors.text import encode_texts, load_sentence_encoder

    enc = load_sentence_encoder()
    return {s: encode_texts(ds.split(s).queries, encoder=enc) for s in ("train", "valid", "test")}


class Outcome:
    """What a method hands back: test rankings plus how it was chosen and how long it took."""

    def __init__(self, ranked: np.ndarray, scores: np.ndarray, train_seconds: float, query_seconds: float,
                 config: dict[str, Any], valid: dict[str, float], grid: list[dict[str, Any]] | None = None) -> None:
        self.ranked, self.scores = ranked, scores
        self.train_seconds, self.query_seconds = train_seconds, query_seconds
        self.config, self.valid, self.grid = config, valid, grid or []


def _valid_metric(ds: Dataset, ranked: np.ndarray) -> dict[str, float]:
    m = evaluate_rankings(ranked, ds.valid.targets, ks=(10, 20, 50))["all"]
    return {k: v for k, v in m.items() if k != "n"}


# --------------------------------------------------------------------------------------- methods
def run_popularity(ds: Dataset, seed: int, state: dict) -> Outcome:
    from gr_toolkit.baselines.popularity import PopularityRetriever

    t = time.perf_counter()
    pop = PopularityRetriever(ds)
    train_s = time.perf_counter() - t
    valid = _valid_metric(ds, pop.rank(ds.valid, k=max(KS))[0])
    t = time.perf_counter()
    ranked, scores = pop.rank(ds.test, k=max(KS))
    return Outcome(ranked, scores, train_s, time.perf_counter() - t, {"count_histories": True}, valid)


def run_bm25(ds: Dataset, seed: int, state: dict) -> Outcome:
    from gr_toolkit.baselines.bm25 import BM25Config, BM25Retriever

    grid = [BM25Config(k1=k1, b=b, rm3=rm3, threads=2) for k1, b in ((0.9, 0.4), (1.2, 0.75)) for rm3 in (False, True)]
    t = time.perf_counter()
    r = BM25Retriever(ds.catalog, Path("indexes") / f"{ds.name}__bm25", grid[0])
    index_s = time.perf_counter() - t
    rows, best = [], None
    for cfg in grid:
        r.configure(cfg)
        v = _valid_metric(ds, r.rank(ds.valid.queries, k=50)[0])
        rows.append({"config": asdict(cfg), "valid": v})
        log(f"  bm25 {cfg.k1}/{cfg.b} rm3={cfg.rm3}: valid {SELECT} {v[SELECT]:.4f}")
        if best is None or v[SELECT] > best[1][SELECT]:
            best = (cfg, v)
    r.configure(best[0])
    t = time.perf_counter()
    ranked, scores = r.rank(ds.test.queries, k=max(KS))
    q_s = time.perf_counter() - t
    state["bm25"] = (ranked, scores, r.rank(ds.valid.queries, k=max(KS)))
    r.close()
    return Outcome(ranked, scores, index_s, q_s, asdict(best[0]), best[1], rows)


def run_minilm(ds: Dataset, seed: int, state: dict) -> Outcome:
    from gr_toolkit.baselines.topk import exact_topk

    t = time.perf_counter()
    items = text_vectors(ds)
    qv = state.setdefault("query_dense", None) or query_text_vectors(ds)
    state["query_dense"] = qv
    train_s = time.perf_counter() - t
    valid = _valid_metric(ds, exact_topk(qv["valid"], items, 50)[0])
    t = time.perf_counter()
    ranked, scores = exact_topk(qv["test"], items, max(KS))
    return Outcome(ranked, scores, train_s, time.perf_counter() - t,
                   {"model": "all-MiniLM-L6-v2", "item_field": "text", "top_k": "exact"}, valid)


def _dssm_grid(ds: Dataset, init: str, seed: int, state: dict) -> list:
    """The base config plus the variants given on the command line (``--dssm-grid`` / ``--dssm-minilm-grid``)."""
    from gr_toolkit.baselines.dssm import DSSMConfig
    from gr_toolkit.config import from_dict

    base = DSSMConfig(init=init, seed=seed, epochs=state.get(f"dssm_{init}_epochs", 30 if init == "scratch" else 12),
                      patience=3, verbose=True)
    if init == "minilm":
        base = replace(base, lr=1e-3)
    if state.get("dssm_base"):
        base = from_dict(DSSMConfig, {**asdict(base), **dict(p.split("=", 1) for p in state["dssm_base"].split(","))},
                         where="--dssm-base")
    grid = [base]
    for spec in filter(None, state.get(f"dssm_{init}_grid", "").split(";")):
        kv = dict(p.split("=", 1) for p in spec.split(","))
        grid.append(from_dict(DSSMConfig, {**asdict(base), **kv}, where=f"--dssm-{init}-grid"))
    return grid


def _run_dssm(ds: Dataset, seed: int, state: dict, init: str) -> Outcome:
    from gr_toolkit.baselines.dssm import train_dssm

    item_dense = query_dense = None
    t_feat = 0.0
    if init == "minilm":
        t = time.perf_counter()
        item_dense = text_vectors(ds)
        query_dense = state.get("query_dense") or query_text_vectors(ds)
        state["query_dense"] = query_dense
        t_feat = time.perf_counter() - t
    rows, best = [], None
    for cfg in _dssm_grid(ds, init, seed, state):
        retr = train_dssm(ds, cfg, log=lambda m: log("  " + m), item_dense=item_dense, query_dense=query_dense)
        v = dict(retr.history[retr.best_epoch - 1]) if retr.best_epoch else {}
        rows.append({"config": asdict(cfg), "best_epoch": retr.best_epoch, "valid": v, "train_seconds": retr.train_seconds})
        log(f"  dssm[{init}] tau={cfg.temperature} weighted={cfg.weighted_sampling}: valid {SELECT} {retr.best_valid:.4f} (epoch {retr.best_epoch})")
        if best is None or retr.best_valid > best[0].best_valid:
            best = (retr, cfg, v)
    retr, cfg, v = best
    t = time.perf_counter()
    ranked, scores = retr.rank(ds.test.queries, k=max(KS), dense=None if query_dense is None else query_dense["test"])
    q_s = time.perf_counter() - t
    valid_run = retr.rank(ds.valid.queries, k=max(KS), dense=None if query_dense is None else query_dense["valid"])
    # The same model served by faiss (exact flat and approximate IVF): speed and agreement with exact.
    from gr_toolkit.baselines.topk import FaissIndex

    qv = retr.query_vectors(ds.test.queries, None if query_dense is None else query_dense["test"])
    faiss_info = {}
    for fm in ("faiss-flat", "faiss-ivf"):
        t = time.perf_counter()
        index = FaissIndex(retr.item_vectors(), fm, nprobe=16, seed=seed)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        fi, _ = index.search(qv, max(KS))
        faiss_info[fm] = {"build_seconds": round(build_s, 3),
                          "query_ms_per_example": round(1000 * (time.perf_counter() - t) / max(len(qv), 1), 4),
                          "recall@10": evaluate_rankings(fi, ds.test.targets, ks=(10,))["all"]["recall@10"],
                          "top10_overlap_with_exact": float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(fi, ranked, strict=True)]))}
    prev = state.get("dssm")
    if prev is None or retr.best_valid > prev[3]:
        state["dssm"] = (ranked, scores, valid_run, retr.best_valid, init)
    total_train = sum(r["train_seconds"] for r in rows) + t_feat
    conf = {**asdict(cfg), "best_epoch": retr.best_epoch, "top_k": "exact", "train_seconds_selected": round(retr.train_seconds, 1),
            "train_seconds_grid": round(total_train, 1), "faiss": faiss_info}
    return Outcome(ranked, scores, retr.train_seconds + t_feat, q_s, conf, v, rows)


def run_dssm(ds: Dataset, seed: int, state: dict) -> Outcome:
    return _run_dssm(ds, seed, state, "scratch")


def run_dssm_minilm(ds: Dataset, seed: int, state: dict) -> Outcome:
    return _run_dssm(ds, seed, state, "minilm")


def run_rrf(ds: Dataset, seed: int, state: dict) -> Outcome:
    from gr_toolkit.baselines.fusion import rrf

    if "bm25" not in state or "dssm" not in state:
        raise RuntimeError("needs bm25 and a dssm method in the same run (--methods ...,bm25,dssm,bm25+dssm-rrf)")
    b_test_i, b_test_s, (b_val_i, b_val_s) = state["bm25"]
    d_test_i, d_test_s, (d_val_i, d_val_s), _, init = state["dssm"]
    t = time.perf_counter()
    grid, best = [], None
    for w in (0.5, 1.0, 2.0):  # weight of the two-tower run relative to BM25
        vi, _ = rrf([(b_val_i, b_val_s), (d_val_i, d_val_s)], k=50, weights=[1.0, w])
        v = _valid_metric(ds, vi)
        grid.append({"config": {"dssm_weight": w}, "valid": v})
        if best is None or v[SELECT] > best[1][SELECT]:
            best = (w, v)
    ranked, scores = rrf([(b_test_i, b_test_s), (d_test_i, d_test_s)], k=max(KS), weights=[1.0, best[0]])
    return Outcome(ranked, scores, 0.0, time.perf_counter() - t,
                   {"c": 60, "dssm_weight": best[0], "dssm_variant": f"dssm-{init}" if init != "scratch" else "dssm"}, best[1], grid)


def run_sasrec(ds: Dataset, seed: int, state: dict) -> Outcome:
    from gr_toolkit.vectors.cf import SASRecConfig, load_sasrec, sasrec_rank, train_sasrec

    if state.get("sasrec_model"):
        # A model trained (and epoch-selected on validation) by `gr-toolkit embed ... --save-model DIR`.
        model = load_sasrec(state["sasrec_model"], ds.catalog.fingerprint())
        v = dict(model.history[model.best_epoch - 1]) if model.best_epoch else {}
        t = time.perf_counter()
        ranked, scores = sasrec_rank(model, ds.test, k=max(KS))
        conf = {**model.manifest["config"], "best_epoch": model.best_epoch, "top_k": "exact",
                "model_dir": str(state["sasrec_model"]), "trained_by": model.manifest.get("command", "")}
        return Outcome(ranked, scores, float(model.train_seconds or 0.0), time.perf_counter() - t, conf, v,
                       [{"config": model.manifest["config"], "history": model.history}])

    base = SASRecConfig(seed=seed, epochs=state.get("sasrec_epochs", 40), patience=5, loss="sampled",
                        num_negatives=1280, lr=2e-3)
    grid = [base] + [replace(base, **g) for g in state.get("sasrec_grid", [])]
    rows, best = [], None
    for cfg in grid:
        model = train_sasrec(ds, cfg, log=lambda m: log("  " + m))
        v = dict(model.history[model.best_epoch - 1]) if model.best_epoch else {}
        rows.append({"config": asdict(cfg), "best_epoch": model.best_epoch, "valid": v, "train_seconds": model.train_seconds})
        if best is None or model.best_valid > best[0].best_valid:
            best = (model, cfg, v)
    model, cfg, v = best
    t = time.perf_counter()
    ranked, scores = sasrec_rank(model, ds.test, k=max(KS))
    return Outcome(ranked, scores, model.train_seconds, time.perf_counter() - t,
                   {**asdict(cfg), "best_epoch": model.best_epoch, "top_k": "exact"}, v, rows)


RUNNERS: dict[str, Callable[[Dataset, int, dict], Outcome]] = {
    "popularity": run_popularity, "bm25": run_bm25, "minilm": run_minilm, "dssm": run_dssm,
    "dssm-minilm": run_dssm_minilm, "bm25+dssm-rrf": run_rrf, "sasrec": run_sasrec,
}


def availability(method: str) -> tuple[bool, str]:
    if method == "bm25":
        from gr_toolkit.baselines.bm25 import bm25_available

        return bm25_available()
    return True, ""


# --------------------------------------------------------------------------------------- running
def run_dataset(name: str, methods: list[str], seed: int, data_dir: str | None, state_opts: dict) -> None:
    ds = load_dataset(name, data_dir=data_dir, seed=seed)
    applicable = SEARCH_METHODS if ds.kind == "query" else SEQ_METHODS
    state: dict[str, Any] = dict(state_opts)
    for m in methods:
        if m not in applicable:
            log(f"{name}: {m} does not apply to {ds.kind} data; skipped (applicable: {', '.join(applicable)})")
            continue
        ok, why = availability(m)
        if not ok:
            _write_missing(ds, m, seed, why)
            continue
        log(f"{name}: {m} ...")
        t = time.perf_counter()
        out = RUNNERS[m](ds, seed, state)
        metrics = evaluate(ds, "test", out.ranked)
        rec = result_record(
            dataset=name, protocol=ds.protocol, split="test", method=m, seed=seed, bucketing=ds.bucketing,
            n_examples=len(ds.test), metrics=metrics, train_seconds=out.train_seconds, device=device_name("cpu"),
            command=current_command(), query_seconds=round(out.query_seconds, 3),
            query_ms_per_example=round(1000 * out.query_seconds / max(len(ds.test), 1), 3),
            wall_seconds=round(time.perf_counter() - t, 1), config=out.config, valid=out.valid,
            selection=f"best {SELECT} on the validation split", tuning_grid=out.grid, notes=ds.notes)
        path = write_result(rec, RESULTS_DIR)
        log(f"{name}: {m} test recall@10 {metrics['all']['recall@10']:.4f} ndcg@10 {metrics['all']['ndcg@10']:.4f} -> {path}")


def _write_missing(ds: Dataset, method: str, seed: int, why: str) -> None:
    rec = {"dataset": ds.name, "method": method, "seed": seed, "status": "missing", "reason": why,
           "command": current_command()}
    (RESULTS_DIR / f"{ds.name}__{method}.missing.json").write_text(json.dumps(rec, indent=2) + "\n")
    log(f"{ds.name}: {method} MISSING: {why}")


def generative_status(dataset: str) -> list[tuple[str, str]]:
    """(method, reason) for each generative method without a result file for ``dataset``."""
    out = []
    for method, (module, prefixes) in GENERATIVE.items():
        # Any variant counts (seater-coocvec, hf-t5-sft, hf-causal-dpo, lexical-seal, ...).
        if any(not p.name.endswith(".missing.json") for pre in prefixes for p in RESULTS_DIR.glob(f"{dataset}__{pre}*.json")):
            continue
        if method in NOT_APPLICABLE.get(dataset, {}):
            out.append((method, f"not applicable: {NOT_APPLICABLE[dataset][method]}"))
            continue
        if (dataset, method) in NOT_RUN:
            out.append((method, f"{NOT_RUN[dataset, method]} ({RECIPE_HINT[method]})"))
            continue
        try:
            importlib.import_module(module)
            reason = (f"{module} imports, but there is no result file {RESULTS_DIR}/{dataset}__{prefixes[0]}*.json: "
                      f"not run on {dataset} yet ({RECIPE_HINT[method]})")
        except Exception as e:  # any import failure is a reason to report, not to crash the report
            reason = f"{module} is not importable: {type(e).__name__}: {e}"
        out.append((method, reason))
    return out


# --------------------------------------------------------------------------------------- report
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def load_results(dataset: str) -> list[dict[str, Any]]:
    recs = []
    for p in sorted(RESULTS_DIR.glob(f"{dataset}__*.json")):
        if p.name.endswith(".missing.json"):
            continue
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if r.get("dataset") == dataset and r.get("split", "test") == "test" and "metrics" in r:
            recs.append(r)
    return sorted(recs, key=lambda r: -r["metrics"]["all"].get("recall@10", 0.0))


def plot(dataset: str, recs: list[dict[str, Any]], metric: str = "recall@10") -> Path | None:
    if not recs:
        return None
    return bucket_bar_chart(recs, metric, RESULTS_DIR / f"{dataset}__compare.png",
                            f"{dataset}: {metric} by bucket ({recs[0].get('bucketing', '')}), test split")


def coverage_line(dataset: str) -> str | None:
    """How many test positives were ever a training target: the ceiling for identifier memorisation."""
    from gr_toolkit.data.splits import seen_target_coverage

    try:
        ds = load_dataset(dataset, seed=0)
    except Exception as e:  # the report must not die with a dataset that cannot be read here
        return f"(Seen-target coverage not computed: {type(e).__name__}: {e})"
    cov = seen_target_coverage(ds.train, ds.test)
    return (f"Seen-target coverage: {cov['positives']:.1%} of test positives (and {cov['examples']:.1%} of test "
            "examples with at least one) are a target somewhere in the training split; a generative retriever "
            "trained on (source, item) pairs was never taught the identifiers of the rest.")


def write_report(datasets: list[str]) -> Path:
    metric_cols = ("recall@10", "ndcg@10", "recall@50")
    lines = ["# Retrieval comparison (test split)", "",
             "Produced by `recipes/compare.py` from the result files in `eval/results/`. Every method is tuned on the "
             "validation split only (the grid and the chosen config are in each JSON) and scored once on test. "
             "Buckets are defined by training traffic where the data has it (Best Buy); otherwise the named proxy "
             "is used (Home Depot: `proxy:query-length`; Beauty: `proxy:target-popularity`). Times are CPU "
             "wall-clock seconds on a shared 2-core machine: `train s` = training (or index build) of the selected "
             "config, `query ms` = test retrieval per example.", ""]
    for ds in datasets:
        recs = load_results(ds)
        lines.append(f"## {ds}")
        lines.append("")
        if recs:
            r0 = recs[0]
            lines.append(f"Protocol `{r0.get('protocol')}`, bucketing `{r0.get('bucketing')}`, {r0.get('n_examples')} test examples "
                         f"(head/torso/tail: {', '.join(str(r0['metrics'].get(b, {}).get('n', '–')) for b in ('head', 'torso', 'tail'))}).")
            cov = coverage_line(ds)
            if cov:
                lines.append(cov)
            lines.append("")
            head = ["method"] + [f"{m} {b}" for m in metric_cols for b in ("all", "head", "torso", "tail")] + ["train s", "query ms", "seed"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for r in recs:
                cells = [r["method"]]
                for m in metric_cols:
                    for b in ("all", "head", "torso", "tail"):
                        cells.append(_fmt(r["metrics"].get(b, {}).get(m)))
                cells += [_fmt(float(r.get("train_seconds", float("nan")))), _fmt(r.get("query_ms_per_example")), str(r.get("seed", ""))]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            png = plot(ds, recs)
            if png:
                lines.append(f"![{ds}]({png.relative_to(RESULTS_DIR.parent)})")
                lines.append("")
            lines.append("Commands (reproduce each row):")
            lines.append("")
            for r in recs:
                lines.append(f"- `{r['method']}`: `{r.get('command', '?')}`")
            lines.append("")
        else:
            lines.append("No results yet.")
            lines.append("")
        missing = [(p.name.split("__", 1)[1].removesuffix(".missing.json"), json.loads(p.read_text())["reason"])
                   for p in sorted(RESULTS_DIR.glob(f"{ds}__*.missing.json"))]
        missing += generative_status(ds)
        kind_methods = SEQ_METHODS if ds == "beauty" else SEARCH_METHODS
        have = {r["method"] for r in recs} | {m for m, _ in missing}
        hint = {"bm25+dssm-rrf": "bm25,dssm,dssm-minilm,bm25+dssm-rrf"}
        missing += [(m, f"not run yet: `python recipes/compare.py --datasets {ds} --methods {hint.get(m, m)}`")
                    for m in kind_methods if m not in have]
        if missing:
            lines.append("MISSING (not in the table above, with the reason):")
            lines.append("")
            for m, why in missing:
                lines.append(f"- `{m}`: {why}")
            lines.append("")
    path = RESULTS_DIR.parent / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default="all", help="comma list, or 'all' (every method that applies to the dataset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--sasrec-epochs", type=int, default=40)
    ap.add_argument("--dssm-epochs", type=int, default=30, help="max epochs of the scratch two-tower (early stopping on valid)")
    ap.add_argument("--dssm-grid", default="", help="extra scratch DSSM configs, e.g. 'temperature=0.1;weighted_sampling=true'")
    ap.add_argument("--dssm-base", default="", help="override fields of every DSSM config, e.g. 'num_negatives=256,batch_size=256'")
    ap.add_argument("--dssm-minilm-epochs", type=int, default=12)
    ap.add_argument("--dssm-minilm-grid", default="")
    ap.add_argument("--sasrec-model", default=None, help="evaluate a SASRec saved by `gr-toolkit embed --save-model` instead of training")
    ap.add_argument("--sasrec-grid", default="", help="extra SASRec configs to try, e.g. 'loss=full;dropout=0.3'")
    ap.add_argument("--report-only", action="store_true", help="only rebuild eval/RESULTS.md and the plots")
    args = ap.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        from gr_toolkit.config import from_dict
        from gr_toolkit.vectors.cf import SASRecConfig

        grid = []
        for spec in filter(None, args.sasrec_grid.split(";")):
            kv = dict(p.split("=", 1) for p in spec.split(","))
            grid.append(asdict(from_dict(SASRecConfig, kv, where="--sasrec-grid")))
            grid[-1] = {k: grid[-1][k] for k in kv}
        opts = {"dssm_base": args.dssm_base, "dssm_scratch_epochs": args.dssm_epochs, "dssm_scratch_grid": args.dssm_grid,
                "dssm_minilm_epochs": args.dssm_minilm_epochs, "dssm_minilm_grid": args.dssm_minilm_grid,
                "sasrec_epochs": args.sasrec_epochs, "sasrec_grid": grid, "sasrec_model": args.sasrec_model}
        for d in datasets:
            ds_methods = (SEQ_METHODS if d == "beauty" else SEARCH_METHODS) if args.methods == "all" else args.methods.split(",")
            run_dataset(d, list(ds_methods), args.seed, args.data_dir, opts)
    log(f"wrote {write_report(list(DATASETS) if args.report_only else sorted(set(datasets) | set(DATASETS)))}")


if __name__ == "__main__":
    main()
