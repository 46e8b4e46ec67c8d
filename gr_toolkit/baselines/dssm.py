"""DSSM / two-tower retrieval for search: a query tower and an item tower scored by cosine / temperature.

- Query tower: hashed bag of words, word pairs and character trigrams (``baselines.hashing``) -> mean
  embedding -> residual MLP -> L2 normalise.
- Item tower: the same over the item's text, plus a per-item id embedding (the only signal for items
  without text, e.g. Best Buy SKUs) -> L2 normalise.
- ``init="minilm"``: both towers also read frozen all-MiniLM-L6-v2 sentence vectors through an adapter
  initialised to the identity while the hashed and id parts start at zero, so training starts from
  zero-shot MiniLM retrieval and fine-tunes from there (full fine-tuning of MiniLM is too slow on CPU).
- Loss: softmax over in-batch items (other queries' positives; a query's own other positives are
  masked) plus shared uniformly sampled catalog negatives (accidental hits masked); a catalog no
  larger than the negative sample (Best Buy: 413 SKUs) gets the exact softmax over every item.
- Epoch selection on the validation split; retrieval is exact top-K or faiss (``baselines.topk``).

For sequence datasets the two-tower baseline is SASRec (``gr_toolkit.vectors.cf``): its history tower
plays the query tower's role.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gr_toolkit.baselines.hashing import HashedBags, hash_texts
from gr_toolkit.baselines.topk import topk
from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples
from gr_toolkit.training.early_stopping import BestStateKeeper, epoch_line, validation_metrics


@dataclass
class DSSMConfig:
    dim: int = 128
    n_buckets: int = 1 << 18
    init: str = "scratch"  # "scratch" | "minilm"
    item_id_embedding: bool = True
    item_field: str = "text"
    temperature: float = 0.05
    num_negatives: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    dropout: float = 0.1
    batch_size: int = 512
    epochs: int = 30
    patience: int = 4
    # Sample training pairs in proportion to their example weight (traffic) instead of uniformly.
    weighted_sampling: bool = False
    select_metric: str = "recall@10"
    seed: int = 0
    device: str | None = None
    verbose: bool = True


class TextTower(nn.Module):
    """Hashed bag embedding (+ optional frozen dense text vector through an adapter) -> residual MLP."""

    def __init__(self, cfg: DSSMConfig, dense_dim: int = 0) -> None:
        super().__init__()
        # Sparse gradients: a step touches only the buckets in the batch (a dense Adam step over
        # 2^18 x dim rows per tower costs far more than the whole forward pass on CPU).
        self.bag = nn.EmbeddingBag(cfg.n_buckets, cfg.dim, mode="sum", sparse=True)
        nn.init.normal_(self.bag.weight, std=0.1)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, cfg.dim))
        self.dense_dim = dense_dim
        if dense_dim:
            # Output lives in the dense space; the hashed path is projected into it and starts at zero.
            self.adapter = nn.Linear(dense_dim, dense_dim)
            with torch.no_grad():
                self.adapter.weight.copy_(torch.eye(dense_dim))
                self.adapter.bias.zero_()
            self.bag_out = nn.Linear(cfg.dim, dense_dim)
            nn.init.zeros_(self.bag_out.weight)
            nn.init.zeros_(self.bag_out.bias)

    @property
    def out_dim(self) -> int:
        return self.dense_dim or self.mlp[-1].out_features

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bag(ids, offsets, per_sample_weights=weights)  # weighted sum = mean over all features
        h = h + self.mlp(h)
        if self.dense_dim:
            return self.adapter(dense) + self.bag_out(h)
        return h


class DSSM(nn.Module):
    def __init__(self, n_items: int, cfg: DSSMConfig, item_bags: HashedBags, item_dense: np.ndarray | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        dense_dim = 0 if item_dense is None else item_dense.shape[1]
        self.query_tower = TextTower(cfg, dense_dim)
        self.item_tower = TextTower(cfg, dense_dim)
        out = self.item_tower.out_dim
        self.item_id = nn.Embedding(n_items, out, sparse=True) if cfg.item_id_embedding else None
        if self.item_id is not None:
            # Zero start: an item never seen in training keeps a zero id vector and is scored by its
            # text alone (random id vectors would swamp the text of unseen items: query-split data).
            nn.init.zeros_(self.item_id.weight)
        self.item_bags = item_bags
        self.register_buffer("item_dense", None if item_dense is None else torch.from_numpy(np.asarray(item_dense, np.float32)))

    def _bags(self, bags: HashedBags, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(bags.ids).to(device), torch.from_numpy(bags.offsets[:-1]).to(device),
                torch.from_numpy(bags.weights).to(device))

    def encode_items(self, items: torch.Tensor) -> torch.Tensor:
        dev = items.device
        ids, offs, w = self._bags(self.item_bags.take(items.cpu().numpy()), dev)
        dense = None if self.item_dense is None else self.item_dense[items]
        h = self.item_tower(ids, offs, w, dense)
        if self.item_id is not None:
            h = h + self.item_id(items)
        return F.normalize(h, dim=-1)

    def encode_queries(self, bags: HashedBags, dense: torch.Tensor | None = None) -> torch.Tensor:
        dev = next(self.parameters()).device
        ids, offs, w = self._bags(bags, dev)
        return F.normalize(self.query_tower(ids, offs, w, dense), dim=-1)

    @torch.no_grad()
    def all_item_vectors(self, batch: int = 8192) -> torch.Tensor:
        dev = next(self.parameters()).device
        return torch.cat([self.encode_items(torch.arange(s, min(s + batch, self.n_items), device=dev)) for s in range(0, self.n_items, batch)])

    def item_vectors(self) -> np.ndarray:
        was = self.training
        self.eval()
        out = self.all_item_vectors().cpu().numpy().astype(np.float32)
        self.train(was)
        return out


class DSSMRetriever:
    """A trained DSSM with its text featurisation: ``rank(queries, k)`` -> (item ids, scores)."""

    def __init__(self, model: DSSM, query_encoder: Any = None) -> None:
        self.model = model
        self.cfg = model.cfg
        self.query_encoder = query_encoder  # SentenceTransformer for init="minilm"
        self._items: np.ndarray | None = None

    def query_vectors(self, queries: list[str], dense: np.ndarray | None = None, batch: int = 4096) -> np.ndarray:
        m = self.model
        was = m.training
        m.eval()
        dev = next(m.parameters()).device
        if m.item_dense is not None and dense is None:
            from gr_toolkit.vectors.text import encode_texts

            dense = encode_texts(queries, encoder=self.query_encoder)
        out = []
        with torch.no_grad():
            for s in range(0, len(queries), batch):
                bags = hash_texts(queries[s : s + batch], self.cfg.n_buckets)
                d = None if dense is None else torch.from_numpy(dense[s : s + batch]).to(dev)
                out.append(m.encode_queries(bags, d).cpu().numpy())
        m.train(was)
        return np.concatenate(out) if out else np.zeros((0, m.item_tower.out_dim), np.float32)

    def item_vectors(self) -> np.ndarray:
        if self._items is None:
            self._items = self.model.item_vectors()
        return self._items

    def rank(self, queries: list[str], k: int = 100, method: str = "exact", dense: np.ndarray | None = None, **kw) -> tuple[np.ndarray, np.ndarray]:
        return topk(self.query_vectors(queries, dense), self.item_vectors(), k, method=method, **kw)

    def item_cf_vectors(self) -> np.ndarray:
        return self.item_vectors()

    # Attributes the caller reports (set by train_dssm).
    best_epoch: int = 0
    best_valid: float = float("nan")
    train_seconds: float = 0.0
    history: list[dict[str, float]] | None = None


def _pair_masks(ex_idx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """In-batch mask: column j is not a negative for row i when it is another positive of i's example."""
    same_example = ex_idx[:, None] == ex_idx[None, :]
    return same_example & (items[:, None] != items[None, :])


