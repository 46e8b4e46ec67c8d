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

from gr_toolkit.models.base import MODELS, GenerativeRetriever, SourceBatch, select_rows
from gr_toolkit.models.hf_cache import fixed_cache as _fixed_cache
from gr_toolkit.models.hf_cache import select_cache
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


@MODELS.register("t5")
class HFSeq2SeqRetriever(GenerativeRetriever):
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
    ) -> None:
        super().__init__()
        if source_kind not in ("history", "query"):
            raise ValueError(f"source_kind must be 'history' or 'query', got {source_kind!r}")
        if decoder_vocab_size < 3:
            raise ValueError(f"decoder_vocab_size must be >= 3 (tokens + BOS + EOS), got {decoder_vocab_size}")
        self.config = config
        self.source_kind = source_kind
        self.decoder_vocab_size = int(decoder_vocab_size)
        self.vocab_size = self.decoder_vocab_size - 2
        self.bos_id = self.vocab_size
        self.eos_id = self.vocab_size + 1
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
        config = config or T5RetrieverConfig()
        return cls(
            config,
            decoder_vocab_size=index.decoder_vocab_size,
            source_vocab_size=int(featurizer.vocab_size),
            source_kind=featurizer.kind,
            token_parent=getattr(index, "token_parent", None),
            token_level=getattr(index, "token_level", None),
        )

    # -- encoder ---------------------------------------------------------------------------------
    def encode(self, batch: SourceBatch) -> dict[str, torch.Tensor]:
        mask = batch.mask.bool()
        safe = mask.clone()
        safe[:, 0] |= ~mask.any(1)  # an empty source would make attention undefined: let it see slot 0
        tokens = batch.tokens.masked_fill(~mask, 0).clamp_min(0)
        if tokens.numel() and int(tokens.max()) >= self.source_embed.num_embeddings:
            raise ValueError(
                f"source token {int(tokens.max())} outside the encoder vocabulary of {self.source_embed.num_embeddings}"
            )
        emb = self.source_embed(tokens)
        states = self.t5.encoder(inputs_embeds=emb, attention_mask=safe.long()).last_hidden_state
        return {"states": states, "mask": safe}

    def pool_memory(self, memory: Any, batch: SourceBatch) -> torch.Tensor:
        states = memory["states"]
        m = memory["mask"].unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp_min(1.0)

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

        Returns ``(sequences [B, R, T] without BOS; scores [B, R])`` with ``R = num_return_sequences``
        (default ``beam_size``). Scores are HF's beam scores (summed log-probs, length penalty 0). With
        ``renormalize`` (default) the log-softmax is re-applied AFTER the constraint masks the logits, so
        each step is normalised over the allowed tokens, exactly like ``beam_search(normalize="allowed")``;
        without it HF normalises over the whole vocabulary before masking.
        """
        memory = self.encode(batch)
        r = num_return_sequences or beam_size
        out = self.t5.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory["states"]),
            attention_mask=memory["mask"].long(),
            num_beams=beam_size,
            num_return_sequences=r,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            early_stopping=True,
            length_penalty=0.0,
            logits_processor=logits_processor,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            decoder_start_token_id=self.bos_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.eos_id,
            renormalize_logits=renormalize,
            output_scores=True,
            return_dict_in_generate=True,
        )
        seq = out.sequences[:, 1:]
        return seq.reshape(len(batch), r, -1), out.sequences_scores.reshape(len(batch), r)

