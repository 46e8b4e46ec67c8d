"""Collaborative item vectors: a SASRec-style two-tower trained on the TRAINING split only.

History datasets: a causal transformer over the (left-padded) item history is the user tower; the item
tower is the item-embedding table, shared with the transformer's input (as in SASRec). Trained with
next-item prediction at every position, using a sampled softmax (shared uniform negatives, 1280 as in
the SEATER paper), in-batch negatives (with a log-frequency correction) or the full softmax. Epochs are
selected on the validation split (Recall@10 by default); the item-embedding table of the best epoch is
the item vector set that schemes (SEATER trees, RQ codes) are built from.

Query datasets (Home Depot, Best Buy) have no histories: their collaborative vectors are the item
tower of the query-item DSSM (``gr_toolkit.baselines.dssm``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gr_toolkit.data.types import DataError, Dataset, Examples
from gr_toolkit.training.early_stopping import BestStateKeeper, epoch_line, validation_metrics


@dataclass
class SASRecConfig:
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    # Evaluation histories are capped at 20 items by the loaders (DESIGN.md), so longer contexts buy nothing;
    # longer training sequences are cut into windows (no interaction is dropped).
    max_len: int = 20
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 60
    # "sampled" (shared uniform negatives), "inbatch" (other positions' targets, logQ-corrected) or "full".
    loss: str = "sampled"
    num_negatives: int = 1280
    # "uniform" negatives, or "popularity" (drawn in proportion to training frequency ** 0.75, with the
    # logQ correction subtracting log of each candidate's sampling probability): harder negatives.
    negative_sampling: str = "uniform"
    temperature: float = 1.0
    # Stop when the validation metric has not improved for this many evaluations (0 = never).
    patience: int = 8
    eval_every: int = 1
    select_metric: str = "recall@10"
    seed: int = 0
    device: str | None = None
    threads: int = 0  # torch intra-op threads (0 = leave as is)
    verbose: bool = True


class CausalBlock(nn.Module):
    """Pre-LN transformer block with causal self-attention (one idea: SASRec's self-attention block)."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)
        self.attn_dropout = 0.0

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None], dropout_p=self.attn_dropout if self.training else 0.0
        )  # (attention dropout off by default: Bernoulli masks over [B, H, T, T] dominate CPU time)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRec(nn.Module):
    """User tower = causal transformer over the history; item tower = the shared item-embedding table."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.cfg = cfg
        self.pad = n_items  # padding row of the embedding table
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList([CausalBlock(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)])
        self.ln = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.item_emb.weight, std=cfg.dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[self.pad].zero_()

    @property
    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items]

    def sequence_states(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position of left-padded ``seq`` [B, T] -> [B, T, d]."""
        b, t = seq.shape
        valid = seq != self.pad
        pos = torch.arange(t, device=seq.device)
        x = self.item_emb(seq) * math.sqrt(self.cfg.dim) + self.pos_emb(pos + (self.cfg.max_len - t))[None]
        x = self.drop(x) * valid[..., None]
        causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).tril()
        # A query may see earlier real items and always itself (so padded rows are never all-masked).
        allowed = (causal[None] & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=seq.device)[None]
        for blk in self.blocks:
            x = blk(x, allowed) * valid[..., None]
        return self.ln(x)

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """The state at the last position of each left-padded history: the query vector of the user."""
        return self.sequence_states(seq)[:, -1]

    def item_vectors(self) -> np.ndarray:
        return self.item_table.detach().float().cpu().numpy().astype(np.float32)


def pad_histories(histories: list[np.ndarray], max_len: int, pad: int) -> np.ndarray:
    """Left-pad (and left-truncate) histories to ``[n, max_len]`` so the newest item is last."""
    out = np.full((len(histories), max_len), pad, dtype=np.int64)
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_len:]
        if len(h):
            out[i, max_len - len(h) :] = h
    return out


