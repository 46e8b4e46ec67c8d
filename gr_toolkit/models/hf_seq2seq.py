"""A Hugging Face T5 encoder-decoder as a ``GenerativeRetriever`` (the TIGER backbone, ``--model t5``).

- Built from a config (TIGER-like default: 4 + 4 layers, d_model 128, 4 heads, d_ff 1024, trained from
  scratch) or loaded from a LOCAL directory (``pretrained_path``; ``local_files_only=True``, never the Hub).
- Decoder vocabulary = the index's decoder vocabulary (identifier tokens, BOS, EOS): T5's ``shared``
  embedding (tied with ``lm_head`` in transformers v5) has exactly ``index.decoder_vocab_size`` rows, so
  ``score`` gathers ``lm_head`` rows of the candidate tokens only. New identifier embeddings can be
  initialised from the index structure (level vectors plus the parent's embedding, see
  :func:`structured_token_init`) so that siblings start close together.
- Encoder vocabulary = the source featurizer's (sentencepiece pieces for queries, item ids for histories):
  a separate ``source_embed`` table fed to the T5 encoder as ``inputs_embeds``.
- ``step`` drives T5's decoder with an HF ``EncoderDecoderCache``: cross-attention K/V are computed once
  per source in ``expand_memory`` and handed to HF without copies; only the self-attention cache is
  reordered with the beams (``index_select`` per layer, :mod:`gr_toolkit.models.hf_cache`).
- ``generate_constrained`` runs ``transformers``' own ``generate`` (beam search) on the same weights with
  any ``LogitsProcessor`` (ours or ``prefix_allowed_tokens_fn``), for comparison and for users who want it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from gr_toolkit.models.base import MODELS, SourceBatch, select_rows
from gr_toolkit.models.hf_cache import fixed_cache as _fixed_cache
from gr_toolkit.models.hf_cache import select_cache
from gr_toolkit.models.hf_common import HFRetrieverBase, build_kwargs
from gr_toolkit.models.hf_common import structured_token_init as structured_token_init  # re-export
from gr_toolkit.models.scoring import candidate_logits


@dataclass
class T5RetrieverConfig:
    d_model: int = 128
    num_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    feed_forward_proj: str = "relu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    #: Initialise identifier-token embeddings from the index's tree / level structure.
    init_from_structure: bool = True
    #: A local directory with a saved T5 (config.json + weights); empty = train from scratch.
    pretrained_path: str = ""
    seed: int = 0


@MODELS.register("t5")
class HFSeq2SeqRetriever(HFRetrieverBase):
    """T5 from ``transformers`` behind the ``GenerativeRetriever`` interface.

    ``memory``: ``{"states": [B, S, d], "mask": [B, S]}`` (encoder output, mask with a guaranteed real slot).
    ``cache``: ``{"self": DynamicCache}`` (the decoder self-attention cache; cross-attention K/V live in
    the beam-expanded memory as ``cross_k{i}`` / ``cross_v{i}``).
    """

    config_class = T5RetrieverConfig

    def __init__(
        self,
        config: T5RetrieverConfig,
        decoder_vocab_size: int,
        source_vocab_size: int,
        source_kind: str = "query",
        token_parent: np.ndarray | None = None,
        token_level: np.ndarray | None = None,
        source_features: int = 0,
    ) -> None:
        super().__init__()
        self._init_vocab(config, decoder_vocab_size, source_kind)
        if decoder_vocab_size < 3:
            raise ValueError(f"decoder_vocab_size must be >= 3 (tokens + BOS + EOS), got {decoder_vocab_size}")
        torch.manual_seed(config.seed)
        if config.pretrained_path:
            self.t5, self.source_embed = self._load_pretrained(config.pretrained_path, source_vocab_size)
        else:
            if config.d_model % config.num_heads:
                raise ValueError(f"d_model={config.d_model} must be divisible by num_heads={config.num_heads}")
            t5cfg = T5Config(
                vocab_size=self.decoder_vocab_size,
                d_model=config.d_model,
                d_kv=config.d_model // config.num_heads,
                d_ff=config.d_ff,
                num_layers=config.num_layers,
                num_decoder_layers=config.num_decoder_layers,
                num_heads=config.num_heads,
                dropout_rate=config.dropout,
                feed_forward_proj=config.feed_forward_proj,
                relative_attention_num_buckets=config.relative_attention_num_buckets,
                relative_attention_max_distance=config.relative_attention_max_distance,
                tie_word_embeddings=False,  # T5 v1.1 style: no d_model**-0.5 rescaling before lm_head
                pad_token_id=self.eos_id,
                eos_token_id=self.eos_id,
                decoder_start_token_id=self.bos_id,
            )
            self.t5 = T5ForConditionalGeneration(t5cfg)
            self.source_embed = nn.Embedding(int(source_vocab_size), config.d_model)
            nn.init.normal_(self.source_embed.weight, std=1.0)
        self.hidden_size = int(self.t5.config.d_model)
        self.feature_proj: nn.Sequential | None = None
        if source_features:  # frozen text-encoder states in place of the source embedding table
            self.source_embed = None
            self.feature_proj = nn.Sequential(nn.LayerNorm(source_features), nn.Linear(source_features, self.hidden_size))
        if config.init_from_structure and token_level is not None:
            structured_token_init(self.t5.shared.weight, token_parent, token_level, std=1.0, seed=config.seed)

    def _load_pretrained(self, path: str, source_vocab_size: int) -> tuple[T5ForConditionalGeneration, nn.Embedding]:
        """A local T5: its input embeddings become the source table; the decoder vocab is replaced."""
        t5 = T5ForConditionalGeneration.from_pretrained(path, local_files_only=True)
        old = t5.get_input_embeddings().weight.detach()
        if source_vocab_size > old.shape[0]:
            raise ValueError(
                f"{path}: the featurizer's vocabulary ({source_vocab_size}) is larger than the model's "
                f"({old.shape[0]}); use the model's own tokenizer for the source text"
            )
        source = nn.Embedding.from_pretrained(old.clone(), freeze=False)
        new = nn.Embedding(self.decoder_vocab_size, old.shape[1])
        with torch.no_grad():  # new tokens start around the mean of the pretrained ones
            new.weight.copy_(old.mean(0) + old.std(0) * torch.randn(self.decoder_vocab_size, old.shape[1]) * 0.1)
        t5.set_input_embeddings(new)
        t5.lm_head = nn.Linear(old.shape[1], self.decoder_vocab_size, bias=False)
        t5.lm_head.weight = new.weight
        t5.config.vocab_size = self.decoder_vocab_size
        t5.config.pad_token_id = t5.config.eos_token_id = self.eos_id
        t5.config.decoder_start_token_id = self.bos_id
        return t5, source

    @classmethod
    def build(cls, index: Any, featurizer: Any, config: T5RetrieverConfig | None = None) -> HFSeq2SeqRetriever:
        """The model for ``index`` (decoder vocab and structure) and ``featurizer`` (source kind/vocab)."""
        return cls(config or T5RetrieverConfig(), **build_kwargs(index, featurizer))

    # -- encoder ---------------------------------------------------------------------------------
    def encode(self, batch: SourceBatch) -> dict[str, torch.Tensor]:
        mask = batch.mask.bool()
        safe = mask.clone()
        safe[:, 0] |= ~mask.any(1)  # an empty source would make attention undefined: let it see slot 0
        if self.feature_proj is not None:
            if batch.features is None:
                raise ValueError("this model reads precomputed text features (encoder minilm); the batch has none")
            emb = self.feature_proj(batch.features)
        else:
            tokens = batch.tokens.masked_fill(~mask, 0).clamp_min(0)
            if tokens.numel() and int(tokens.max()) >= self.source_embed.num_embeddings:
                raise ValueError(f"source token {int(tokens.max())} outside the encoder vocabulary of "
                                 f"{self.source_embed.num_embeddings}")
            emb = self.source_embed(tokens)
        states = self.t5.encoder(inputs_embeds=emb, attention_mask=safe.long()).last_hidden_state
        return {"states": states, "mask": safe}

    # -- decoder ---------------------------------------------------------------------------------
    def decode(self, memory: Any, batch: SourceBatch | None, decoder_input: torch.Tensor) -> torch.Tensor:
        dec_mask = decoder_input >= 0
        out = self.t5.decoder(
            input_ids=decoder_input.masked_fill(~dec_mask, self.eos_id),
            attention_mask=dec_mask.long(),
            encoder_hidden_states=memory["states"],
            encoder_attention_mask=memory["mask"].long(),
            use_cache=False,
        )
        return out.last_hidden_state

    def _output_scale(self) -> float:
        return self.hidden_size**-0.5 if getattr(self.t5.config, "scale_decoder_outputs", False) else 1.0

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        table = self.t5.lm_head.weight
        return candidate_logits(hidden * self._output_scale(), table, candidates)

    def _cross_kv(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-attention keys/values of every decoder layer, ``[B, h, S, dk]`` each."""
        out = {}
        for i, block in enumerate(self.t5.decoder.block):
            att = block.layer[1].EncDecAttention
            shape = (*states.shape[:-1], -1, att.key_value_proj_dim)
            out[f"cross_k{i}"] = att.k(states).view(shape).transpose(1, 2)
            out[f"cross_v{i}"] = att.v(states).view(shape).transpose(1, 2)
        return out

    def expand_memory(self, memory: Any, index: torch.Tensor) -> Any:
        # Cross-attention K/V are computed once per SOURCE here (not once per beam at the first step)
        # and then copied per beam with the rest of the memory; they never move again (see ``step``).
        if "cross_k0" not in memory:
            memory = {**memory, **self._cross_kv(memory["states"])}
        return select_rows(memory, index)

    def step(
        self, memory: Any, batch_mask: torch.Tensor | None, last_tokens: torch.Tensor, cache: Any, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        """``cache`` = ``{"self": DynamicCache}``: only the self-attention cache follows the beams; the
        cross-attention cache is rebuilt each step from the memory's K/V tensors (no copy)."""
        cross = memory if "cross_k0" in memory else self._cross_kv(memory["states"])
        n_layers = len(self.t5.decoder.block)
        kv = EncoderDecoderCache(
            cache["self"] if cache is not None else DynamicCache(),
            _fixed_cache([(cross[f"cross_k{i}"], cross[f"cross_v{i}"]) for i in range(n_layers)]),
        )
        out = self.t5.decoder(
            input_ids=last_tokens.view(-1, 1),
            encoder_hidden_states=memory["states"],
            encoder_attention_mask=memory["mask"].long(),
            past_key_values=kv,
            use_cache=True,
        )
        hidden = out.last_hidden_state[:, 0]
        return self.score(hidden, candidates), {"self": out.past_key_values.self_attention_cache}

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        return None if cache is None else {"self": select_cache(cache["self"], index)}

    def token_embeddings(self) -> torch.Tensor:
        return self.t5.shared.weight

    # -- transformers' own generate --------------------------------------------------------------
    def constraint_processor(self, constraint: Any, batch: SourceBatch | None = None) -> Any:
        """Our ``ConstraintLogitsProcessor`` for ``generate``: decoder ids ARE identifier tokens here,
        and generated tokens start after the decoder start token (``prefix_length=1``)."""
        from gr_toolkit.decoding.logits_processor import ConstraintLogitsProcessor

        return ConstraintLogitsProcessor(constraint, np.arange(self.vocab_size), eos_token_id=self.eos_id, prefix_length=1)

    def _generate_eos_id(self) -> int:
        return self.eos_id

    def _generate(self, batch: SourceBatch, settings: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search from the decoder start token (BOS) over the encoded source."""
        memory = self.encode(batch)
        out = self.t5.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory["states"]),
            attention_mask=memory["mask"].long(),
            decoder_start_token_id=self.bos_id,
            **settings,
        )
        return out.sequences[:, 1:], out.sequences_scores
