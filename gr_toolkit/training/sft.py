"""Supervised training of a small ``GenerativeRetriever`` (SEATER and friends) with loss plug-ins.

One epoch = one pass over the training (source, target item) pairs (``Examples.pairs``), shuffled, or
drawn in proportion to example weights with ``weighted``. Each batch is encoded once, decoded with
teacher forcing once, and every loss plug-in reads the shared ``LossContext``. After each epoch the
model retrieves the VALIDATION split with constrained beam search; the best epoch (``select_metric``)
is kept in ``RUN/model.safetensors``, training stops after ``patience`` epochs without improvement,
and the last epoch is checkpointed (optimizer and RNG states included) so an interrupted run resumes
where it stopped when ``train_model`` is called again with the same run directory and setup.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.indexing import IndexingOptions, parse_kinds, with_indexing_examples
from gr_toolkit.data.types import Dataset
from gr_toolkit.evaluation.metrics import evaluate_rankings
from gr_toolkit.identifiers.base import ItemIndex
from gr_toolkit.losses.base import LossContext, decoder_inputs
from gr_toolkit.models.base import MODELS, GenerativeRetriever
from gr_toolkit.models.vector_init import init_tokens_from_item_vectors, load_item_vectors
from gr_toolkit.retrieval.retriever import resolve_device, retrieve_items
from gr_toolkit.training.config import TrainConfig
from gr_toolkit.training.ema import WeightAverage
from gr_toolkit.training.run import RunDir, loss_modules
from gr_toolkit.training.targets import targets_for


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int | None
    best_value: float | None
    epochs_done: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def model_name_of(model: GenerativeRetriever) -> str:
    for name in MODELS.names():
        if type(model) is MODELS.get(name):
            return name
    raise ValueError(f"{type(model).__name__} is not registered in MODELS; pass model_name=")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(), disable=not enabled, transient=False,
    )


def validate_model(
    model: GenerativeRetriever, index: ItemIndex, dataset: Dataset, featurizer: Any, config: TrainConfig,
    subset: np.ndarray | None, device: torch.device,
) -> dict[str, float]:
    """Validation metrics (overall) with beam search; K up to the selection metric's cut-off."""
    examples = dataset.valid if subset is None else dataset.valid.subset(subset)
    k = int(config.select_metric.split("@")[1]) if "@" in config.select_metric else 10
    ks = sorted({k, 10, 50} & set(range(1, config.eval_beam + 1))) or [k]
    ks = sorted(set(ks) | {k})
    items, _ = retrieve_items(model, index, featurizer, examples, top_k=max(ks), beam_size=max(config.eval_beam, k),
                              batch_size=config.eval_batch_size, device=device)
    m = evaluate_rankings(items, examples.targets, ks)["all"]
    return {name: v for name, v in m.items() if name != "n"}


def _check_resumable(man: dict[str, Any], model_name: str, model_cfg: dict, train_cfg: dict, fingerprint: str) -> None:
    problems = []
    if man.get("model") != model_name:
        problems.append(f"model {man.get('model')!r} vs {model_name!r}")
    if man.get("model_config") != model_cfg:
        problems.append("model config differs")
    # May change on resume: more epochs or lr decays continue a run; the rest do not change the trajectory.
    ignore = {"epochs", "patience", "lr_decays", "progress", "device", "threads", "eval_batch_size"}
    a = {k: v for k, v in man.get("train_config", {}).items() if k not in ignore}
    b = {k: v for k, v in train_cfg.items() if k not in ignore}
    # A field missing on one side (a run written before the field existed) counts as its default.
    defaults = dataclasses.asdict(TrainConfig())
    diff = sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)))
    if diff:
        problems.append(f"train config differs in {', '.join(diff)}")
    if man.get("catalog_fingerprint") != fingerprint:
        problems.append("catalog differs")
    if problems:
        raise ArtifactError(
            f"{man.get('_path', 'run directory')} holds a run with a different setup ({'; '.join(problems)}): "
            "use a new --out to start over"
        )


