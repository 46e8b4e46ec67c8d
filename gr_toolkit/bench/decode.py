"""``gr-toolkit bench decode``: constrained beam-search throughput on a balanced k-ary tree.

For each catalog size N it builds a balanced k-ary tree identifier set (every tree node its own token,
the leaf token IS the item, as in SEATER; items are placed by a random permutation, no k-means: only
speed is measured), a randomly initialised ``SeaterModel`` (paper config by default: 1 layer, d=64,
2 heads, FFN 256), and measures queries/second of :func:`beam_search` (warm-up, several repeats,
median). In the same run it measures a REFERENCE: the naive decode that computes full-vocabulary
logits every step, log-softmaxes them and masks disallowed tokens with a boolean ``[beams, vocab]``
mask (what a plain implementation without a candidate-only scorer does). The reference runs on a
smaller batch (its logits are ``beams x vocab`` floats) and is reported per query.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from gr_toolkit.bench.common import commit_label
from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.decoding.trie import TrieConstraint
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch


def balanced_tree_codes(n_items: int, branch: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Codes ``[n, depth]`` of a balanced ``branch``-ary tree over ``n_items`` (group sizes differ by at
    most one at every level, like SEATER's equal-size splits). Leaf token ``i`` is item ``i``; internal
    nodes get tokens ``n_items ...``. Returns ``(codes, vocab_size)``. Vectorised over items."""
    depth = max(1, int(np.ceil(np.log(n_items) / np.log(branch) - 1e-9)))
    perm = np.random.default_rng(seed).permutation(n_items)  # item at each leaf position
    pos = np.arange(n_items, dtype=np.int64)
    lo = np.zeros(n_items, dtype=np.int64)
    size = np.full(n_items, n_items, dtype=np.int64)
    codes = np.empty((n_items, depth), dtype=np.int64)
    next_token = n_items
    for level in range(depth - 1):
        q = pos - lo
        child = ((q + 1) * branch - 1) // size  # the part of [lo, lo + size) that holds pos
        new_lo = lo + (size * child) // branch
        size = lo + (size * (child + 1)) // branch - new_lo
        lo = new_lo
        _, node = np.unique(lo, return_inverse=True)  # node of this level = its range start
        codes[:, level] = next_token + node
        next_token += int(node.max()) + 1
    if (size > branch).any():
        raise AssertionError("balanced split left a group larger than the branch factor")
    codes[:, depth - 1] = perm  # leaf token = item
    out = np.empty_like(codes)
    out[perm] = codes  # row = item
    return out, next_token


