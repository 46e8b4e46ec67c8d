"""A deterministic sentencepiece tokenizer for queries and item titles.

Trained in memory (``sentence_iterator`` in, ``model_writer`` out) so nothing touches a temporary
file, and saved as one ``.model`` file (the serialized sentencepiece proto, not a pickle).

Id convention: ``pad = 0``, ``unk = 1``, ``bos = 2``, ``eos = 3``, then the learned pieces.
``encode_batch`` never adds bos/eos; callers that want them add them explicitly.
Text is NFKC-normalised and case-folded (``nmt_nfkc_cf``): "Nike" and "nike" are one token in search.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
N_SPECIAL = 4


class TokenizerError(ValueError):
    """Training or loading a tokenizer failed; the message says why and what to change."""


class SentencePieceTokenizer:
    """Wraps a trained ``sentencepiece`` model. Build one with :meth:`train` or :meth:`load`."""

    def __init__(self, model_proto: bytes, notes: list[str] | None = None) -> None:
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self.notes: list[str] = list(notes or [])
        self.seed: int | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        path: str | Path | None = None,
        seed: int = 0,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        max_sentence_length: int = 4096,
    ) -> SentencePieceTokenizer:
        """Train on ``texts`` (empty strings are skipped).

        ``vocab_size`` is an upper bound: on a small corpus sentencepiece cannot reach it, so the
        vocabulary is capped automatically (``hard_vocab_limit=False``) and ``notes`` says so.
        ``path`` (a file name ending in ``.model`` or a prefix) saves the result. Training is
        single-threaded over the corpus in the given order, so the same texts give the same model;
        ``seed`` is accepted for API symmetry and recorded, sentencepiece training has no randomness
        once input shuffling and sampling are off.
        """
        corpus = [t.replace("\n", " ").strip() for t in texts]
        corpus = [t for t in corpus if t]
        if not corpus:
            raise TokenizerError("cannot train a tokenizer on an empty corpus (all texts are empty)")
        if vocab_size < N_SPECIAL + 4:
            raise TokenizerError(f"vocab_size={vocab_size} is too small; use at least {N_SPECIAL + 4}")
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(corpus),
                model_writer=buf,
                vocab_size=int(vocab_size),
                hard_vocab_limit=False,
                model_type=model_type,
                character_coverage=character_coverage,
                normalization_rule_name="nmt_nfkc_cf",
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                num_threads=1,
                shuffle_input_sentence=False,
                input_sentence_size=0,
                max_sentence_length=max_sentence_length,
                split_digits=True,
                byte_fallback=False,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise TokenizerError(f"sentencepiece training failed on {len(corpus)} texts: {e}") from e
        tok = cls(buf.getvalue())
        if tok.vocab_size < vocab_size:
            tok.notes.append(
                f"tokenizer vocabulary capped at {tok.vocab_size} (asked for {vocab_size}): "
                f"the corpus of {len(corpus)} texts does not support more pieces"
            )
        tok.seed = seed
        if path is not None:
            tok.save(path)
        return tok

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        path = _model_path(path)
        if not path.exists():
            raise TokenizerError(f"tokenizer model {path} does not exist")
        try:
            return cls(path.read_bytes())
        except RuntimeError as e:
            raise TokenizerError(f"{path} is not a valid sentencepiece model: {e}") from e

    def save(self, path: str | Path) -> Path:
        """Write the ``.model`` file (``path`` may be a prefix); returns the file written."""
        path = _model_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self._proto)
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def pieces(self) -> list[str]:
        """Piece string of every id (``pieces[i]`` for id i)."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    @property
    def model_proto(self) -> bytes:
        return self._proto

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids ``[B, T]`` (int64, padded with ``pad_id`` on the right) and a bool mask (True = token).

        ``T`` is the longest encoded text in the batch capped at ``max_len`` (at least 1); longer
        texts keep their first ``max_len`` tokens. An empty text yields an all-False mask row.
        """
        if max_len < 1:
            raise TokenizerError(f"max_len must be >= 1, got {max_len}")
        encoded = self._sp.encode(list(texts), out_type=int)
        lens = np.fromiter((min(len(e), max_len) for e in encoded), dtype=np.int64, count=len(encoded))
        width = max(1, int(lens.max(initial=0)))
        ids = np.full((len(encoded), width), PAD_ID, dtype=np.int64)
        mask = np.arange(width)[None, :] < lens[:, None]
        if len(encoded):
            flat = np.fromiter((t for e in encoded for t in e[:max_len]), dtype=np.int64, count=int(lens.sum()))
            ids[mask] = flat
        return ids, mask

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of one id sequence; pad/bos/eos ids are dropped."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        arr = arr[(arr != PAD_ID) & (arr != BOS_ID) & (arr != EOS_ID)]
        return self._sp.decode(arr.tolist())

    def decode_batch(self, ids: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
        ids = np.asarray(ids)
        if mask is not None:
            return [self.decode(row[m]) for row, m in zip(ids, np.asarray(mask), strict=True)]
        return [self.decode(row) for row in ids]

    def tokenize(self, text: str) -> list[str]:
        return list(self._sp.encode(text, out_type=str))


def _model_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".model" else path.with_name(path.name + ".model")