def freeze_parameters(model: torch.nn.Module, prefixes: str) -> int:
    """Turn off gradients of the parameters whose names start with one of ``prefixes`` (comma list);
    a prefix that matches nothing is an error (a typo would silently train everything)."""
    names = [p.strip() for p in prefixes.split(",") if p.strip()]
    n = 0
    for prefix in names:
        hit = [(k, p) for k, p in model.named_parameters() if k.startswith(prefix)]
        if not hit:
            top = sorted({k.split(".")[0] for k, _ in model.named_parameters()})
            raise ValueError(f"freeze: no parameter name starts with {prefix!r}; top-level names: {', '.join(top)}")
        for _, p in hit:
            if p.requires_grad:
                p.requires_grad_(False)
                n += p.numel()
    return n


def check_train_setup(dataset: Dataset, config: TrainConfig) -> None:
    """Refuse a setup that cannot train or select, before anything is written."""
    if len(dataset.train) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no training examples")
    if len(dataset.valid) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no validation examples: epochs are selected on validation")
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1 or config.eval_every < 1 or config.eval_beam < 1:
        raise ValueError(f"batch_size, eval_every and eval_beam must be >= 1 (got {config.batch_size}, "
                         f"{config.eval_every}, {config.eval_beam})")
    if config.indexing_ratio < 0 or not np.isfinite(config.indexing_ratio):
        raise ValueError(f"indexing_ratio must be a finite number >= 0, got {config.indexing_ratio}")
    if config.indexing:
        IndexingOptions(kinds=parse_kinds(config.indexing), spans_per_item=config.indexing_spans)
        if dataset.kind != "query":
            raise ValueError(f"indexing examples need query text; dataset {dataset.name!r} has {dataset.kind} sources")