def training_sequences(train: Examples) -> list[np.ndarray]:
    """Full item sequences (history + targets) from history examples.

    When a loader emits several examples per user (``keys`` repeat, e.g. one per prefix, histories
    capped at 20 items), the user's sequence is rebuilt as the first example's history followed by
    every example's target in order, so no interaction is lost to the history cap. Without keys
    every example is its own sequence.
    """
    if train.kind != "history":
        raise DataError(f"SASRec trains on history examples; this split holds {train.kind!r} examples")
    hists = [np.asarray(h, np.int64) for h in train.histories]
    firsts = [np.asarray(t, np.int64)[:1] for t in train.targets]
    if train.keys is None or len(set(train.keys)) == len(train.keys):
        seqs = [np.concatenate([h, t]) for h, t in zip(hists, firsts, strict=True)]
    else:
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(train.keys):
            groups.setdefault(k, []).append(i)
        seqs = []
        for rows in groups.values():
            rows = sorted(rows, key=lambda i: len(hists[i]))  # stable: ties keep the loader's order
            seqs.append(np.concatenate([hists[rows[0]], *[firsts[i] for i in rows]]))
    return [s for s in seqs if len(s) >= 2]


def sequence_windows(seqs: list[np.ndarray], width: int) -> list[np.ndarray]:
    """Cut sequences longer than ``width`` into windows ending at L, L-(width-1), ... so that every
    item after the first is a target exactly once (later windows keep up to ``width-1`` items of context)."""
    out = []
    step = width - 1
    for s in seqs:
        end = len(s)
        while end > 1:
            out.append(s[max(0, end - width) : end])
            end -= step
    return out


