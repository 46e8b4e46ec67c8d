"""End-to-end SEATER pipeline used by the recipes: vectors -> tree index -> train -> test metrics -> result file.

Each stage is skipped when its artifact already exists with the same settings (index dir, run dir), so
a recipe that was interrupted continues where it stopped (training resumes from its checkpoint).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.data.types import Dataset
from gr_toolkit.evaluation.results import (
    current_command,
    device_name,
    markdown_table,
    result_record,
    write_result,
)
from gr_toolkit.identifiers.base import ItemIndex, load_index


def build_or_load_index(dataset: Dataset, scheme: str, vectors: np.ndarray | None, options: dict[str, Any],
                        out: Path, log: Any = print) -> tuple[ItemIndex, float]:
    """Load ``out`` when it is an index of this catalog and scheme/options, else build and save it."""
    from gr_toolkit.cli.index import build_index

    if (out / "manifest.json").exists():
        man = json.loads((out / "manifest.json").read_text())
        same = man.get("scheme") == scheme and all(man.get("config", {}).get(k) == v for k, v in options.items())
        if same and man.get("catalog_fingerprint") == dataset.catalog.fingerprint():
            log(f"index: reusing {out}")
            return load_index(out, dataset.catalog), float(man.get("meta", {}).get("build_seconds", 0.0) or 0.0)
        raise ValueError(f"{out} holds a different index ({man.get('scheme')}, {man.get('config')}); remove it or "
                         "choose another index path")
    t0 = time.perf_counter()
    index = build_index(dataset.catalog, vectors, scheme, options)
    seconds = time.perf_counter() - t0
    index.save(out)
    log(f"index: built {scheme} {options} for {index.n_items} items in {seconds:.1f} s -> {out}")
    return index, seconds


def evaluate_run(run_dir: Path, dataset: Dataset, method: str, ks: tuple[int, ...], beam: int, seed: int,
                 extra: dict[str, Any], out_dir: Path = Path("eval/results"), batch_size: int = 512) -> dict[str, Any]:
    """Test-split metrics of a run, written as ``eval/results/<dataset>__<method>.json``."""
    from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner

    runner = GenerativeRetrieverRunner.load(run_dir, device="auto")
    res = runner.evaluate(dataset, "test", ks=ks, beam_size=beam, batch_size=batch_size)
    man = runner.manifest
    record = result_record(
        dataset=dataset.name, protocol=dataset.protocol, split="test", method=method, seed=seed,
        bucketing=dataset.bucketing, n_examples=res["n_examples"], metrics=res["metrics"],
        train_seconds=float(man.get("train_seconds", 0.0)), device=device_name(runner.device),
        command=current_command(), run=str(run_dir), best_epoch=(man.get("best") or {}).get("epoch"),
        epochs_done=man.get("epochs_done"), valid_best=man.get("best"), beam_size=res["beam_size"],
        retrieve_seconds=round(res["retrieve_seconds"], 3), model_config=man.get("model_config"),
        train_config=man.get("train_config"), **extra,
    )
    write_result(record, out_dir)
    return record


def write_markdown(records: list[dict[str, Any]], path: Path, title: str, notes: list[str]) -> None:
    """A markdown report: the metric table (per bucket) and, for each row, the exact command."""
    metrics = ["recall@5", "recall@10", "ndcg@10", "recall@50"]
    lines = [f"# {title}", "", *notes, "", markdown_table(records, metrics, buckets=("all",)), "",
             "Per bucket (recall@10 / ndcg@10):", "", markdown_table(records, ["recall@10", "ndcg@10"]), "",
             "Commands (each row's `command` field):", ""]
    for r in records:
        lines.append(f"- `{r['method']}` (seed {r['seed']}, best valid epoch {r.get('best_epoch')}, "
                     f"{r['train_seconds']:.0f} s training on {r['device']}):")
        lines.append(f"  `{r['command']}`")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
