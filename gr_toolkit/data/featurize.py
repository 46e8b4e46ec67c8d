"""Turn examples' sources into encoder input (``SourceBatch``).

- ``history`` sources: tokens are the internal item ids of the last ``max_history`` items, oldest
  first; ``vocab_size`` = number of catalog items.
- ``query`` sources: a sentencepiece tokenizer trained on the training queries plus the catalog
  titles (so title words are pieces even when no training query used them); ``max_query_len``
  tokens; ``vocab_size`` = the tokenizer's (its ids 0..3 are pad/unk/bos/eos).

Layout (both kinds): real tokens are left-aligned and padding sits on the right; padded positions
hold token 0 with ``mask`` False. Token 0 is also a real item id for histories, so models must use
the mask, never the token value, to tell padding apart.

With ``encoder: minilm`` (query sources only) the featurizer trains no tokenizer: each batch carries
the frozen all-MiniLM-L6-v2 token states of its texts as ``SourceBatch.features`` (computed once per
distinct text, see ``gr_toolkit.text.pretrained``), with ``tokens`` all 0 and ``mask`` their positions.

With ``encoder: smollm2`` (a pretrained causal LM's alias, query sources only) the source is the
prompt ``QUERY_TEMPLATE`` rendered with the query and encoded by THAT model's own tokenizer, so the
LM reads ids it was trained on (``--model causal --pretrained_path smollm2``).

Saved as a directory: ``manifest.json`` (+ ``tokenizer.model`` for native queries); no pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gr_toolkit.artifacts import ArtifactError, atomic_dir
from gr_toolkit.data.types import DataError, Dataset, Examples
from gr_toolkit.models.base import SourceBatch
from gr_toolkit.text.pretrained import SOURCE_ENCODERS, TokenStateCache
from gr_toolkit.text.tokenizer import SentencePieceTokenizer

FEATURIZER_VERSION = 1


@dataclass
class FeaturizerConfig:
    max_history: int = 20
    max_query_len: int = 32
    vocab_size: int = 8000
    title_field: str = "title"
    seed: int = 0
    #: ``native`` (sentencepiece ids, embedded by the model) or ``minilm`` (frozen MiniLM token states).
    encoder: str = "native"


class SourceFeaturizer:
    """Fit on a ``Dataset`` (training split only), then ``batch(examples, idx)`` gives tensors."""

    def __init__(self, config: FeaturizerConfig | None = None, **overrides) -> None:
        self.config = config or FeaturizerConfig()
        for k, v in overrides.items():
            if not hasattr(self.config, k):
                raise TypeError(f"unknown featurizer option {k!r}; options: {', '.join(asdict(self.config))}")
            setattr(self.config, k, v)
        self.kind: str | None = None
        self.n_items: int | None = None
        self.catalog_fingerprint: str | None = None
        self.tokenizer: SentencePieceTokenizer | None = None
        self.text_states: TokenStateCache | None = None
        self.lm_tokenizer = None
        self.notes: list[str] = []
        if self.config.encoder not in SOURCE_ENCODERS:
            raise ValueError(f"unknown source encoder {self.config.encoder!r}; use one of {', '.join(SOURCE_ENCODERS)}")

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: Dataset) -> SourceFeaturizer:
        self.kind = dataset.kind
        self.n_items = len(dataset.catalog)
        self.catalog_fingerprint = dataset.catalog.fingerprint()
        if self.config.encoder != "native":
            if self.kind != "query":
                raise DataError(f"encoder {self.config.encoder!r} reads query text; dataset {dataset.name!r} has "
                                f"{self.kind} sources (use encoder native)")
            self._start_encoder()
            return self
        if self.kind == "query":
            # Train split only: validation/test queries must not shape the vocabulary.
            texts = list(dataset.train.queries or [])
            if self.config.title_field in dataset.catalog.fields:
                texts += dataset.catalog.text(self.config.title_field)
            self.tokenizer = SentencePieceTokenizer.train(texts, vocab_size=self.config.vocab_size,
                                                          seed=self.config.seed)
            self.notes = list(self.tokenizer.notes)
        return self

    def _start_encoder(self) -> None:
        if self.config.encoder == "minilm":
            self.text_states = TokenStateCache(max_len=self.config.max_query_len, persist=True)
        else:  # a pretrained LM's own tokenizer
            from transformers import AutoTokenizer

            from gr_toolkit.models.pretrained_lm import resolve_pretrained

            self.lm_tokenizer = AutoTokenizer.from_pretrained(str(resolve_pretrained(self.config.encoder)),
                                                              local_files_only=True)

    @property
    def token_space(self) -> str:
        """What ``SourceBatch.tokens`` hold: ``native`` ids (items or sentencepiece), ``features`` (zeros;
        read ``SourceBatch.features``) or ``lm:<alias>`` (a pretrained LM's own token ids)."""
        if self.text_states is not None:
            return "features"
        return f"lm:{self.config.encoder}" if self.lm_tokenizer is not None else "native"

    @property
    def feature_dim(self) -> int:
        """Width of ``SourceBatch.features`` (0: batches carry token ids only)."""
        self._check_fitted()
        return self.text_states.dim if self.text_states is not None else 0

    def prepare(self, texts: list[str], log=None) -> None:
        """Compute the pretrained encoder's states of ``texts`` now (in big length-sorted batches) rather
        than batch by batch during training; a no-op for the native encoder."""
        if self.text_states is None:
            return
        todo = self.text_states.count_missing(texts)
        if not todo:
            return
        if log is not None:
            log(f"encoding {todo:,} distinct texts with frozen MiniLM (once per process)")
        step = max(1, todo // 10)
        marks = iter(range(step, todo + step, step))
        next_mark = [next(marks)]

        def progress(done: int, total: int) -> None:
            if log is not None and done >= next_mark[0]:
                log(f"  MiniLM states: {done:,}/{total:,} texts")
                while next_mark[0] <= done:
                    next_mark[0] = next(marks, total + 1)

        self.text_states.prepare(texts, progress=progress)

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        if self.text_states is not None:
            raise DataError(f"a featurizer with encoder {self.config.encoder!r} has no token vocabulary; "
                            "the model reads its feature_dim-wide features")
        if self.lm_tokenizer is not None:
            return len(self.lm_tokenizer)
        if self.kind == "history":
            return int(self.n_items)
        return self.tokenizer.vocab_size  # type: ignore[union-attr]

    @property
    def pad_id(self) -> int:
        return 0

    def _check_fitted(self) -> None:
        if self.kind is None:
            raise RuntimeError("SourceFeaturizer is not fitted: call fit(dataset) or SourceFeaturizer.load(dir)")

    # ------------------------------------------------------------------ encoding
    def encode(self, examples: Examples, idx: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens [B, T] int64, mask [B, T] bool)`` as numpy arrays for the chosen examples."""
        self._check_fitted()
        if examples.kind != self.kind:
            raise DataError(f"featurizer was fitted for {self.kind!r} sources, got {examples.kind!r} examples")
        idx = np.arange(len(examples)) if idx is None else np.asarray(idx, dtype=np.int64)
        if self.text_states is not None:
            _, mask = self.text_states.states([examples.queries[i] for i in idx])  # type: ignore[index]
            return np.zeros(mask.shape, dtype=np.int64), mask
        if self.lm_tokenizer is not None:
            return self._lm_prompt_ids([examples.queries[i] for i in idx])  # type: ignore[index]
        if self.kind == "query":
            texts = [examples.queries[i] for i in idx]  # type: ignore[index]
            return self.tokenizer.encode_batch(texts, self.config.max_query_len)  # type: ignore[union-attr]
        return self._encode_histories([examples.histories[i] for i in idx])  # type: ignore[index]

    def _encode_histories(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        m = self.config.max_history
        lens = np.fromiter((min(len(h), m) for h in hists), dtype=np.int64, count=len(hists))
        width = max(1, int(lens.max(initial=0)))
        tokens = np.zeros((len(hists), width), dtype=np.int64)
        mask = np.arange(width)[None, :] < lens[:, None]
        if lens.sum():
            flat = np.concatenate([np.asarray(h, dtype=np.int64)[len(h) - n:] for h, n in zip(hists, lens, strict=True)])
            if flat.min() < 0 or flat.max() >= self.n_items:
                bad = int(flat[(flat < 0) | (flat >= self.n_items)][0])
                raise DataError(f"history item id {bad} outside the catalog of {self.n_items} items")
            tokens[mask] = flat
        return tokens, mask

    def batch(self, examples: Examples, idx: np.ndarray | list[int] | None = None) -> SourceBatch:
        if self.text_states is not None:
            self._check_fitted()
            if examples.kind != "query":
                raise DataError(f"featurizer was fitted for query sources, got {examples.kind!r} examples")
            idx = np.arange(len(examples)) if idx is None else np.asarray(idx, dtype=np.int64)
            return self._feature_batch([examples.queries[i] for i in idx])  # type: ignore[index]
        tokens, mask = self.encode(examples, idx)
        return SourceBatch(torch.from_numpy(tokens), torch.from_numpy(mask), self.kind)  # type: ignore[arg-type]

    def _lm_prompt_ids(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from gr_toolkit.models.prompts import render_query

        tok = self.lm_tokenizer
        tok.truncation_side = "left"  # keep the template's tail ("...identifier:")
        tok.padding_side = "right"
        enc = tok([render_query(q) for q in queries], padding=True, truncation=True, add_special_tokens=False,
                  max_length=self.config.max_query_len + 16, return_tensors="np")  # + the template's ~12 tokens
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(bool)

    def _feature_batch(self, texts: list[str]) -> SourceBatch:
        feats, mask = self.text_states.states(texts)  # type: ignore[union-attr]
        return SourceBatch(torch.zeros(mask.shape, dtype=torch.long), torch.from_numpy(mask), "query",
                           torch.from_numpy(feats))

    def encode_text(self, queries: list[str]) -> SourceBatch:
        """Encode raw query strings (for ``gr-toolkit search``)."""
        self._check_fitted()
        if self.kind != "query":
            raise DataError("this featurizer encodes item histories, not query text")
        if self.text_states is not None:
            return self._feature_batch(list(queries))
        if self.lm_tokenizer is not None:
            tokens, mask = self._lm_prompt_ids(list(queries))
            return SourceBatch(torch.from_numpy(tokens), torch.from_numpy(mask), "query")
        tokens, mask = self.tokenizer.encode_batch(queries, self.config.max_query_len)  # type: ignore[union-attr]
        return SourceBatch(torch.from_numpy(tokens), torch.from_numpy(mask), "query")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        self._check_fitted()
        directory = Path(directory)
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            manifest = {
                "artifact": "source-featurizer",
                "version": FEATURIZER_VERSION,
                "kind": self.kind,
                "n_items": self.n_items,
                "catalog_fingerprint": self.catalog_fingerprint,
                "config": asdict(self.config),
                "notes": self.notes,
            }
            if self.tokenizer is not None:
                self.tokenizer.save(tmp / "tokenizer.model")
                manifest["tokenizer"] = "tokenizer.model"
                manifest["tokenizer_vocab_size"] = self.tokenizer.vocab_size
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path, catalog=None) -> SourceFeaturizer:
        """Load a saved featurizer; with ``catalog``, check it is the catalog it was fitted on."""
        directory = Path(directory)
        path = directory / "manifest.json"
        if not path.exists():
            raise ArtifactError(f"{directory} is not a featurizer directory (no manifest.json)")
        try:
            man = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path} is not valid JSON: {e}") from e
        if man.get("artifact") != "source-featurizer":
            raise ArtifactError(f"{path} describes {man.get('artifact')!r}, not a source-featurizer")
        if man.get("version") != FEATURIZER_VERSION:
            raise ArtifactError(f"{path}: featurizer version {man.get('version')} (this code reads {FEATURIZER_VERSION})")
        fz = cls(FeaturizerConfig(**man["config"]))
        fz.kind = man["kind"]
        fz.n_items = int(man["n_items"])
        fz.catalog_fingerprint = man.get("catalog_fingerprint")
        fz.notes = list(man.get("notes", []))
        if fz.config.encoder not in SOURCE_ENCODERS:
            raise ArtifactError(f"{path}: unknown source encoder {fz.config.encoder!r}")
        if fz.config.encoder != "native":
            fz._start_encoder()
        elif fz.kind == "query":
            fz.tokenizer = SentencePieceTokenizer.load(directory / man["tokenizer"])
            if fz.tokenizer.vocab_size != man.get("tokenizer_vocab_size"):
                raise ArtifactError(f"{directory}: tokenizer.model does not match the manifest's vocabulary size")
        if catalog is not None and fz.catalog_fingerprint != catalog.fingerprint():
            raise ArtifactError(
                f"{directory}: featurizer was fitted on a different catalog (fingerprint "
                f"{fz.catalog_fingerprint} vs {catalog.fingerprint()})"
            )
        return fz
