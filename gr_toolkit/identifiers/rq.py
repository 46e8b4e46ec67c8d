"""``rq``: residual-quantisation semantic IDs (TIGER) with sand-glass diagnostics and pruning.

Build: item vectors (L2-normalised by default) -> ``levels`` codebooks of ``codebook`` entries by
RQ-KMeans (level-wise seeded faiss k-means on residuals; ``rq_kmeans``) or RQ-VAE (``rq_vae``) ->
level-aligned codes ``[n, L]`` -> optional pruning (``pruning``) -> token sequences (``rq_tokens``):

- Vocabulary (default, TIGER-style): one codebook per level, level ``l`` entry ``c`` = token
  ``offset_l + c``; ``token_parent`` is -1 everywhere and ``token_level`` names the level. Codes are
  still prefixes of one another exactly like tree paths, so a ranking loss over shared-prefix lengths
  works unchanged.
- ``tokens_are_prefixes=True``: every distinct code prefix becomes its own token (as in SEATER), so
  ``token_parent`` is a real tree for the SEATER alignment loss, and ``token_level`` is the depth.
  The vocabulary grows to the number of distinct prefixes (at most n per level).
- Items whose (kept) codes collide get an extra disambiguation token ``0..g-1``. Unpruned and
  drop-level codes append it to every item when any collision exists (fixed length); adaptive pruning
  appends it only to colliding items (variable length, EOS-terminated).
- Pruned tokens stay in the vocabulary (unused; the trie never allows them), so token ids are the
  same across the pruning variants of one set of codes.
- A level's codebook is capped at the number of distinct residual vectors (small catalogs; noted in
  the index meta). Pick ``codebook`` per catalog; ``codebook_for(n, levels)`` = round(n^(1/L)) is the
  size at which ``C^L`` equals the catalog size.

Everything the report needs (level-aligned codes, keep mask, centroids, diagnostics, prune decision)
is saved in the index (``extras`` / ``meta``), so ``report(index, out_dir)`` works on a loaded index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.config import ConfigError, from_dict, to_dict
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, IdentifierScheme
from gr_toolkit.identifiers.codes import CodeIndex
from gr_toolkit.identifiers.pruning import PRUNE_MODES, PruneDecision, plan_pruning, pruned_level_codes
from gr_toolkit.identifiers.rq_kmeans import RQResult, residual_kmeans
from gr_toolkit.identifiers.rq_tokens import assemble
from gr_toolkit.identifiers.sandglass import DiagnosticsTable, diagnose, is_sandglass, verdict, write_report


@dataclass
class RQConfig:
    levels: int = 3
    codebook: int = 256
    #: Per-level sizes (overrides ``codebook``), e.g. [256, 256, 256].
    codebook_sizes: list[int] | None = None
    method: str = "kmeans"  # "kmeans" | "vae"
    seed: int = 0
    n_iter: int = 20  # k-means iterations per level (also for the RQ-VAE codebook init)
    normalize: bool = True  # L2-normalise vectors first (text embeddings are compared by cosine)
    max_points_per_centroid: int = 256  # faiss k-means subsamples beyond C * this many points
    prune: str = "none"  # "none" | "drop-level" | "adaptive"
    drop_level: int | None = None  # level to drop / prune; None = most concentrated middle level
    adaptive_top_k: int | None = None  # None = the documented rule in gr_toolkit.identifiers.pruning
    adaptive_target_gini: float | None = None  # None = the larger neighbour Gini
    adaptive_max_k: int | None = None  # None = a quarter of the middle codebook
    tokens_are_prefixes: bool = False
    # RQ-VAE
    vae_hidden: int = 256
    vae_latent: int = 64
    vae_epochs: int = 20
    vae_batch_size: int = 256
    vae_lr: float = 1e-3
    vae_beta: float = 0.25
    vae_reset_dead: bool = True  # move unused codebook entries onto random residuals after each epoch
    device: str = "auto"

    def sizes(self) -> list[int]:
        return list(self.codebook_sizes) if self.codebook_sizes else [self.codebook] * self.levels

    def validate(self) -> None:
        if self.levels < 1:
            raise ConfigError(f"rq: levels must be >= 1, got {self.levels}")
        sizes = self.sizes()
        if len(sizes) != self.levels:
            raise ConfigError(f"rq: codebook_sizes has {len(sizes)} entries for levels={self.levels}")
        if min(sizes) < 2:
            raise ConfigError(f"rq: every codebook needs >= 2 entries, got {sizes}")
        if self.method not in ("kmeans", "vae"):
            raise ConfigError(f"rq: method must be 'kmeans' or 'vae', got {self.method!r}")
        if self.prune not in PRUNE_MODES:
            raise ConfigError(f"rq: prune must be one of {', '.join(PRUNE_MODES)}, got {self.prune!r}")
        if self.prune != "none" and self.levels < 2:
            raise ConfigError("rq: pruning needs at least 2 levels")
        if self.drop_level is not None and not 0 <= self.drop_level < self.levels:
            raise ConfigError(f"rq: drop_level {self.drop_level} is outside 0..{self.levels - 1}")
        if self.prune != "none" and self.drop_level is None and self.levels < 3:
            raise ConfigError("rq: with fewer than 3 levels there is no middle level; set drop_level")
        if self.n_iter < 1:
            raise ConfigError(f"rq: n_iter must be >= 1, got {self.n_iter}")


def codebook_for(n_items: int, levels: int) -> int:
    """round(n^(1/L)), at least 2: the codebook size whose L levels can address n items exactly once."""
    return max(2, int(round(n_items ** (1.0 / levels))))


def check_vectors(vectors: np.ndarray | None, n_items: int) -> np.ndarray:
    if vectors is None:
        raise ConfigError("rq needs item vectors: pass --vectors FILE.npy (e.g. from `gr-toolkit embed`)")
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] != n_items:
        raise ConfigError(f"rq: vectors must be [n_items={n_items}, dim]; got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ConfigError(f"rq: vectors must be numeric, got dtype {x.dtype}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ConfigError(f"rq: vectors contain NaN/inf in {len(rows)} row(s), first item {int(rows[0])}")
    return x.astype(np.float32)


def quantize(x: np.ndarray, cfg: RQConfig) -> RQResult:
    if cfg.normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    if cfg.method == "kmeans":
        return residual_kmeans(x, cfg.sizes(), seed=cfg.seed, n_iter=cfg.n_iter,
                               max_points_per_centroid=cfg.max_points_per_centroid)
    from gr_toolkit.identifiers.rq_vae import train_rq_vae

    return train_rq_vae(
        x, cfg.sizes(), seed=cfg.seed, hidden=cfg.vae_hidden, latent=cfg.vae_latent, epochs=cfg.vae_epochs,
        batch_size=cfg.vae_batch_size, lr=cfg.vae_lr, beta=cfg.vae_beta, n_iter=cfg.n_iter, device=cfg.device,
        reset_dead=cfg.vae_reset_dead,
    )


def build_code_index(
    level_codes: np.ndarray,
    codebook_sizes: list[int],
    catalog_fingerprint: str,
    cfg: RQConfig,
    rq_meta: dict[str, Any] | None = None,
    extras: dict[str, np.ndarray] | None = None,
) -> CodeIndex:
    """Prune (per ``cfg``), assign tokens and wrap as a ``CodeIndex`` carrying the diagnostics."""
    before = diagnose(level_codes, codebook_sizes)
    keep, decision = plan_pruning(
        level_codes, codebook_sizes, cfg.prune, level=cfg.drop_level, top_k=cfg.adaptive_top_k,
        target_gini=cfg.adaptive_target_gini, max_k=cfg.adaptive_max_k, table=before,
    )
    layout = assemble(
        level_codes, codebook_sizes, keep,
        disambiguate="colliding" if cfg.prune == "adaptive" else "all",
        tokens_are_prefixes=cfg.tokens_are_prefixes,
    )
    after = diagnose(*pruned_level_codes(level_codes, keep, codebook_sizes, decision)) if cfg.prune != "none" else None
    meta = {
        **(rq_meta or {}),
        "codebook_sizes": [int(c) for c in codebook_sizes],
        "level_offsets": layout.level_offsets,
        "n_disambig": layout.n_disambig,
        "n_disambiguated_items": layout.n_disambiguated_items,
        "prune": decision.to_dict(),
        "diagnostics_before": before.to_dict(),
        "diagnostics_after": after.to_dict() if after is not None else None,
        "sandglass": verdict(before),
    }
    return CodeIndex(
        scheme="rq",
        codes=layout.codes,
        lengths=layout.lengths,
        vocab_size=layout.vocab_size,
        token_parent=layout.token_parent,
        token_level=layout.token_level,
        catalog_fingerprint=catalog_fingerprint,
        config=to_dict(cfg),
        extras={"rq_codes": level_codes, "rq_keep": keep.astype(np.int8), **(extras or {})},
        meta_extra=meta,
    )


@SCHEMES.register("rq")
class ResidualQuantizationScheme(IdentifierScheme):
    """RQ semantic IDs; ``report(index, out_dir)`` writes the sand-glass diagnostics and plot."""

    name = "rq"
    config_class = RQConfig

    def build(self, catalog: Catalog, vectors: np.ndarray | None) -> CodeIndex:
        cfg: RQConfig = self.config
        cfg.validate()
        x = check_vectors(vectors, len(catalog))
        rq = quantize(x, cfg)
        extras = {f"codebook_{i}": c.astype(np.float32) for i, c in enumerate(rq.codebooks)} if cfg.method == "kmeans" else {}
        rq_meta = {
            "method": cfg.method,
            "requested_codebook_sizes": cfg.sizes(),
            "recon_mse": rq.recon_mse,
            "notes": rq.notes,
            "train_history": rq.history,
            "suggested_codebook": codebook_for(len(catalog), cfg.levels),
        }
        return build_code_index(rq.codes, rq.codebook_sizes, catalog.fingerprint(), cfg, rq_meta, extras)

    def report(self, index: CodeIndex, out_dir: str | Path, extra: dict[str, Any] | None = None,
               name: str = "rq_diagnostics") -> dict[str, Path]:
        """Write ``<name>.json``/``.md`` and ``<name>.png`` (rank-frequency per level, before/after pruning)."""
        return write_index_report(index, out_dir, extra=extra, name=name)


def index_tables(index: CodeIndex) -> tuple[DiagnosticsTable, DiagnosticsTable | None, PruneDecision]:
    """(before, after-or-None, decision) of a built RQ index, recomputed from its saved codes."""
    if "rq_codes" not in index.extras:
        raise ConfigError(f"index of scheme {index.scheme!r} carries no RQ codes (extras 'rq_codes'); not an rq index")
    codes = index.extras["rq_codes"]
    keep = index.extras["rq_keep"].astype(bool)
    sizes = index.meta_extra["codebook_sizes"]
    decision = PruneDecision(**index.meta_extra["prune"])
    before = diagnose(codes, sizes)
    after = diagnose(*pruned_level_codes(codes, keep, sizes, decision)) if decision.mode != "none" else None
    return before, after, decision


def write_index_report(
    index: CodeIndex, out_dir: str | Path, extra: dict[str, Any] | None = None, name: str = "rq_diagnostics"
) -> dict[str, Path]:
    from gr_toolkit.identifiers.plots import plot_rank_frequency

    before, after, decision = index_tables(index)
    tables = {"before pruning": before} if after is None else {"before pruning": before, f"after {decision.mode}": after}
    info = {
        **(extra or {}),
        "n_items": index.n_items,
        "vocab_size": index.vocab_size,
        "codebook_sizes": str(index.meta_extra["codebook_sizes"]),
        "identifier_lengths": f"min {int(index.lengths.min())}, mean {float(index.lengths.mean()):.3f}, max {int(index.lengths.max())}",
        "disambiguation_tokens": index.meta_extra["n_disambig"],
        "prune": decision.rule,
        "is_sandglass_before": is_sandglass(before),
        "notes": "; ".join(index.meta_extra.get("notes", [])) or None,
    }
    jpath, mpath = write_report(out_dir, tables, extra={**info, "prune_decision": decision.to_dict()}, name=name)
    png = plot_rank_frequency(
        {k: _level_counts_of(index, k == "before pruning", decision) for k in tables},
        Path(out_dir) / f"{name}.png",
        title=f"{index.meta_extra.get('method', 'rq')} codes, {index.n_items} items: token frequency per level",
    )
    return {"json": jpath, "markdown": mpath, "png": png}


def _level_counts_of(index: CodeIndex, before: bool, decision: PruneDecision) -> list[np.ndarray]:
    from gr_toolkit.identifiers.sandglass import level_counts

    codes = index.extras["rq_codes"]
    sizes = index.meta_extra["codebook_sizes"]
    if not before:
        codes, sizes = pruned_level_codes(codes, index.extras["rq_keep"].astype(bool), sizes, decision)
    return [level_counts(codes, lvl, c) for lvl, c in enumerate(sizes)]


def reprune(index: CodeIndex, **overrides: Any) -> CodeIndex:
    """The same RQ codes with other pruning / vocabulary options (no re-quantisation), e.g.
    ``reprune(index, prune="adaptive", adaptive_top_k=8)``. Only pruning/token options may change."""
    allowed = {"prune", "drop_level", "adaptive_top_k", "adaptive_target_gini", "adaptive_max_k", "tokens_are_prefixes"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise ConfigError(f"reprune can change only {', '.join(sorted(allowed))}; got {', '.join(bad)} (rebuild instead)")
    if "rq_codes" not in index.extras:
        raise ConfigError(f"index of scheme {index.scheme!r} carries no RQ codes; not an rq index")
    cfg = from_dict(RQConfig, {**index.config, **overrides}, where="reprune")
    cfg.validate()
    extras = {k: v for k, v in index.extras.items() if k not in ("rq_codes", "rq_keep")}
    keys = ("method", "requested_codebook_sizes", "recon_mse", "notes", "train_history", "suggested_codebook")
    rq_meta = {k: index.meta_extra[k] for k in keys if k in index.meta_extra}
    return build_code_index(
        index.extras["rq_codes"], list(index.meta_extra["codebook_sizes"]), index.catalog_fingerprint, cfg, rq_meta, extras
    )
