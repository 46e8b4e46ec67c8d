"""Direct preference optimisation on identifier sequences.

``loss = -log sigmoid(beta * [(log pi(c|x) - log ref(c|x)) - (log pi(r|x) - log ref(r|x))])`` for a
chosen identifier ``c`` and a rejected one ``r`` of the same source ``x`` (Rafailov et al., 2023).

- :func:`train_dpo` works for ANY ``GenerativeRetriever`` (SEATER, T5, causal) through ``encode`` +
  ``decode`` + ``score``: sequence log-probabilities are sums of per-token log-softmaxes, normalised over
  the tokens the index allows (``normalize="allowed"``, what beam search ranks by) or over the full
  decoder vocabulary. The reference is the policy at the start (its log-probs are computed once before
  training, so no second model is held), or an explicit frozen model.
- :func:`train_causal_dpo_trl`: trl ``DPOTrainer`` + ``DPOConfig`` for causal LMs, with the reference
  as a frozen in-memory copy (or LoRA's disabled adapter), never reloaded by name.
- :func:`run_dpo_stage`: the ``gr-toolkit train --stage dpo`` entry point on a finished SFT run directory.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gr_toolkit.data.types import Examples
from gr_toolkit.losses.base import decoder_inputs
from gr_toolkit.losses.generation import teacher_forced_candidates
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch
from gr_toolkit.training.hf_sft import resolve_device
from gr_toolkit.training.preferences import PreferencePairs
from gr_toolkit.training.targets import targets_for


@dataclass
class DPOTrainConfig:
    beta: float = 0.1
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: Adds ``sft_weight * NLL(chosen)`` (keeps the SFT behaviour; 0 = pure DPO).
    sft_weight: float = 0.0
    #: ``allowed``: per-step softmax over the tokens the index allows; ``full``: over the decoder vocabulary.
    normalize: str = "allowed"
    #: Causal LMs: use trl's DPOTrainer (False = this module's objective).
    use_trl: bool = True
    #: Pair sources for ``run_dpo_stage``: ``graded``, ``mined`` or ``graded,mined``.
    pairs: str = "graded,mined"
    mine_beam: int = 20
    mine_max_examples: int | None = 2000
    max_pairs_per_example: int = 8
    seed: int = 0
    device: str = "auto"
    log_every: int = 20
    progress: bool = False


def sequence_logprobs(model: GenerativeRetriever, index: Any, memory: Any, batch: SourceBatch, targets: torch.Tensor,
                      normalize: str = "allowed") -> torch.Tensor:
    """``[B]`` log-probability of each identifier in ``targets [B, T]`` (from ``targets_for``; EOS included
    where the index uses one)."""
    device = batch.tokens.device
    targets = targets.to(device)
    dec_in = decoder_inputs(targets, index.bos_id)
    hidden = model.decode(memory, batch, dec_in)
    active = targets >= 0
    if normalize == "full":
        logp = torch.log_softmax(model.score(hidden, None).float(), dim=-1)
        tok = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    elif normalize == "allowed":
        cand, valid, gold = teacher_forced_candidates(index, targets)
        logits = model.score(hidden, cand).float().masked_fill(~valid, float("-inf"))
        logp = torch.log_softmax(logits, dim=-1)
        tok = logp.gather(-1, gold.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    else:
        raise ValueError(f"normalize must be 'allowed' or 'full', got {normalize!r}")
    return torch.where(active, tok, torch.zeros_like(tok)).sum(1)


def pair_logprobs(model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples, pairs: PreferencePairs,
                  sel: np.ndarray, device: torch.device, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of chosen and rejected for pairs ``sel``: one encode, one decode over both halves."""
    batch = featurizer.batch(examples, pairs.example[sel]).to(device)
    memory = model.encode(batch)
    n = len(sel)
    rows = torch.arange(n, device=device).repeat(2)
    both = batch.select(rows)
    items = np.concatenate([pairs.chosen[sel], pairs.rejected[sel]])
    targets = targets_for(index, examples, np.concatenate([pairs.example[sel]] * 2), items)
    lp = sequence_logprobs(model, index, model.expand_memory(memory, rows), both, targets, normalize)
    return lp[:n], lp[n:]


