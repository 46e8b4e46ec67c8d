"""Supervised fine-tuning (query/history -> identifier) for the Hugging Face backbones.

- Causal LMs: trl ``SFTTrainer`` + ``SFTConfig`` on a prompt-completion dataset in LM ids (prompt =
  template + BOS, completion = the identifier), loss on the completion only (``completion_only_loss``),
  CPU-safe (``use_cpu``, bf16 off, no hub, ``report_to="none"``). The SEATER ``align`` / ``rank`` plug-ins
  are added in :class:`PluginSFTTrainer.compute_loss` from the wrapper's token embeddings and pooled
  states, so any scheme with a token tree can use them with a causal LM too.
- T5 (trl does not support encoder-decoders) and any other ``GenerativeRetriever``: :func:`train_generic_sft`,
  a compact loop that sums the configured loss plug-ins (``gen``, ``align``, ``rank``) on
  ``encode`` + ``decode`` + ``score``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr_toolkit.data.types import Examples
from gr_toolkit.losses import LossContext, build_losses
from gr_toolkit.losses.base import decoder_inputs
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch
from gr_toolkit.retrieval.retriever import resolve_device as retriever_device
from gr_toolkit.training.targets import targets_for


@dataclass
class HFSFTConfig:
    #: Loss plug-ins (``gen,align,rank``). With trl (causal LMs) the generation loss is trl's own
    #: completion-only cross-entropy and ``gen`` must be listed; ``align``/``rank`` are added to it.
    losses: str = "gen"
    epochs: int = 1
    #: Stop after this many optimiser steps (None = ``epochs`` full passes).
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    #: Causal LMs: train with trl's SFTTrainer (False = the generic loop, e.g. for a constrained softmax).
    use_trl: bool = True
    gen_full_softmax: bool = False
    align_weight: float = 0.05
    align_tau: float = 0.1
    rank_weight: float = 0.05
    rank_negatives: int = 4
    rank_beta: float = 0.001
    log_every: int = 50
    progress: bool = False

    def loss_names(self) -> list[str]:
        return [n.strip() for n in self.losses.split(",") if n.strip()]

    def loss_options(self) -> dict[str, dict[str, Any]]:
        opts = {
            "gen": {"full_softmax": self.gen_full_softmax},
            "align": {"weight": self.align_weight, "tau": self.align_tau},
            "rank": {"weight": self.rank_weight, "n_negatives": self.rank_negatives, "beta": self.rank_beta},
        }
        return {n: opts[n] for n in self.loss_names() if n in opts}


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; otherwise the named device (the retriever's rule)."""
    return retriever_device(name)


def training_pairs(examples: Examples) -> tuple[np.ndarray, np.ndarray]:
    """(example index, target item) pairs: one per target of every example."""
    return examples.pairs()


def loss_context(model: GenerativeRetriever, index: Any, batch: SourceBatch, items: torch.Tensor,
                 targets: torch.Tensor) -> LossContext:
    """Encode + teacher-forced decode of ``[BOS] + identifier[:-1]`` for one batch of (source, item) pairs;
    ``targets`` from ``training.targets.targets_for`` (query-dependent for the lexical scheme)."""
    device = batch.tokens.device
    targets = targets.to(device)
    dec_in = decoder_inputs(targets, index.bos_id)
    memory = model.encode(batch)
    hidden = model.decode(memory, batch, dec_in)
    return LossContext(model=model, index=index, batch=batch, target_items=items.to(device), targets=targets,
                       memory=memory, hidden=hidden)


def plugin_loss(plugins: list[Any], ctx: LossContext) -> tuple[torch.Tensor, dict[str, float]]:
    total, parts = None, {}
    for p in plugins:
        value = p(ctx)
        parts[p.name] = float(value.detach())
        term = getattr(p, "weight", 1.0) * value
        total = term if total is None else total + term
    return total, parts  # type: ignore[return-value]