def train_dssm(
    dataset: Dataset,
    config: DSSMConfig | None = None,
    log: Any = print,
    item_dense: np.ndarray | None = None,
    query_dense: dict[str, np.ndarray] | None = None,
) -> DSSMRetriever:
    """Train the two-tower model on ``dataset.train`` (query examples); select the epoch on ``valid``.

    ``item_dense`` / ``query_dense`` (split -> [n, 384]) pass precomputed MiniLM vectors for
    ``init="minilm"``; missing ones are computed here with the bundled model.
    """
    cfg = config or DSSMConfig()
    if dataset.kind != "query":
        raise DataError(f"{dataset.name}: DSSM needs query examples; for histories use SASRec (gr_toolkit.vectors.cf)")
    if cfg.init not in ("scratch", "minilm"):
        raise ValueError(f"unknown DSSM init {cfg.init!r}; use scratch or minilm")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device) if cfg.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    catalog: Catalog = dataset.catalog
    n = len(catalog)
    t0 = time.perf_counter()
    encoder = None
    query_dense = dict(query_dense or {})
    if cfg.init == "minilm":
        from gr_toolkit.vectors.text import encode_texts, item_text_vectors, load_sentence_encoder

        encoder = load_sentence_encoder(device=str(device))
        if item_dense is None:
            item_dense = item_text_vectors(catalog, cfg.item_field)
        for split in ("train", "valid"):
            if split not in query_dense:
                query_dense[split] = encode_texts(dataset.split(split).queries, encoder=encoder)
    else:
        item_dense = None
    item_bags = hash_texts(catalog.text(cfg.item_field), cfg.n_buckets)
    model = DSSM(n, cfg, item_bags, item_dense).to(device)
    retr = DSSMRetriever(model, encoder)

    train: Examples = dataset.train
    ex_of_pair, item_of_pair = train.pairs()
    if not len(item_of_pair):
        raise DataError(f"{dataset.name}: the training split has no (query, item) pairs")
    q_bags = hash_texts(train.queries, cfg.n_buckets)
    q_dense_train = None if item_dense is None else torch.from_numpy(query_dense["train"]).to(device)
    w = np.asarray(train.weights, np.float64)[ex_of_pair]
    p = w / w.sum() if cfg.weighted_sampling else None
    sparse = [p for name, p in model.named_parameters() if name.endswith(("bag.weight", "item_id.weight"))]
    dense = [p for name, p in model.named_parameters() if not name.endswith(("bag.weight", "item_id.weight"))]
    opts = [torch.optim.SparseAdam(sparse, lr=cfg.lr), torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    full_softmax = n <= max(cfg.num_negatives, cfg.batch_size)
    all_items = torch.arange(n, device=device)
    valid = dataset.valid
    keeper = BestStateKeeper(cfg.patience)
    history: list[dict[str, float]] = []
    tau = cfg.temperature
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.choice(len(item_of_pair), size=len(item_of_pair), p=p) if p is not None else rng.permutation(len(item_of_pair))
        total, steps = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            sel = order[s : s + cfg.batch_size]
            ex = torch.from_numpy(ex_of_pair[sel]).to(device)
            it = torch.from_numpy(item_of_pair[sel]).to(device)
            qd = None if q_dense_train is None else q_dense_train[ex]
            q = model.encode_queries(q_bags.take(ex_of_pair[sel]), qd)
            if full_softmax:
                # Small catalog: score every item (exact softmax), masking the row's other positives.
                logits = q @ model.encode_items(all_items).T / tau
                tg = [np.asarray(train.targets[e], np.int64) for e in ex_of_pair[sel]]
                r = torch.from_numpy(np.repeat(np.arange(len(sel)), [len(t) for t in tg])).to(device)
                c = torch.from_numpy(np.concatenate(tg)).to(device)
                other = c != it[r]
                logits[r[other], c[other]] = float("-inf")
                loss = F.cross_entropy(logits, it)
            else:
                pos = model.encode_items(it)
                logits = q @ pos.T / tau
                logits = logits.masked_fill(_pair_masks(ex, it), float("-inf"))
                if cfg.num_negatives:
                    negs = torch.from_numpy(rng.integers(0, n, cfg.num_negatives)).to(device)
                    nl = (q @ model.encode_items(negs).T / tau).masked_fill(negs[None] == it[:, None], float("-inf"))
                    logits = torch.cat([logits, nl], 1)
                loss = F.cross_entropy(logits, torch.arange(len(sel), device=device))
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            total += float(loss.detach())
            steps += 1
        rec: dict[str, float] = {"epoch": epoch, "loss": total / max(steps, 1), "seconds": time.perf_counter() - t0}
        if len(valid):
            ranked, _ = retr.rank(valid.queries, k=20, dense=query_dense.get("valid"))
            retr._items = None  # item vectors change every epoch
            rec.update(validation_metrics(ranked, valid.targets))
            keeper.update(model, rec[cfg.select_metric], epoch)
        history.append(rec)
        if cfg.verbose and log:
            log(epoch_line("dssm", rec, cfg.select_metric))
        if keeper.should_stop:
            break
    keeper.restore(model)
    model.eval()
    retr._items = None
    retr.best_epoch, retr.best_valid, retr.history = keeper.best_epoch, keeper.best, history
    retr.train_seconds = time.perf_counter() - t0
    return retr


def dssm_config_dict(cfg: DSSMConfig) -> dict[str, Any]:
    return asdict(cfg)