def dpo_loss(pol_c: torch.Tensor, pol_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean sigmoid DPO loss over pairs."""
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return -F.logsigmoid(beta * margin).mean()


@torch.no_grad()
def reference_logprobs(model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples,
                       pairs: PreferencePairs, device: torch.device, normalize: str,
                       batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()
    rc, rr = np.zeros(len(pairs)), np.zeros(len(pairs))
    for s in range(0, len(pairs), batch_size):
        sel = np.arange(s, min(s + batch_size, len(pairs)))
        c, r = pair_logprobs(model, index, featurizer, examples, pairs, sel, device, normalize)
        rc[sel], rr[sel] = c.cpu().numpy(), r.cpu().numpy()
    model.train(was_training)
    return rc, rr


def train_dpo(policy: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples, pairs: PreferencePairs,
              config: DPOTrainConfig, reference: GenerativeRetriever | None = None) -> dict[str, Any]:
    """DPO on ``pairs`` for any ``GenerativeRetriever``; returns per-step loss / reward accuracy."""
    if len(pairs) == 0:
        raise ValueError("no preference pairs to train on")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    policy.to(device)
    ref_model = reference if reference is not None else policy
    ref_model.to(device)
    start = time.time()
    if config.max_steps and len(pairs) > config.max_steps * config.batch_size:
        # Only max_steps * batch_size pairs can be visited: draw them now, so reference log-probs are
        # computed for those and not for the whole pool.
        keep = np.sort(rng.choice(len(pairs), config.max_steps * config.batch_size, replace=False))
        pairs = pairs.subset(keep)
    ref_c, ref_r = reference_logprobs(ref_model, index, featurizer, examples, pairs, device, config.normalize)
    # Dropout off (as trl's ``disable_dropout``): policy and reference log-probs must be comparable,
    # otherwise dropout noise alone moves the DPO margin. Gradients flow in eval mode all the same.
    policy.eval()
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.max_steps or config.epochs * math.ceil(len(pairs) / config.batch_size)
    history: list[dict[str, float]] = []
    step = 0
    while step < total:
        order = rng.permutation(len(pairs))
        for s in range(0, len(order), config.batch_size):
            sel = order[s:s + config.batch_size]
            pc, pr = pair_logprobs(policy, index, featurizer, examples, pairs, sel, device, config.normalize)
            rc = torch.as_tensor(ref_c[sel], dtype=pc.dtype, device=device)
            rr = torch.as_tensor(ref_r[sel], dtype=pc.dtype, device=device)
            loss = dpo_loss(pc, pr, rc, rr, config.beta)
            if config.sft_weight > 0:
                n_tok = targets_for(index, examples, pairs.example[sel], pairs.chosen[sel]).ge(0).sum(1).clamp_min(1).to(device)
                loss = loss + config.sft_weight * (-(pc / n_tok)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            acc = float(((pc - rc) > (pr - rr)).float().mean())
            history.append({"step": step, "loss": float(loss.detach()), "reward_accuracy": acc})
            if config.progress and step % config.log_every == 0:
                print(f"dpo step {step}/{total} loss {float(loss):.4f} reward-acc {acc:.3f}", flush=True)
            if step >= total:
                break
    policy.eval()
    return {"steps": step, "train_seconds": time.time() - start, "history": history, "n_pairs": len(pairs)}


# ------------------------------------------------------------------------------------------------
# trl for causal LMs
# ------------------------------------------------------------------------------------------------
def train_causal_dpo_trl(model: Any, index: Any, featurizer: Any, examples: Examples, pairs: PreferencePairs,
                         config: DPOTrainConfig, out_dir: str | Path) -> dict[str, Any]:
    """trl ``DPOTrainer`` on (prompt, chosen identifier, rejected identifier) in exact LM ids."""
    from datasets import Dataset as HFDataset
    from trl import DPOConfig, DPOTrainer

    from gr_toolkit.models.prompts import ids_to_text
    from gr_toolkit.training.hf_sft import causal_id_tokenizer, causal_sequences, trl_training_args

    if len(pairs) == 0:
        raise ValueError("no preference pairs to train on")
    device = resolve_device(config.device)
    model.to(device).train()
    prompts, chosen = causal_sequences(model, index, featurizer, examples, pairs.example, pairs.chosen)
    _, rejected = causal_sequences(model, index, featurizer, examples, pairs.example, pairs.rejected)
    eos = int(model.token_map[model.eos_id])
    # Completions end with EOS explicitly, so trl's add-EOS step leaves them as they are.
    data = HFDataset.from_dict({
        "prompt": [ids_to_text(p) for p in prompts],
        "chosen": [ids_to_text(c + [eos]) if not c or c[-1] != eos else ids_to_text(c) for c in chosen],
        "rejected": [ids_to_text(r + [eos]) if not r or r[-1] != eos else ids_to_text(r) for r in rejected],
    })
    tokenizer = causal_id_tokenizer(model)
    ref = None
    if not model.is_lora:  # LoRA: trl uses the base model with the adapter disabled as the reference
        ref = copy.deepcopy(model.lm).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    args = DPOConfig(
        **trl_training_args(config, device, out_dir, len(pairs)),
        beta=config.beta,
        # sft_weight > 0: DPO + NLL of the chosen completion (trl's "sft" loss term), as in train_dpo
        loss_type=["sigmoid", "sft"] if config.sft_weight > 0 else ["sigmoid"],
        loss_weights=[1.0, config.sft_weight] if config.sft_weight > 0 else None,
    )
    trainer = DPOTrainer(model=model.lm, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer)
    start = time.time()
    trainer.train()
    model.eval()
    history = [{"step": h["step"], "loss": h["loss"], **({"reward_accuracy": h["rewards/accuracies"]}
               if "rewards/accuracies" in h else {})} for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "train_seconds": time.time() - start, "history": history,
            "n_pairs": len(pairs)}


def train_preferences(model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples,
                      pairs: PreferencePairs, config: DPOTrainConfig, out_dir: str | Path = "runs/dpo") -> dict[str, Any]:
    """DPO with the right engine: trl for causal LMs (``use_trl``), this module's objective otherwise."""
    from gr_toolkit.models.hf_causal import HFCausalRetriever

    if isinstance(model, HFCausalRetriever) and config.use_trl:
        return train_causal_dpo_trl(model, index, featurizer, examples, pairs, config, out_dir)
    return train_dpo(model, index, featurizer, examples, pairs, config)


def build_pairs(model: GenerativeRetriever, index: Any, featurizer: Any, examples: Examples,
                config: DPOTrainConfig) -> PreferencePairs:
    """Pairs from the configured sources (``graded`` judgments, ``mined`` hard negatives)."""
    from gr_toolkit.training.preferences import graded_pairs, mined_pairs

    sources = [s.strip() for s in config.pairs.split(",") if s.strip()]
    unknown = set(sources) - {"graded", "mined"}
    if unknown:
        raise ValueError(f"unknown pair source(s) {sorted(unknown)}; use graded and/or mined")
    out: PreferencePairs | None = None
    if "graded" in sources and (examples.target_grades is not None or examples.negatives is not None):
        graded = graded_pairs(examples, max_per_example=config.max_pairs_per_example)
        out = graded if len(graded) else None  # e.g. one graded target per example: nothing to compare
    if "mined" in sources:
        mined = mined_pairs(model, index, featurizer, examples, beam_size=config.mine_beam,
                            max_examples=config.mine_max_examples, seed=config.seed,
                            device=resolve_device(config.device))
        out = mined if out is None else out.concat(mined)
    if out is None or len(out) == 0:
        raise ValueError(f"no preference pairs from sources {sources} (graded needs target_grades/negatives)")
    return out


def run_dpo_stage(run_dir: str | Path, dataset: Any, config: DPOTrainConfig | None = None,
                  out_dir: str | Path | None = None, log: Any = print) -> Path:
    """``gr-toolkit train ... --stage dpo``: DPO on top of a finished SFT run directory.

    Loads the SFT run (model name + config, best weights, featurizer, index copy), builds preference
    pairs from ``dataset.train`` (``config.pairs``: graded judgments and/or hard negatives mined with the
    SFT model's own beams), trains, and writes a NEW run directory ``out_dir`` (default
    ``<run_dir>-dpo``) with the same layout, so ``gr-toolkit eval --run`` / ``search`` work on it.
    ``dataset`` is a ``Dataset`` or a dataset name for ``load_dataset``.
    """
    import dataclasses
    import json
    import shutil
    import tempfile

    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.config import from_dict
    from gr_toolkit.data.featurize import SourceFeaturizer
    from gr_toolkit.identifiers.base import load_index
    from gr_toolkit.models import model_class
    from gr_toolkit.training.run import RunDir

    config = config or DPOTrainConfig()
    if isinstance(dataset, str):
        from gr_toolkit.data.loaders import load_dataset

        dataset = load_dataset(dataset)
    sft = RunDir(run_dir)
    man = sft.read_manifest()
    if man.get("status") != "finished":
        raise ArtifactError(f"{run_dir}: the SFT run is not finished (status {man.get('status')!r}); finish it first")
    out_dir = Path(out_dir) if out_dir is not None else Path(f"{Path(run_dir)}-dpo")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ArtifactError(f"{out_dir} exists and is not empty; pick a new output directory")
    featurizer = SourceFeaturizer.load(sft.featurizer_dir, catalog=dataset.catalog)
    index = load_index(sft.index_dir, catalog=dataset.catalog)
    cls = model_class(man["model"])
    model = cls.build(index, featurizer, from_dict(cls.config_class, man["model_config"], where=f"{run_dir} model_config"))
    sft.load_best(model, resolve_device(config.device))
    pairs = build_pairs(model, index, featurizer, dataset.train, config)
    log(f"dpo: {len(pairs):,} preference pairs ({pairs.source}) from {len(dataset.train):,} training examples")
    with tempfile.TemporaryDirectory() as scratch:
        result = train_preferences(model, index, featurizer, dataset.train, pairs, config, scratch)
    # Publish atomically: copy the SFT run's featurizer/index/manifest, then the DPO weights, then rename.
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for entry in sft.path.iterdir():  # featurizer, index, catalog, history, loss weights: as the SFT run has them
        if entry.name in ("checkpoint", "model.safetensors", "manifest.json") or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, tmp / entry.name)
        else:
            shutil.copy2(entry, tmp / entry.name)
    new = RunDir(tmp)
    history = result["history"]
    manifest = {**{k: v for k, v in man.items() if k != "checksums"}, "stage": "dpo", "sft_run": str(Path(run_dir).resolve()), "dpo_config": dataclasses.asdict(config),
                "dpo": {"pairs": len(pairs), "pair_source": pairs.source, "steps": result["steps"],
                        "train_seconds": round(result["train_seconds"], 3),
                        "first_loss": history[0]["loss"] if history else None,
                        "last_loss": history[-1]["loss"] if history else None},
                "status": "finished"}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    new.save_best(model)  # after the manifest: it records the weights' checksums there
    tmp.rename(out_dir)
    log(f"dpo run: {out_dir} ({result['steps']} steps, {result['train_seconds']:.1f} s)")
    return out_dir