def train_generic_sft(
    model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples, config: HFSFTConfig
) -> dict[str, Any]:
    """SFT for any ``GenerativeRetriever`` (the T5 path): AdamW on the summed loss plug-ins."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device).train()
    plugins = build_losses(config.loss_names(), model.hidden_size, config.loss_options())
    params = list(model.parameters()) + [q for p in plugins if isinstance(p, torch.nn.Module) for q in p.to(device).parameters()]
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    ex, items = training_pairs(examples)
    steps_per_epoch = math.ceil(len(ex) / config.batch_size)
    total = config.max_steps or config.epochs * steps_per_epoch
    history: list[dict[str, float]] = []
    start, step = time.time(), 0
    while step < total:
        order = rng.permutation(len(ex))
        for s in range(0, len(order), config.batch_size):
            sel = order[s:s + config.batch_size]
            batch = featurizer.batch(examples, ex[sel]).to(device)
            ctx = loss_context(model, index, batch, torch.from_numpy(items[sel]),
                               targets_for(index, examples, ex[sel], items[sel]))
            loss, parts = plugin_loss(plugins, ctx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), **parts})
            if config.progress and step % config.log_every == 0:
                print(f"sft step {step}/{total} loss {float(loss):.4f} {parts}", flush=True)
            if step >= total:
                break
    model.eval()
    return {"steps": step, "train_seconds": time.time() - start, "history": history, "plugins": plugins}


# ------------------------------------------------------------------------------------------------
# trl for causal LMs
# ------------------------------------------------------------------------------------------------
def causal_sequences(model: Any, index: Any, featurizer: Any, examples: Examples, ex: np.ndarray,
                     items: np.ndarray, chunk: int = 4096) -> tuple[list[list[int]], list[list[int]]]:
    """Per pair: prompt LM ids (template + BOS, no padding) and completion LM ids (identifier, EOS if the
    index uses one)."""
    prompts: list[list[int]] = []
    completions: list[list[int]] = []
    bos = int(model.token_map[model.bos_id])
    for s in range(0, len(ex), chunk):
        batch = featurizer.batch(examples, ex[s:s + chunk])
        ids, mask, _ = model.layout.build(batch.to(model.token_map.device))
        tgt = model.lm_ids(targets_for(index, examples, ex[s:s + chunk], items[s:s + chunk]).to(model.token_map.device))
        ids, mask, tgt = ids.cpu().numpy(), mask.cpu().numpy(), tgt.cpu().numpy()
        prompts += [row[m].tolist() + [bos] for row, m in zip(ids, mask, strict=True)]
        completions += [row[row >= 0].tolist() for row in tgt]
    return prompts, completions


class _PairIndexCollator:
    """trl's LM collator plus a ``pair_index`` tensor (which source/item each row is, for the plug-ins)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        idx = [f.pop("pair_index") for f in features]
        out = self.base(features)
        out["pair_index"] = torch.tensor(idx, dtype=torch.long)
        return out


def _plugin_trainer_class():
    from trl import SFTTrainer

    class PluginSFTTrainer(SFTTrainer):
        """``SFTTrainer`` whose loss is trl's completion-only LM loss + the SEATER plug-in losses."""

        def setup_plugins(self, wrapper, index, featurizer, examples, ex, items, plugins) -> None:
            self.gr_wrapper, self.gr_index, self.gr_featurizer = wrapper, index, featurizer
            self.gr_examples, self.gr_ex, self.gr_items, self.gr_plugins = examples, ex, items, plugins

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            pair_index = inputs.pop("pair_index", None)
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            plugins = getattr(self, "gr_plugins", [])
            if not plugins or pair_index is None:
                return result
            loss, outputs = (result if return_outputs else (result, None))
            sel = pair_index.cpu().numpy()
            device = self.gr_wrapper.token_map.device
            batch = self.gr_featurizer.batch(self.gr_examples, self.gr_ex[sel]).to(device)
            ctx = loss_context(self.gr_wrapper, self.gr_index, batch, torch.from_numpy(self.gr_items[sel]),
                               targets_for(self.gr_index, self.gr_examples, self.gr_ex[sel], self.gr_items[sel]))
            extra, _ = plugin_loss(plugins, ctx)
            loss = loss + extra
            return (loss, outputs) if return_outputs else loss

    return PluginSFTTrainer


