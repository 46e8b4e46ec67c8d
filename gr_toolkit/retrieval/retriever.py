"""Retrieval with a trained run: load it, encode sources, constrained beam search, rank items, evaluate.

``retrieve_items`` is the shared loop (the trainer's validation uses it too); ``GenerativeRetrieverRunner``
wraps a run directory (model + index + featurizer) for the CLI and for users.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.types import DataError, Dataset, Examples
from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.evaluation.metrics import DEFAULT_KS, evaluate_rankings
from gr_toolkit.identifiers.base import ItemIndex, load_index
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def retrieve_batch(
    model: GenerativeRetriever, index: ItemIndex, batch: SourceBatch, top_k: int, beam_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``top_k`` items ``[B, K]`` (-1 = empty slot) and their scores for one source batch."""
    if top_k < 1 or beam_size < 1:
        raise ValueError(f"top_k and beam_size must be >= 1 (got {top_k}, {beam_size})")
    # An index may ask for a full-vocabulary softmax (lexical: thousands of tokens allowed at a span start).
    out = beam_search(model, index.constraint(batch.tokens.device), batch, beam_size=beam_size,
                      bos_id=index.bos_id, normalize=getattr(index, "preferred_normalize", "allowed"))
    ranked = index.rank(out, top_k)
    return ranked.items, ranked.scores


def retrieve_items(
    model: GenerativeRetriever,
    index: ItemIndex,
    featurizer: Any,
    examples: Examples,
    top_k: int = 10,
    beam_size: int = 50,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(items [n, K] int64, scores [n, K] float32)`` for every example, in batches of ``batch_size``.

    ``progress`` is an optional callable ``(done, total)`` for progress bars.
    """
    if top_k < 1 or beam_size < 1 or batch_size < 1:
        raise ValueError(f"top_k, beam_size and batch_size must be >= 1 (got {top_k}, {beam_size}, {batch_size})")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(examples)
    items = np.full((n, top_k), -1, dtype=np.int64)
    scores = np.full((n, top_k), -np.inf, dtype=np.float32)
    try:
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            batch = featurizer.batch(examples, idx).to(device)
            it, sc = retrieve_batch(model, index, batch, top_k, beam_size)
            items[idx] = it.cpu().numpy()
            scores[idx] = sc.float().cpu().numpy()
            if progress is not None:
                progress(int(idx[-1]) + 1, n)
    finally:
        model.train(was_training)
    return items, scores


class GenerativeRetrieverRunner:
    """A trained run ready to retrieve: ``GenerativeRetrieverRunner.load(run_dir)``."""

    def __init__(self, model: GenerativeRetriever, index: ItemIndex, featurizer: Any, manifest: dict[str, Any],
                 run_dir: Path | None = None) -> None:
        self.model = model.eval()
        self.index = index
        self.featurizer = featurizer
        self.manifest = manifest
        self.run_dir = run_dir

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device | None = "auto") -> GenerativeRetrieverRunner:
        from gr_toolkit.config import from_dict
        from gr_toolkit.data.featurize import SourceFeaturizer
        from gr_toolkit.training.run import RunDir

        run = RunDir(run_dir)
        man = run.read_manifest()
        index = load_index(run.index_dir)
        if index.catalog_fingerprint != man["catalog_fingerprint"]:
            raise ArtifactError(f"{run.index_dir}: index copy does not match the run's catalog")
        featurizer = SourceFeaturizer.load(run.featurizer_dir)
        from gr_toolkit.models import model_class

        model_cls = model_class(man["model"])
        config = from_dict(model_cls.config_class, man["model_config"], where=f"{run.manifest_path}:model_config")
        model = model_cls.build(index, featurizer, config)
        dev = resolve_device(device)
        run.load_best(model, dev)
        return cls(model.to(dev), index, featurizer, man, Path(run_dir))

    # -- retrieval -------------------------------------------------------------------------------
    def check_dataset(self, dataset: Dataset) -> None:
        """Refuse a dataset whose catalog differs from the one the run was trained on."""
        fp = dataset.catalog.fingerprint()
        if fp != self.manifest["catalog_fingerprint"]:
            raise DataError(
                f"run {self.run_dir} was trained on dataset {self.manifest.get('dataset')!r} (catalog fingerprint "
                f"{self.manifest['catalog_fingerprint']}), but {dataset.name!r} has catalog fingerprint {fp}"
            )
        if dataset.kind != self.featurizer.kind:
            raise DataError(f"run {self.run_dir} reads {self.featurizer.kind} sources; {dataset.name!r} has {dataset.kind}")

    def retrieve(self, examples: Examples, top_k: int = 10, beam_size: int = 50, batch_size: int = 256,
                 progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Ranked internal item ids ``[n, top_k]`` (-1 = fewer than K valid identifiers) and scores."""
        return retrieve_items(self.model, self.index, self.featurizer, examples, top_k, beam_size, batch_size,
                              self.device, progress)

    def retrieve_text(self, queries: Sequence[str], top_k: int = 10, beam_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Retrieve for raw query strings (search runs only)."""
        if self.featurizer.kind != "query":
            raise DataError(
                f"run {self.run_dir} was trained on item histories ({self.manifest.get('dataset')!r}); "
                "it cannot take query text"
            )
        batch = self.featurizer.encode_text(list(queries)).to(self.device)
        it, sc = retrieve_batch(self.model, self.index, batch, top_k, beam_size)
        return it.cpu().numpy(), sc.float().cpu().numpy()

    def evaluate(
        self,
        dataset: Dataset,
        split: str = "test",
        ks: Sequence[int] = DEFAULT_KS,
        beam_size: int | None = None,
        batch_size: int = 256,
        progress: Any = None,
    ) -> dict[str, Any]:
        """Metrics overall and per head/torso/tail bucket on ``split``; plus timing.

        Returns ``{"metrics": {...}, "n_examples": n, "retrieve_seconds": s, "beam_size": b, "items": [n, K],
        "scores": [n, K]}`` (the rankings, for fusion and per-item reports).
        """
        from gr_toolkit.data.buckets import assign_buckets

        self.check_dataset(dataset)
        examples = dataset.split(split)
        if len(examples) == 0:
            raise DataError(f"dataset {dataset.name!r} has no {split} examples")
        k_max = max(ks)
        beam = beam_size or max(50, k_max)
        t0 = time.perf_counter()
        items, scores = self.retrieve(examples, top_k=k_max, beam_size=beam, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - t0
        buckets = assign_buckets(dataset, examples)
        metrics = evaluate_rankings(items, examples.targets, ks, buckets)
        return {"metrics": metrics, "n_examples": len(examples), "retrieve_seconds": seconds, "beam_size": beam,
                "items": items, "scores": scores}
