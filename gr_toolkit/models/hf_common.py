"""What the two Hugging Face retrievers (T5 :mod:`~gr_toolkit.models.hf_seq2seq`, causal LM
:mod:`~gr_toolkit.models.hf_causal`) share: the decoder-vocabulary convention, construction from an
index + featurizer, masked mean pooling, structure-aware init of identifier embeddings, and the
``transformers.generate`` beam-search settings that make HF beams comparable with ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gr_toolkit.models.base import GenerativeRetriever, SourceBatch


def structured_token_init(
    weight: torch.Tensor,
    token_parent: np.ndarray | None,
    token_level: np.ndarray | None,
    std: float,
    seed: int = 0,
    parent_share: float = 0.7,
) -> None:
    """Fill the identifier rows of ``weight`` (in place) so that the index structure is visible at init.

    Row ``t`` = ``level_vec[level[t]]`` + noise, and, where the vocabulary is a tree (``token_parent >= 0``),
    a ``parent_share`` of the parent's row (parents are filled first, level by level), so tokens under
    the same node start near each other. Rows past the identifier vocabulary (BOS/EOS) keep their values.
    """
    if token_level is None or len(token_level) == 0:
        return
    v = len(token_level)
    gen = torch.Generator().manual_seed(seed)
    d = weight.shape[1]
    level = torch.as_tensor(np.asarray(token_level), dtype=torch.long)
    n_levels = int(level.max()) + 1
    level_vec = torch.randn(n_levels, d, generator=gen) * std
    rows = level_vec[level] + torch.randn(v, d, generator=gen) * std
    if token_parent is not None:
        parent = torch.as_tensor(np.asarray(token_parent), dtype=torch.long)
        # Depth of each token along parent links (a tree's levels); loop over depths, not tokens.
        for lv in range(n_levels):
            sel = ((level == lv) & (parent >= 0)).nonzero().squeeze(1)
            if sel.numel():
                rows[sel] = (1 - parent_share) * rows[sel] + parent_share * rows[parent[sel]]
    with torch.no_grad():
        weight[:v] = rows.to(weight.dtype).to(weight.device)


def build_kwargs(index: Any, featurizer: Any) -> dict[str, Any]:
    """Constructor arguments an HF retriever takes from an ``ItemIndex`` (decoder vocab, structure) and a
    ``SourceFeaturizer`` (source kind and vocab)."""
    features = int(getattr(featurizer, "feature_dim", 0)) if featurizer.kind == "query" else 0
    kwargs = {"source_features": features} if features else {}
    return {
        **kwargs,
        "decoder_vocab_size": index.decoder_vocab_size,
        "source_vocab_size": 0 if features else int(featurizer.vocab_size),
        "source_kind": featurizer.kind,
        "token_parent": getattr(index, "token_parent", None),
        "token_level": getattr(index, "token_level", None),
    }


def beam_generate_kwargs(
    beam_size: int,
    num_return_sequences: int,
    max_new_tokens: int,
    logits_processor: list | None,
    prefix_allowed_tokens_fn: Any,
    eos_token_id: int,
    renormalize: bool,
) -> dict[str, Any]:
    """``generate`` settings for deterministic beam search scored like ``beam_search``: summed log-probs
    (length penalty 0), padding with EOS, scores returned."""
    return {
        "num_beams": beam_size,
        "num_return_sequences": num_return_sequences,
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "early_stopping": True,
        "length_penalty": 0.0,
        "logits_processor": logits_processor,
        "prefix_allowed_tokens_fn": prefix_allowed_tokens_fn,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
        "renormalize_logits": renormalize,
        "output_scores": True,
        "return_dict_in_generate": True,
    }


class HFRetrieverBase(GenerativeRetriever):
    """Decoder-vocabulary bookkeeping and pooling shared by the HF retrievers.

    Decoder token convention (see :mod:`gr_toolkit.identifiers.base`): identifier tokens ``0..V-1``,
    ``BOS = V``, ``EOS = V + 1``; ``memory`` carries ``"states"`` and a ``"mask"`` over them.
    """

    def _init_vocab(self, config: Any, decoder_vocab_size: int, source_kind: str) -> None:
        if source_kind not in ("history", "query"):
            raise ValueError(f"source_kind must be 'history' or 'query', got {source_kind!r}")
        self.config = config
        self.source_kind = source_kind
        self.decoder_vocab_size = int(decoder_vocab_size)
        self.vocab_size = self.decoder_vocab_size - 2
        self.bos_id = self.vocab_size
        self.eos_id = self.vocab_size + 1

    def pool_memory(self, memory: Any, batch: SourceBatch) -> torch.Tensor:
        # ``memory["mask"]`` (not ``batch.mask``): it covers the prompt / the guaranteed real slot.
        states = memory["states"]
        m = memory["mask"].unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp_min(1.0)

    # -- transformers' own generate ----------------------------------------------------------------
    def _generate_eos_id(self) -> int:
        """The EOS id as ``generate`` sees it (the model's own vocabulary)."""
        raise NotImplementedError

    def _generate(self, batch: SourceBatch, settings: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``generate`` on ``batch`` with ``settings``; return the generated DECODER tokens
        ``[B * R, T]`` (-1 where a generated id is not a decoder token) and HF beam scores ``[B * R]``."""
        raise NotImplementedError

    @torch.no_grad()
    def generate_constrained(
        self,
        batch: SourceBatch,
        beam_size: int,
        max_new_tokens: int,
        logits_processor: list | None = None,
        prefix_allowed_tokens_fn: Any = None,
        num_return_sequences: int | None = None,
        renormalize: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``transformers.generate`` beam search over the same weights.

        Returns ``(sequences [B, R, T] of decoder tokens without BOS; scores [B, R])`` with
        ``R = num_return_sequences`` (default ``beam_size``). Scores are HF's beam scores (summed log-probs,
        length penalty 0). With ``renormalize`` (default) the log-softmax is re-applied AFTER the constraint
        masks the logits, so each step is normalised over the allowed tokens, exactly like
        ``beam_search(normalize="allowed")``; without it HF normalises over the whole vocabulary before masking.
        A ``logits_processor`` sees the model's own ids (see each model's ``constraint_processor``).
        """
        r = num_return_sequences or beam_size
        settings = beam_generate_kwargs(beam_size, r, max_new_tokens, logits_processor, prefix_allowed_tokens_fn,
                                        self._generate_eos_id(), renormalize)
        sequences, scores = self._generate(batch, settings)
        return sequences.reshape(len(batch), r, -1), scores.reshape(len(batch), r)