def causal_id_tokenizer(model: Any) -> Any:
    """A tokenizer over the causal wrapper's LM ids (trl wants one; our data is already in ids)."""
    from gr_toolkit.models.prompts import id_tokenizer

    lm_vocab = int(model.base_lm().get_input_embeddings().weight.shape[0])
    return id_tokenizer(lm_vocab, pad_id=int(model.layout.pad_id), eos_id=int(model.token_map[model.eos_id]))


def trl_training_args(config: Any, device: torch.device, out_dir: str | Path, n_rows: int) -> dict[str, Any]:
    """``TrainingArguments`` shared by our trl trainers (SFT, DPO) from a config with ``batch_size``,
    ``epochs``, ``max_steps``, ``lr``, ``weight_decay``, ``grad_clip``, ``log_every``, ``seed``, ``progress``:
    constant LR, no checkpoints, no hub / reporting, full precision, CPU when ``device`` is."""
    steps_per_epoch = math.ceil(n_rows / config.batch_size)
    return {
        "output_dir": str(out_dir),
        "per_device_train_batch_size": config.batch_size,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "learning_rate": config.lr,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.grad_clip if config.grad_clip > 0 else 1e9,
        "lr_scheduler_type": "constant",
        "logging_steps": max(1, min(config.log_every, steps_per_epoch)),
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": device.type == "cpu",
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "max_length": None,
        "seed": config.seed,
        "disable_tqdm": not config.progress,
        "dataloader_num_workers": 0,
    }


def train_causal_trl(
    model: Any, index: Any, featurizer: Any, examples: Examples, config: HFSFTConfig, out_dir: str | Path
) -> dict[str, Any]:
    """trl ``SFTTrainer`` on prompt -> identifier completions (loss on the completion only)."""
    from datasets import Dataset as HFDataset
    from trl import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    names = config.loss_names()
    if "gen" not in names:
        raise ValueError("trl SFT always trains the generation loss: include 'gen' in --losses")
    device = resolve_device(config.device)
    model.to(device).train()
    ex, items = training_pairs(examples)
    prompts, completions = causal_sequences(model, index, featurizer, examples, ex, items)
    data = HFDataset.from_dict({
        "input_ids": [p + c for p, c in zip(prompts, completions, strict=True)],
        "completion_mask": [[0] * len(p) + [1] * len(c) for p, c in zip(prompts, completions, strict=True)],
        "pair_index": list(range(len(ex))),
    })
    pad = int(model.layout.pad_id)
    tokenizer = causal_id_tokenizer(model)
    args = SFTConfig(
        **trl_training_args(config, device, out_dir, len(ex)),
        completion_only_loss=True,
        remove_unused_columns=False,
    )
    plugins = build_losses([n for n in names if n != "gen"], model.hidden_size,
                           {k: v for k, v in config.loss_options().items() if k != "gen"}) if len(names) > 1 else []
    params = [p for p in model.lm.parameters() if p.requires_grad]
    params += [q for p in plugins if isinstance(p, torch.nn.Module) for q in p.to(device).parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    collator = _PairIndexCollator(DataCollatorForLanguageModeling(pad_token_id=pad))
    trainer = _plugin_trainer_class()(model=model.lm, args=args, train_dataset=data, processing_class=tokenizer,
                                      data_collator=collator, optimizers=(optimizer, None))
    trainer.setup_plugins(model, index, featurizer, examples, ex, items, plugins)
    start = time.time()
    trainer.train()
    model.eval()
    history = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "train_seconds": time.time() - start, "history": history,
            "plugins": plugins}


def train_sft(model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples, config: HFSFTConfig,
              out_dir: str | Path = "runs/hf_sft") -> dict[str, Any]:
    """SFT with the right engine for the model: trl for causal LMs (``use_trl``), the generic loop otherwise."""
    from gr_toolkit.models.hf_causal import HFCausalRetriever

    if isinstance(model, HFCausalRetriever) and config.use_trl:
        return train_causal_trl(model, index, featurizer, examples, config, out_dir)
    return train_generic_sft(model, index, featurizer, examples, config)
