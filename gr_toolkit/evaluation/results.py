"""Result files (``eval/results/<dataset>__<method>.json``) and their markdown tables, per DESIGN.md."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

BUCKETS = ("all", "head", "torso", "tail")


def device_name(device: str | torch.device = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}"


def current_command() -> str:
    """The command line that is running now, for the ``command`` field (reproducibility)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("gr-toolkit", "__main__.py")):
        argv[0] = "gr-toolkit"
    elif argv and argv[0].endswith(".py"):
        argv = ["python", argv[0], *argv[1:]]
    return shlex.join(argv)


def result_record(
    *,
    dataset: str,
    protocol: str,
    split: str,
    method: str,
    seed: int,
    bucketing: str,
    n_examples: int,
    metrics: dict[str, dict[str, float]],
    train_seconds: float,
    device: str,
    command: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "protocol": protocol,
        "split": split,
        "method": method,
        "seed": seed,
        "bucketing": bucketing,
        "n_examples": n_examples,
        "metrics": metrics,
        "train_seconds": round(float(train_seconds), 3),
        "device": device,
        "command": command,
        **extra,
    }


def write_result(record: dict[str, Any], out_dir: str | Path = "eval/results", name: str | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (name or f"{record['dataset']}__{record['method']}.json")
    text = json.dumps(record, indent=2, sort_keys=False, default=json_default) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a killed write never leaves a cut result file
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def json_default(v: Any) -> Any:
    """``json.dumps(default=...)`` for numpy / torch values: scalars become Python numbers, arrays and
    tensors of any size become (nested) lists."""
    if hasattr(v, "tolist") and getattr(v, "ndim", 0) > 0:
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_table(records: list[dict[str, Any]], metric_names: list[str], buckets: tuple[str, ...] = BUCKETS) -> str:
    """One row per record; columns ``metric (bucket)`` for each requested metric and bucket present."""
    present = [b for b in buckets if any(b in r["metrics"] for r in records)]
    head = ["method"] + [f"{m} ({b})" for m in metric_names for b in present] + ["n", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["method"]]
        for m in metric_names:
            for b in present:
                cells.append(_fmt(r["metrics"].get(b, {}).get(m)))
        cells += [str(r["n_examples"]), _fmt(float(r["train_seconds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bucket_table(metrics: dict[str, dict[str, float]], metric_names: list[str]) -> str:
    """A per-bucket table for one run (rows = buckets), as printed by the CLI."""
    rows = [b for b in BUCKETS if b in metrics]
    lines = ["| bucket | n | " + " | ".join(metric_names) + " |", "|---|---|" + "---|" * len(metric_names)]
    for b in rows:
        lines.append(f"| {b} | {metrics[b].get('n', '')} | " + " | ".join(_fmt(metrics[b].get(m)) for m in metric_names) + " |")
    return "\n".join(lines) + "\n"
