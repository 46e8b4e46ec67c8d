"""``TrainConfig``: the trainer's options (YAML ``train:`` section or ``--key value`` on the command line).

Defaults follow the SEATER paper (section 5.1.3): Adam with lr 1e-3, L2 weight decay, early stopping
on validation, beam 50; loss weights lambda in [0.01, 0.09], margin beta in {1e-2, 1e-3, 1e-4}, N = 4.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    #: Loss plug-ins to sum (``gen``, ``align``, ``rank``), comma-separated.
    losses: str = "gen,align,rank"
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    #: L2 regularisation (Adam ``weight_decay``), the paper searches 1e-4 .. 1e-7.
    weight_decay: float = 1e-6
    #: Max global gradient norm (0 disables clipping).
    grad_clip: float = 1.0
    #: Stop after this many evaluations without a better validation metric (0 = never stop early).
    patience: int = 5
    #: On a plateau (``patience`` evaluations without improvement) reload the best weights, multiply the
    #: learning rate by ``lr_decay`` and go on, at most ``lr_decays`` times, before stopping early.
    #: 0 decays = plain early stopping. Raising ``lr_decays`` on a finished run continues it.
    lr_decay: float = 0.3
    lr_decays: int = 0
    #: Exponential moving average of the weights (e.g. 0.999): the average is what is validated, selected
    #: and saved; 0 = off (the raw weights).
    ema_decay: float = 0.0
    #: Validation metric for model selection, e.g. ``recall@10`` or ``ndcg@10``.
    select_metric: str = "recall@10"
    eval_every: int = 1
    eval_beam: int = 50
    eval_batch_size: int = 256
    #: Evaluate on a fixed random subset of the validation split (None = all of it).
    eval_max_examples: int | None = None
    #: Draw each epoch's training pairs in proportion to example weights (traffic) instead of once each.
    weighted: bool = False
    #: Cap on optimiser steps per epoch (None = a full pass); for quick runs.
    max_steps_per_epoch: int | None = None
    seed: int = 0
    #: Indexing examples mixed into training (``gr_toolkit.data.indexing``): ``""`` = none, else a comma
    #: list of ``title`` (item text -> item) and ``spans`` (random word spans of it -> item).
    indexing: str = ""
    #: Indexing pairs drawn per epoch, per training pair (1.0 = as many as there are training pairs; drawn
    #: without replacement while the pool lasts).
    indexing_ratio: float = 1.0
    indexing_spans: int = 2
    indexing_field: str = "title"
    #: Parameters NOT trained: comma-separated name prefixes of ``model.named_parameters()`` (e.g.
    #: ``token_emb,skip_proj`` keeps the identifier geometry the item vectors gave; "" = train all).
    freeze: str = ""
    #: Item vectors ``.npy`` ``[n_items, d_model]`` to start identifier-token embeddings from (each token
    #: = the mean vector of the items under it; see ``gr_toolkit.models.vector_init``). None = random.
    init_token_vectors: str | None = None
    #: ``auto`` = cuda when available, else cpu; or an explicit torch device string.
    device: str = "auto"
    #: torch CPU threads (None = torch default).
    threads: int | None = None
    progress: bool = True
    # -- loss options (paper eq. 6-9) -------------------------------------------------------------
    gen_full_softmax: bool = False
    align_weight: float = 0.05
    align_tau: float = 0.1
    align_exclude_family: bool = True
    align_root: str = "bos"
    rank_weight: float = 0.05
    rank_negatives: int = 4
    rank_beta: float = 0.001
    rank_prefixes: str = "deepest"
    #: Rows of each batch the ranking loss uses (None = all; fewer = cheaper on CPU).
    rank_max_examples: int | None = None

    def loss_names(self) -> list[str]:
        return [n.strip() for n in self.losses.split(",") if n.strip()]

    def loss_options(self) -> dict[str, dict]:
        """Keyword options per loss plug-in, for ``gr_toolkit.losses.build_losses``."""
        opts = {
            "gen": {"full_softmax": self.gen_full_softmax},
            "align": {"weight": self.align_weight, "tau": self.align_tau, "exclude_family": self.align_exclude_family,
                      "root": self.align_root},
            "rank": {"weight": self.rank_weight, "n_negatives": self.rank_negatives, "beta": self.rank_beta,
                     "prefixes": self.rank_prefixes, "max_examples": self.rank_max_examples},
        }
        return {name: opts[name] for name in self.loss_names() if name in opts}