def train_model(
    model: GenerativeRetriever,
    index: ItemIndex,
    dataset: Dataset,
    featurizer: Any,
    losses: list[Any],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    index_source: str | Path | None = None,
    resume: bool = True,
    log: Any = print,
) -> TrainResult:
    """Train ``model`` on ``dataset.train``, select on ``dataset.valid``, write the run to ``out_dir``.

    On return ``model`` holds the best weights. ``losses`` are loss plug-ins (``build_losses``).
    """
    if index.catalog_fingerprint != dataset.catalog.fingerprint():
        raise ArtifactError(
            f"the index was built for a different catalog (fingerprint {index.catalog_fingerprint}) than "
            f"dataset {dataset.name!r} ({dataset.catalog.fingerprint()}): rebuild it with `gr-toolkit index {dataset.name}`"
        )
    check_train_setup(dataset, config)
    n_task = len(dataset.train)
    if config.indexing:
        dataset, n_task, notes = with_indexing_examples(dataset, IndexingOptions(
            kinds=parse_kinds(config.indexing), field=config.indexing_field, spans_per_item=config.indexing_spans,
            seed=config.seed))
        log(f"indexing examples ({config.indexing}): {len(dataset.train) - n_task:,} for {dataset.catalog.name}, "
            f"{config.indexing_ratio:g} per training pair per epoch" + "".join(f"; {n}" for n in notes))
    if dataset.kind == "query":
        featurizer.prepare(list(dataset.train.queries) + list(dataset.valid.queries), log=log)
    if config.threads:
        torch.set_num_threads(config.threads)
    model_name = model_name or model_name_of(model)
    device = resolve_device(config.device)
    rng = seed_everything(config.seed)
    model.to(device)
    loss_mods = loss_modules(losses).to(device)
    frozen = freeze_parameters(model, config.freeze)
    if frozen:
        log(f"frozen: {frozen:,} parameters ({config.freeze})")
    params = [p for p in model.parameters() if p.requires_grad] + list(loss_mods.parameters())
    if config.lr_decays < 0 or (config.lr_decays and not 0.0 < config.lr_decay < 1.0):
        raise ValueError(f"lr_decays must be >= 0 and lr_decay in (0, 1); got lr_decays={config.lr_decays}, "
                         f"lr_decay={config.lr_decay}")
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = (WeightAverage([(f"model.{n}", p) for n, p in model.named_parameters()]
                         + [(f"losses.{n}", p) for n, p in loss_mods.named_parameters()], config.ema_decay)
           if config.ema_decay else None)
    averaged = ema.averaged if ema is not None else nullcontext
    decays_done = 0

    def decay_lr(reason: str) -> torch.optim.Optimizer:
        """Back to the best weights with a fresh Adam at ``lr * lr_decay`` (the moments belong to later weights)."""
        nonlocal decays_done
        decays_done += 1
        lr = config.lr * config.lr_decay ** decays_done
        run.load_best(model, device, loss_mods)
        if ema is not None:  # the best weights are an average already: start a new one from them
            ema.reset()
        log(f"{reason}: back to the best weights (epoch {best['epoch']}), lr {lr:.3g} "
            f"(decay {decays_done}/{config.lr_decays})")
        return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)

    run = RunDir(out_dir)
    fresh = not (run.exists() and resume)
    if fresh and config.init_token_vectors:  # read and check before anything is written
        vectors = load_item_vectors(config.init_token_vectors, index.n_items, model.item_vector_widths(),
                                    dataset.catalog)
        n_set = init_tokens_from_item_vectors(model, index, vectors)
        log(f"{n_set:,} identifier-token embeddings start from {config.init_token_vectors}")
    model_cfg = dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else {}
    train_cfg = dataclasses.asdict(config)
    fingerprint = dataset.catalog.fingerprint()
    start_epoch, best, bad, elapsed = 0, None, 0, 0.0
    if not fresh:
        man = run.read_manifest()
        man["_path"] = str(run.path)
        _check_resumable(man, model_name, model_cfg, train_cfg, fingerprint)
        if run.has_checkpoint():
            state = run.load_checkpoint(model, loss_mods, optimizer, rng, device)
            start_epoch, best, bad, elapsed = state["epoch"], state["best"], state["bad_epochs"], state["train_seconds"]
            decays_done = state.get("lr_decays_done", 0)
            if ema is not None:
                ema.load_state_tensors(run.load_checkpoint_ema(device), state.get("ema_updates", 0))
            run.truncate_history(start_epoch)
            log(f"resuming {run.path} after epoch {start_epoch}")
        can_decay = decays_done < config.lr_decays and best is not None
        if man.get("status") == "finished" and (start_epoch >= config.epochs
                                                or (man.get("stopped_early") and not can_decay)):
            run.load_best(model, device)
            return _result(run, best, start_epoch, elapsed, man.get("stopped_early", False))
        if man.get("stopped_early") and can_decay:  # a run that stopped before lr decays were allowed
            optimizer, bad = decay_lr("continuing a run that stopped early"), 0
        run.update_manifest(status="training", stopped_early=False, train_config=train_cfg)
    else:
        run.create(model_name=model_name, model_config=model_cfg, train_config=train_cfg, dataset=dataset.name,
                   catalog_fingerprint=fingerprint, index=index,
                   index_source=str(Path(index_source).resolve()) if index_source else None, featurizer=featurizer,
                   catalog=dataset.catalog)

    ex_idx, items = dataset.train.pairs()
    pair_w = np.asarray(dataset.train.weights, dtype=np.float64)[ex_idx]
    task_pairs = np.flatnonzero(ex_idx < n_task)
    index_pairs = np.flatnonzero(ex_idx >= n_task)
    n_index_draw = int(round(config.indexing_ratio * len(task_pairs))) if len(index_pairs) else 0
    n_pairs = len(task_pairs) + n_index_draw
    steps = (n_pairs + config.batch_size - 1) // config.batch_size
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    valid_subset = None
    if config.eval_max_examples and len(dataset.valid) > config.eval_max_examples:
        valid_subset = np.sort(np.random.default_rng(config.seed).choice(len(dataset.valid), config.eval_max_examples,
                                                                          replace=False))
    stopped_early = False
    last_epoch = start_epoch
    with _progress(config.progress) as bar:
        epoch_task = bar.add_task("epochs", total=config.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch + 1, config.epochs + 1):
            t0 = time.perf_counter()
            last_epoch = epoch
            order = epoch_order(rng, task_pairs, index_pairs, n_index_draw, pair_w, config.weighted)
            sums: dict[str, float] = defaultdict(float)
            model.train()
            loss_mods.train()
            step_task = bar.add_task(f"epoch {epoch}", total=steps, info="")
            for step in range(steps):
                sel = order[step * config.batch_size:(step + 1) * config.batch_size]
                parts = train_step(model, index, dataset, featurizer, losses, ex_idx[sel], items[sel], device)
                total = sum(lo.weight * parts[lo.name] for lo in losses)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update()
                sums["total"] += float(total.detach())
                for name, v in parts.items():
                    sums[name] += float(v.detach())
                bar.update(step_task, advance=1, info=f"loss {sums['total'] / (step + 1):.4f}")
            bar.remove_task(step_task)
            train_s = time.perf_counter() - t0
            elapsed += train_s
            record: dict[str, Any] = {"epoch": epoch, "train_seconds": round(train_s, 3),
                                      **{f"loss_{k}": v / max(steps, 1) for k, v in sums.items()}}
            improved = False
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                t1 = time.perf_counter()
                with averaged():
                    val = validate_model(model, index, dataset, featurizer, config, valid_subset, device)
                    record["valid"] = val
                    record["valid_seconds"] = round(time.perf_counter() - t1, 3)
                    value = val[config.select_metric]
                    if best is None or value > best["value"]:
                        best = {"epoch": epoch, "metric": config.select_metric, "value": value}
                        bad, improved = 0, True
                        run.save_best(model, loss_mods)
                    else:
                        bad += 1
            elif best is None:
                with averaged():
                    run.save_best(model, loss_mods)  # something to load before the first evaluation
            record["lr"] = optimizer.param_groups[0]["lr"]
            run.append_history(record)
            info = f"{config.select_metric} {record['valid'][config.select_metric]:.4f}" if "valid" in record else ""
            bar.update(epoch_task, advance=1, info=info + (" *" if improved else ""))
            log(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss_"))
                + (f", valid {info}" if info else "") + (" (best)" if improved else ""))
            done = config.patience > 0 and bad >= config.patience
            if done and decays_done < config.lr_decays and epoch < config.epochs:
                optimizer, bad, done = decay_lr(f"no better {config.select_metric} for {bad} evaluations"), 0, False
            run.save_checkpoint(model, loss_mods, optimizer,
                                {"epoch": epoch, "best": best, "bad_epochs": bad, "train_seconds": elapsed,
                                 "lr_decays_done": decays_done, "ema_updates": ema.updates if ema is not None else 0}, rng,
                                ema=ema.state_tensors() if ema is not None else None)
            run.update_manifest(epochs_done=epoch, best=best, train_seconds=round(elapsed, 3))
            if done:
                stopped_early = True
                log(f"early stop: no better {config.select_metric} for {bad} evaluations (best epoch {best['epoch']})")
                break
    run.update_manifest(status="finished", stopped_early=stopped_early)
    run.load_best(model, device)
    return _result(run, best, last_epoch, elapsed, stopped_early)