def _resolve_device(cfg_device: str | None) -> torch.device:
    if cfg_device:
        return torch.device(cfg_device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _loss(model: SASRec, states: torch.Tensor, targets: torch.Tensor, cfg: SASRecConfig, log_freq: torch.Tensor,
          gen: torch.Generator, sampler: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Softmax loss of ``states`` [N, d] against ``targets`` [N] with the configured negatives."""
    table = model.item_table
    tau = cfg.temperature
    if cfg.loss == "full":
        return F.cross_entropy(states @ table.T / tau, targets)
    if cfg.loss == "sampled":
        if sampler is None:
            negs = torch.randint(0, model.n_items, (cfg.num_negatives,), generator=gen, device="cpu").to(states.device)
            pos = (states * table[targets]).sum(-1, keepdim=True) / tau
            neg = states @ table[negs].T / tau
        else:  # popularity-drawn negatives; logQ correction on every candidate, the positive included
            probs, log_q = sampler
            negs = torch.multinomial(probs, cfg.num_negatives, replacement=True, generator=gen).to(states.device)
            pos = (states * table[targets]).sum(-1, keepdim=True) / tau - log_q[targets][:, None]
            neg = states @ table[negs].T / tau - log_q[negs][None]
        neg = neg.masked_fill(negs[None, :] == targets[:, None], float("-inf"))  # accidental hits
        return F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros(len(targets), dtype=torch.long, device=states.device))
    if cfg.loss == "inbatch":
        uniq, inv = torch.unique(targets, return_inverse=True)
        # logQ correction: in-batch negatives are drawn by popularity; subtract log frequency.
        logits = states @ table[uniq].T / tau - log_freq[uniq][None]
        return F.cross_entropy(logits, inv)
    raise ValueError(f"unknown SASRec loss {cfg.loss!r}; use sampled, inbatch or full")


@torch.no_grad()
def score_topk(user: torch.Tensor, items: torch.Tensor, k: int, exclude: list[np.ndarray] | None = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items by inner product for each user vector, in chunks; optionally masking items."""
    k = min(k, items.shape[0])
    out_i, out_s = [], []
    for s in range(0, user.shape[0], chunk):
        sc = user[s : s + chunk] @ items.T
        if exclude is not None:
            rows = [np.full(len(e), r, dtype=np.int64) for r, e in enumerate(exclude[s : s + chunk])]
            if rows:
                r = torch.from_numpy(np.concatenate(rows)).to(sc.device)
                c = torch.from_numpy(np.concatenate([np.asarray(e, np.int64) for e in exclude[s : s + chunk]])).to(sc.device)
                sc[r, c] = float("-inf")
        top = sc.topk(k, dim=1)
        out_i.append(top.indices.cpu().numpy())
        out_s.append(top.values.float().cpu().numpy())
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_s)


@torch.no_grad()
def sasrec_rank(model: SASRec, examples: Examples, k: int = 100, batch_size: int = 1024, exclude_history: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items (internal ids) and scores for each history example."""
    was = model.training
    model.eval()
    dev = model.item_emb.weight.device
    seq = pad_histories(examples.histories, model.cfg.max_len, model.pad)
    users = torch.cat([model.user_vectors(torch.from_numpy(seq[s : s + batch_size]).to(dev)) for s in range(0, len(seq), batch_size)])
    model.train(was)
    return score_topk(users, model.item_table, k, exclude=examples.histories if exclude_history else None)


def _length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length sequences: left columns that are padding in the whole
    batch are trimmed, so short histories (most of them) cost little attention work."""
    order = rng.permutation(len(lengths))
    batches = []
    for s in range(0, len(order), batch_size * pool):
        chunk = order[s : s + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_sasrec(dataset: Dataset, config: SASRecConfig | None = None, log: Any = print) -> SASRec:
    """Train SASRec on ``dataset.train``; select the epoch by ``config.select_metric`` on ``dataset.valid``.

    The returned model carries ``history`` (per-evaluation metrics), ``best_epoch``, ``train_seconds``.
    """
    cfg = config or SASRecConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = _resolve_device(cfg.device)
    n = len(dataset.catalog)
    seqs = training_sequences(dataset.train)
    if not seqs:
        raise DataError(f"{dataset.name}: no training sequence has 2 or more items")
    # Inputs are positions 0..T-2, targets positions 1..T-1 (all-position next-item prediction).
    windows = sequence_windows(seqs, cfg.max_len + 1)
    padded = pad_histories(windows, cfg.max_len + 1, n)
    inputs, targets = padded[:, :-1], padded[:, 1:]
    freq = np.bincount(np.concatenate(seqs), minlength=n).astype(np.float64) + 1.0
    log_freq = torch.from_numpy(np.log(freq / freq.sum())).float().to(device)
    sampler = None
    if cfg.negative_sampling not in ("uniform", "popularity"):
        raise ValueError(f"unknown negative_sampling {cfg.negative_sampling!r}; use uniform or popularity")
    if cfg.loss == "sampled" and cfg.negative_sampling == "popularity":
        q = freq**0.75
        q = q / q.sum()
        sampler = (torch.from_numpy(q).float(), torch.from_numpy(np.log(q)).float().to(device))

    lengths = np.array([len(w) - 1 for w in windows])
    model = SASRec(n, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    valid = dataset.valid
    keeper = BestStateKeeper(cfg.patience)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, steps = 0.0, 0
        for idx in _length_bucketed_batches(lengths, cfg.batch_size, rng):
            x = torch.from_numpy(inputs[idx]).to(device)
            y = torch.from_numpy(targets[idx]).to(device)
            keep = y != n
            # Trim the all-pad left columns of this batch: less attention work on short histories.
            first = int(keep.any(0).nonzero()[0]) if keep.any() else 0
            x, y, keep = x[:, first:], y[:, first:], keep[:, first:]
            h = model.sequence_states(x)[keep]
            loss = _loss(model, h, y[keep], cfg, log_freq, gen, sampler)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.item_emb.weight[model.pad].zero_()
            total += float(loss.detach())
            steps += 1
        rec: dict[str, float] = {"epoch": epoch, "loss": total / max(steps, 1), "seconds": time.perf_counter() - t0}
        if len(valid) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            ranked, _ = sasrec_rank(model, valid, k=20)
            rec.update(validation_metrics(ranked, valid.targets))
            keeper.update(model, rec[cfg.select_metric], epoch)
        history.append(rec)
        if cfg.verbose and log:
            log(epoch_line("sasrec", rec, cfg.select_metric))
        if keeper.should_stop:
            break
    keeper.restore(model)
    model.eval()
    model.history = history  # type: ignore[attr-defined]
    model.best_epoch = keeper.best_epoch  # type: ignore[attr-defined]
    model.best_valid = keeper.best  # type: ignore[attr-defined]
    model.train_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return model


def item_cf_vectors(dataset: Dataset, config: Any = None, log: Any = print, save_model: str | Path | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Collaborative item vectors ``[n_items, d]`` for any dataset, plus a description for the sidecar.

    History datasets: SASRec's item-embedding table (``save_model`` keeps the trained model, so a
    recipe can evaluate it without retraining). Query datasets: the DSSM item tower.
    """
    if dataset.kind == "history":
        model = train_sasrec(dataset, config if isinstance(config, SASRecConfig) else SASRecConfig(), log=log)
        if save_model:
            from gr_toolkit.evaluation.results import current_command

            save_sasrec(model, save_model, dataset.catalog.fingerprint(), {"dataset": dataset.name, "command": current_command()})
        meta = {"model": "sasrec", "config": asdict(model.cfg), "best_epoch": model.best_epoch,
                "best_valid": model.best_valid, "train_seconds": round(model.train_seconds, 1)}
        return model.item_vectors(), meta
    from gr_toolkit.baselines.dssm import DSSMConfig, train_dssm

    model = train_dssm(dataset, config if isinstance(config, DSSMConfig) else DSSMConfig(), log=log)
    meta = {"model": "dssm-item-tower", "config": asdict(model.cfg), "best_epoch": model.best_epoch,
            "best_valid": model.best_valid, "train_seconds": round(model.train_seconds, 1)}
    return model.item_vectors(), meta


def save_sasrec(model: SASRec, directory: str | Path, catalog_fingerprint: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Save a trained SASRec as a directory: ``manifest.json`` (config, training record) + safetensors weights."""
    from safetensors.torch import save_file

    from gr_toolkit.artifacts import atomic_dir, write_manifest

    with atomic_dir(directory, overwrite=True) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        write_manifest(tmp, {"kind": "sasrec", "version": 1, "n_items": model.n_items, "config": asdict(model.cfg),
                             "catalog_fingerprint": catalog_fingerprint,
                             "best_epoch": getattr(model, "best_epoch", 0), "best_valid": getattr(model, "best_valid", None),
                             "train_seconds": getattr(model, "train_seconds", None), "history": getattr(model, "history", []),
                             **(extra or {})})
    return Path(directory)


def load_sasrec(directory: str | Path, catalog_fingerprint: str | None = None, device: str | None = None) -> SASRec:
    """Load a model saved by :func:`save_sasrec`; a catalog mismatch is an error (ids would be wrong)."""
    from safetensors.torch import load_file

    from gr_toolkit.artifacts import ArtifactError, read_manifest
    from gr_toolkit.config import from_dict

    directory = Path(directory)
    man = read_manifest(directory)
    if man.get("kind") != "sasrec":
        raise ArtifactError(f"{directory}: not a SASRec model (kind {man.get('kind')!r})")
    if catalog_fingerprint and man.get("catalog_fingerprint") and man["catalog_fingerprint"] != catalog_fingerprint:
        raise ArtifactError(f"{directory}: trained on catalog {man['catalog_fingerprint']}, not {catalog_fingerprint}")
    cfg = from_dict(SASRecConfig, man["config"], where=str(directory / "manifest.json"))
    model = SASRec(int(man["n_items"]), cfg)
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    model.to(_resolve_device(device))
    model.eval()
    model.history, model.best_epoch = man.get("history", []), man.get("best_epoch", 0)  # type: ignore[attr-defined]
    model.best_valid, model.train_seconds = man.get("best_valid"), man.get("train_seconds")  # type: ignore[attr-defined]
    model.manifest = man  # type: ignore[attr-defined]
    return model