@torch.inference_mode()
def full_vocab_reference(
    model: GenerativeRetriever, trie: TrieConstraint, batch: SourceBatch, beam_size: int, bos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive constrained decode: full-vocab logits + log-softmax + boolean mask + topk over ``beam*V``
    each step. Same search as ``beam_search(normalize="full")`` for equal-length codes; returns
    ``(items [B, beam], scores [B, beam])``."""
    device = batch.tokens.device
    b, k = len(batch), beam_size
    n = b * k
    rows = torch.arange(b, device=device).repeat_interleave(k)
    memory = model.expand_memory(model.encode(batch), rows)
    mask = batch.mask.index_select(0, rows)
    states = trie.start(n, device)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0
    last = torch.full((n,), bos_id, dtype=torch.long, device=device)
    cache = None
    base = (torch.arange(b, device=device) * k).unsqueeze(1)
    for _ in range(trie.max_steps):
        logits, cache = model.step(memory, mask, last, cache, None)
        vocab = logits.shape[1]
        logp = torch.log_softmax(logits.float(), dim=1)
        cand, valid = trie.candidates(states)
        allowed = torch.zeros((n, vocab + 1), dtype=torch.bool, device=device)
        allowed.scatter_(1, torch.where(valid, cand, vocab), True)  # empty slots -> spare column
        total = (scores.view(n, 1) + logp.masked_fill(~allowed[:, :vocab], float("-inf"))).view(b, k * vocab)
        scores, flat = total.topk(k, dim=1)
        src = (base + flat // vocab).view(-1)
        token = (flat % vocab).view(-1)
        cache = model.reorder_cache(cache, src)
        states = states.index_select(0, src)
        ok = torch.isfinite(scores).view(-1)  # fewer allowed tokens than beams: -inf fillers stay put
        states[ok] = trie.advance(states[ok], token[ok])
        last = torch.where(ok, token, last.index_select(0, src))
    return trie.items_of(states).view(b, k), scores


def _timed(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _timed_cpu(fn: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per repeat. On a shared machine the CPU time of a 1-thread run is
    the contention-free cost (wall time includes time other processes held the core)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _breakdown(model: GenerativeRetriever, fn: Any) -> dict[str, float]:
    """Share of process-CPU time spent in the model's hooks vs the decoder's own tensor ops."""
    spent = dict.fromkeys(("encode", "broadcast_memory", "step", "reorder_cache"), 0.0)
    originals = {name: getattr(model, name) for name in spent}

    def wrap(name: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] += time.process_time() - c0

        return timed

    for name in spent:
        setattr(model, name, wrap(name))
    try:
        c0 = time.process_time()
        fn()
        total = time.process_time() - c0
    finally:
        for name in spent:
            delattr(model, name)  # back to the class methods
    shares = {f"model_{k}": round(v / total, 3) for k, v in spent.items()}
    shares["decoder_overhead"] = round(1 - sum(spent.values()) / total, 3)
    return shares


# What this benchmark measures: a commit label is "-dirty" when these have uncommitted changes.
_MEASURED_CODE = ("gr_toolkit/decoding", "gr_toolkit/bench/decode.py", "gr_toolkit/models")


def run_one(
    n_items: int,
    *,
    beam: int,
    batch: int,
    queries: int,
    layers: int,
    dim: int,
    heads: int,
    ffn: int,
    branch: int,
    source_len: int,
    repeats: int,
    reference_batch: int,
    reference_repeats: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, Any]:
    from gr_toolkit.models.seater import SeaterConfig, SeaterModel

    t0 = time.perf_counter()
    codes, vocab = balanced_tree_codes(n_items, branch, seed)
    trie = TrieConstraint.from_codes(codes).to(device)
    build_s = time.perf_counter() - t0
    cfg = SeaterConfig(layers=layers, d_model=dim, heads=heads, ffn=ffn, dropout=0.0, max_history=source_len)
    torch.manual_seed(seed)
    model = SeaterModel(cfg, decoder_vocab_size=vocab + 2, n_items=n_items, source_kind="history", leaf_is_item=True)
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, n_items, (queries, source_len), generator=gen)
    lens = torch.randint(1, source_len + 1, (queries,), generator=gen)
    mask = torch.arange(source_len).unsqueeze(0) < lens.unsqueeze(1)
    src = SourceBatch(tokens.masked_fill(~mask, 0), mask, "history").to(device)
    chunks = [SourceBatch(src.tokens[i : i + batch], src.mask[i : i + batch], "history") for i in range(0, queries, batch)]

    def ours() -> None:
        with torch.inference_mode():
            for c in chunks:
                out = beam_search(model, trie, c, beam_size=beam, bos_id=vocab)
            if device.type == "cuda":
                torch.cuda.synchronize()
            assert bool(out.alive.all())

    ours()  # warm-up
    times, cpu_times = _timed_cpu(ours, repeats)
    qps = queries / statistics.median(times)
    breakdown = _breakdown(model, ours)

    # Ablation in the same run: the beams' encoder memory copied per beam (``expand_memory``, the
    # generic GenerativeRetriever behaviour) instead of read through grouped cross-attention.
    import types

    model.broadcast_memory = types.MethodType(GenerativeRetriever.broadcast_memory, model)
    try:
        ours()
        copy_times, copy_cpu = _timed_cpu(ours, repeats)
    finally:
        del model.broadcast_memory

    ref_src = SourceBatch(src.tokens[:reference_batch], src.mask[:reference_batch], "history")

    def reference() -> None:
        full_vocab_reference(model, trie, ref_src, beam, vocab)
        if device.type == "cuda":
            torch.cuda.synchronize()

    reference()
    ref_times, ref_cpu = _timed_cpu(reference, reference_repeats)
    ref_qps = reference_batch / statistics.median(ref_times)
    # Same search, same scores: our beam search with full-vocab normalisation vs the naive reference.
    with torch.inference_mode():
        ref_items, ref_scores = full_vocab_reference(model, trie, ref_src, beam, vocab)
        full = beam_search(model, trie, ref_src, beam_size=beam, bos_id=vocab, normalize="full")
        # Same batch size as the reference for an apples-to-apples per-query time.
        small, small_cpu = _timed_cpu(
            lambda: beam_search(model, trie, ref_src, beam_size=beam, bos_id=vocab), reference_repeats
        )
    agree = bool(torch.equal(trie.items_of(full.states).view(ref_items.shape), ref_items)) and bool(
        torch.allclose(full.scores, ref_scores, atol=1e-4)
    )
    small_qps = reference_batch / statistics.median(small)
    return {
        "n_items": n_items,
        "branch": branch,
        "depth": int(codes.shape[1]),
        "identifier_vocab": int(vocab),
        "trie_nodes": trie.n_nodes,
        "trie_dense": trie.dense,
        "trie_build_seconds": round(build_s, 3),
        "beam": beam,
        "batch": batch,
        "queries": queries,
        "seconds_per_repeat": [round(t, 4) for t in times],
        "queries_per_second": round(qps, 1),
        "cpu_seconds_per_repeat": [round(t, 4) for t in cpu_times],
        "queries_per_cpu_second": round(queries / statistics.median(cpu_times), 1),
        "cpu_time_breakdown": breakdown,
        "copied_memory": {
            "what": "same search, encoder memory copied per beam instead of broadcast (grouped cross-attention)",
            "queries_per_second": round(queries / statistics.median(copy_times), 1),
            "queries_per_cpu_second": round(queries / statistics.median(copy_cpu), 1),
            "broadcast_speedup_cpu_time": round(statistics.median(copy_cpu) / statistics.median(cpu_times), 2),
        },
        "reference": {
            "what": "full-vocab logits + log_softmax + boolean mask + topk over beam*vocab per step",
            "batch": reference_batch,
            "seconds_per_repeat": [round(t, 4) for t in ref_times],
            "queries_per_second": round(ref_qps, 2),
            "cpu_seconds_per_repeat": [round(t, 4) for t in ref_cpu],
            "queries_per_cpu_second": round(reference_batch / statistics.median(ref_cpu), 2),
            "ours_same_batch_queries_per_second": round(small_qps, 1),
            "ours_same_batch_queries_per_cpu_second": round(reference_batch / statistics.median(small_cpu), 1),
            "same_results_as_beam_search_full_normalization": agree,
        },
        "speedup_vs_reference": round(qps / ref_qps, 1),
        "speedup_vs_reference_same_batch": round(small_qps / ref_qps, 1),
        "speedup_vs_reference_cpu_time": round(
            (queries / statistics.median(cpu_times)) / (reference_batch / statistics.median(ref_cpu)), 1
        ),
    }


def command(
    items: str = typer.Option("12000,300000", help="comma-separated catalog sizes"),
    beam: int = typer.Option(50, help="beam size"),
    batch: int = typer.Option(256, help="queries per beam-search call"),
    queries: int = typer.Option(1024, help="queries per timed repeat"),
    layers: int = typer.Option(1, help="encoder and decoder layers"),
    dim: int = typer.Option(64, help="model width"),
    heads: int = typer.Option(2),
    ffn: int = typer.Option(256),
    branch: int = typer.Option(16, help="tree branch factor k"),
    source_len: int = typer.Option(20, help="history length per query"),
    repeats: int = typer.Option(5),
    reference_batch: int = typer.Option(4, help="queries per call for the full-vocab reference"),
    reference_repeats: int = typer.Option(3),
    threads: int = typer.Option(0, help="torch threads (0 = leave torch's default)"),
    device: str = typer.Option("cpu"),
    out: Path = typer.Option(Path("eval/bench/decode_cpu.json"), help="result JSON"),
) -> None:
    """Constrained beam-search queries/second vs a full-vocabulary masking reference."""
    from gr_toolkit.evaluation.results import current_command, device_name

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    results = []
    for n in [int(x) for x in items.split(",") if x.strip()]:
        r = run_one(
            n, beam=beam, batch=batch, queries=queries, layers=layers, dim=dim, heads=heads, ffn=ffn,
            branch=branch, source_len=source_len, repeats=repeats, reference_batch=reference_batch,
            reference_repeats=reference_repeats, device=dev,
        )  # fmt: skip
        typer.echo(
            f"N={n}: {r['queries_per_second']} q/s wall, {r['queries_per_cpu_second']} q/CPU-s (beam {beam}, "
            f"batch {batch}); full-vocab reference {r['reference']['queries_per_second']} q/s wall, "
            f"{r['reference']['queries_per_cpu_second']} q/CPU-s -> x{r['speedup_vs_reference_cpu_time']} (CPU time); "
            f"memory copied per beam {r['copied_memory']['queries_per_cpu_second']} q/CPU-s "
            f"(broadcast x{r['copied_memory']['broadcast_speedup_cpu_time']})"
        )
        results.append(r)
    record = {
        "benchmark": "decode",
        "model": {"class": "SeaterModel", "layers": layers, "d_model": dim, "heads": heads, "ffn": ffn},
        "source_len": source_len,
        "results": results,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "device": device_name(dev),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "commit": commit_label(_MEASURED_CODE),
        "command": current_command(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    typer.echo(f"wrote {out}")