def epoch_order(rng: np.random.Generator, task_pairs: np.ndarray, index_pairs: np.ndarray, n_index: int,
                pair_weights: np.ndarray, weighted: bool) -> np.ndarray:
    """One epoch's training pairs, shuffled: every task pair once (or as many drawn in proportion to
    traffic with ``weighted``) plus ``n_index`` indexing pairs (without replacement while the pool lasts)."""
    if weighted:
        w = pair_weights[task_pairs]
        task = task_pairs[rng.choice(len(task_pairs), len(task_pairs), p=w / w.sum())]
        if not n_index:
            return task
    elif not n_index:
        return task_pairs[rng.permutation(len(task_pairs))]
    else:
        task = task_pairs
    extra = index_pairs[rng.choice(len(index_pairs), n_index, replace=n_index > len(index_pairs))]
    task = np.concatenate([task, extra])
    return task[rng.permutation(len(task))]


def _result(run: RunDir, best: dict | None, epochs: int, elapsed: float, stopped: bool) -> TrainResult:
    return TrainResult(run.path, best["epoch"] if best else None, best["value"] if best else None,
                       int(run.read_manifest().get("epochs_done", epochs)), elapsed, run.read_history(), stopped)


def train_step(
    model: GenerativeRetriever, index: ItemIndex, dataset: Dataset, featurizer: Any, losses: list[Any],
    example_ids: np.ndarray, target_items: np.ndarray, device: torch.device,
) -> dict[str, torch.Tensor]:
    """Forward pass of one batch: encode once, teacher-forced decode once, every loss on the shared context."""
    batch = featurizer.batch(dataset.train, example_ids).to(device)
    targets = targets_for(index, dataset.train, example_ids, target_items).to(device)
    memory = model.encode(batch)
    dec_in = decoder_inputs(targets, index.bos_id)
    hidden = model.decode(memory, batch, dec_in)
    ctx = LossContext(model, index, batch, torch.as_tensor(target_items, device=device), targets, memory, hidden)
    return {lo.name: lo(ctx) for lo in losses}
