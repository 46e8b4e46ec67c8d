"""``gr-toolkit bench hf-decode``: constrained decoding of Hugging Face models, three routes, one model.

For a TIGER-style identifier set (``levels`` x ``codebook`` per-level tokens, distinct random codes for
``items`` items; only speed and validity are measured, so no k-means) and a randomly initialised HF
model (T5 at the TIGER size, and a small Qwen2-style causal LM), it times beam search at ``beam`` beams:

1. ``unified``: the toolkit's :func:`gr_toolkit.decoding.beam_search.beam_search` over the model's
   ``GenerativeRetriever`` wrapper (per-step softmax over the allowed tokens);
2. ``generate+processor``: ``model.generate(num_beams=beam, logits_processor=[ConstraintLogitsProcessor])``;
3. ``generate+prefix_fn`` (the reference): ``model.generate(prefix_allowed_tokens_fn=...)`` with a Python
   dict trie (prefix tuple -> allowed ids), transformers' own route, which calls back per beam.

Routes 2 and 3 use ``renormalize_logits=True`` (log-softmax after the constraint mask), so all three
rank beams by the same scores.

It also times the constraint's own work per decode, model excluded (``constraint_only``): the unified
search's trie ops, our ``ConstraintLogitsProcessor`` and transformers' ``PrefixConstrainedLogitsProcessor``
on identical inputs. End to end, a from-scratch model's forward passes dominate on CPU, so the
end-to-end ratios are far smaller than the constraint-only ones.

Every returned sequence of every route must be a complete identifier of an item (checked, counted);
top-1 agreement between routes is reported (same scores up to float noise). Speed ratios are against
route 3.
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
from gr_toolkit.identifiers.codes import CodeIndex
from gr_toolkit.models.base import SourceBatch


def tiger_codes(n_items: int, levels: int, codebook: int, seed: int = 0) -> np.ndarray:
    """Distinct random codes ``[n, levels]``; level ``l`` uses tokens ``l * codebook .. (l+1) * codebook - 1``."""
    space = codebook**levels
    if n_items > space:
        raise ValueError(f"{n_items} items do not fit {levels} levels x {codebook} codes ({space} identifiers)")
    flat = np.random.default_rng(seed).choice(space, n_items, replace=False)
    digits = (flat[:, None] // codebook ** np.arange(levels - 1, -1, -1)[None, :]) % codebook
    return digits + (np.arange(levels) * codebook)[None, :]


def tiger_index(n_items: int, levels: int, codebook: int, seed: int = 0) -> CodeIndex:
    codes = tiger_codes(n_items, levels, codebook, seed)
    vocab = levels * codebook
    return CodeIndex("rq-bench", codes, np.full(n_items, levels), vocab, np.full(vocab, -1),
                     np.repeat(np.arange(levels), codebook), catalog_fingerprint="bench")


class PrefixTrie:
    """The usual ``prefix_allowed_tokens_fn`` helper: a dict from generated prefix (tuple) to allowed ids."""

    def __init__(self, codes: np.ndarray, lengths: np.ndarray, token_map: np.ndarray, eos: int, prefix_length: int):
        self.next: dict[tuple[int, ...], list[int]] = {}
        self.eos = [int(eos)]
        self.prefix_length = int(prefix_length)
        children: dict[tuple[int, ...], set[int]] = {}
        for code, n in zip(codes.tolist(), lengths.tolist(), strict=True):
            hf = [int(token_map[t]) for t in code[:n]]
            for j in range(n):
                children.setdefault(tuple(hf[:j]), set()).add(hf[j])
        self.next = {k: sorted(v) for k, v in children.items()}

    def __call__(self, batch_id: int, input_ids: torch.Tensor) -> list[int]:
        return self.next.get(tuple(input_ids[self.prefix_length:].tolist()), self.eos)


def _valid(seqs: np.ndarray, index: CodeIndex) -> tuple[int, int]:
    """(valid, total) over returned sequences ``[B, R, T]`` (decoder tokens, -1/EOS after the end)."""
    known = {tuple(c[:n]) for c, n in zip(index.codes.tolist(), index.lengths.tolist(), strict=True)}
    flat = seqs.reshape(-1, seqs.shape[-1])
    ok = sum(tuple(t for t in row if 0 <= t < index.vocab_size) in known for row in flat.tolist())
    return ok, len(flat)


def _median_time(fn: Any, repeats: int, device: torch.device | None = None) -> float:
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()  # CUDA runs asynchronously: time the finished work
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def bench_model(model: Any, index: CodeIndex, batches: list[SourceBatch], beam: int, repeats: int,
                prefix_trie_for: Any, device: torch.device | None = None) -> dict[str, Any]:
    from gr_toolkit.decoding.beam_search import beam_search

    device = device or torch.device("cpu")
    constraint = index.constraint(device)
    steps = constraint.max_steps
    n_queries = sum(len(b) for b in batches)
    out: dict[str, Any] = {}
    top1: dict[str, list[np.ndarray]] = {}

    def unified() -> None:
        top1["unified"], seqs = [], []
        for b in batches:
            res = beam_search(model, constraint, b, beam)
            seqs.append(res.tokens.cpu().numpy())
            top1["unified"].append(seqs[-1][:, 0])
        out["unified_seqs"] = seqs

    def processor() -> None:
        top1["processor"], seqs = [], []
        for b in batches:
            s, _ = model.generate_constrained(b, beam, steps, logits_processor=[model.constraint_processor(constraint, b)])
            seqs.append(s.cpu().numpy())
            top1["processor"].append(seqs[-1][:, 0])
        out["processor_seqs"] = seqs

    def prefix_fn() -> None:
        top1["prefix_fn"], seqs = [], []
        for b in batches:
            s, _ = model.generate_constrained(b, beam, steps, prefix_allowed_tokens_fn=prefix_trie_for(b))
            seqs.append(s.cpu().numpy())
            top1["prefix_fn"].append(seqs[-1][:, 0])
        out["prefix_seqs"] = seqs

    routes = {"unified": unified, "generate+processor": processor, "generate+prefix_fn": prefix_fn}
    result: dict[str, Any] = {"routes": {}}
    for name, fn in routes.items():
        sec = _median_time(fn, repeats, device)
        key = {"unified": "unified_seqs", "generate+processor": "processor_seqs", "generate+prefix_fn": "prefix_seqs"}[name]
        valid = [_valid(s, index) for s in out[key]]
        result["routes"][name] = {
            "seconds_per_query": round(sec / n_queries, 6),
            "queries_per_second": round(n_queries / sec, 2),
            "valid_sequences": int(sum(v for v, _ in valid)),
            "returned_sequences": int(sum(t for _, t in valid)),
        }
    ref = result["routes"]["generate+prefix_fn"]["seconds_per_query"]
    for name in ("unified", "generate+processor"):
        result["routes"][name]["speedup_vs_prefix_fn"] = round(ref / result["routes"][name]["seconds_per_query"], 2)

    def first(name: str) -> np.ndarray:
        rows = np.concatenate([x[:, :steps] if x.shape[1] >= steps else
                               np.pad(x, ((0, 0), (0, steps - x.shape[1])), constant_values=-1) for x in top1[name]])
        return np.where((rows >= 0) & (rows < index.vocab_size), rows, -1)

    u, p, f = first("unified"), first("processor"), first("prefix_fn")
    result["top1_agreement"] = {
        "unified_vs_prefix_fn": float((u == f).all(1).mean()),
        "processor_vs_prefix_fn": float((p == f).all(1).mean()),
    }
    return result


def constraint_overhead(index: CodeIndex, beam: int, batch: int, repeats: int, seed: int = 0,
                        device: torch.device | None = None) -> dict[str, Any]:
    """The constraint's own cost per decoding step, model excluded, for ``batch * beam`` rows.

    Rows hold prefixes of real identifiers (as beams do); for each step ``t`` we time (a) the unified
    beam search's constraint work (``candidates`` + ``advance`` on trie states), (b) our
    ``ConstraintLogitsProcessor`` and (c) transformers' ``PrefixConstrainedLogitsProcessor`` with the
    dict-trie ``prefix_allowed_tokens_fn``, on identical ``input_ids`` / ``scores``.
    """
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    from gr_toolkit.decoding.logits_processor import ConstraintLogitsProcessor

    device = device or torch.device("cpu")
    constraint = index.constraint(device)
    n = batch * beam
    rng = np.random.default_rng(seed)
    items = rng.integers(0, index.n_items, n)
    codes = torch.from_numpy(index.codes[items]).to(device)
    bos = index.bos_id
    vocab = index.decoder_vocab_size
    ours = ConstraintLogitsProcessor(constraint, np.arange(index.vocab_size), eos_token_id=index.eos_id, prefix_length=1)
    trie = PrefixTrie(index.codes, index.lengths, np.arange(index.vocab_size), index.eos_id, 1)
    theirs = PrefixConstrainedLogitsProcessor(trie, beam)
    scores = torch.randn(n, vocab, device=device)
    steps = constraint.max_steps
    inputs = [torch.cat([torch.full((n, 1), bos, device=device), codes[:, :t]], dim=1) for t in range(steps)]

    def unified() -> None:
        states = constraint.start(n, device)
        for t in range(steps):
            constraint.candidates(states)
            states = constraint.advance(states, codes[:, t])

    def processor() -> None:
        for x in inputs:
            ours(x, scores)

    def prefix_fn() -> None:
        for x in inputs:
            theirs(x, scores)

    out = {name: _median_time(fn, repeats, device) for name, fn in
           {"unified (candidates+advance)": unified, "ConstraintLogitsProcessor": processor,
            "prefix_allowed_tokens_fn": prefix_fn}.items()}
    ref = out["prefix_allowed_tokens_fn"]
    return {
        "rows": n,
        "steps": steps,
        "seconds_per_decode": {k: round(v, 6) for k, v in out.items()},
        "speedup_vs_prefix_fn": {k: round(ref / v, 1) for k, v in out.items() if k != "prefix_allowed_tokens_fn"},
    }


def command(
    items: int = typer.Option(10000, help="catalog size"),
    levels: int = typer.Option(3, help="identifier levels (RQ depth)"),
    codebook: int = typer.Option(64, help="codes per level"),
    beam: int = typer.Option(50, help="beam size (all routes)"),
    queries: int = typer.Option(32, help="queries per timed repeat"),
    batch: int = typer.Option(16, help="queries per call"),
    overhead_batch: int = typer.Option(64, help="queries per call for the constraint-only timing"),
    source_len: int = typer.Option(16, help="query tokens"),
    source_vocab: int = typer.Option(1000),
    models: str = typer.Option("t5,causal", help="comma-separated: t5, causal"),
    repeats: int = typer.Option(3),
    threads: int = typer.Option(0, help="torch threads (0 = torch default)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | auto (models, inputs and constraints)"),
    out: Path = typer.Option(Path("eval/bench/hf_decode.json"), help="result JSON"),
) -> None:
    """HF constrained decoding: unified beam search and generate+LogitsProcessor vs prefix_allowed_tokens_fn."""
    from gr_toolkit.evaluation.results import current_command, device_name
    from gr_toolkit.models.hf_causal import CausalRetrieverConfig, HFCausalRetriever
    from gr_toolkit.models.hf_seq2seq import HFSeq2SeqRetriever, T5RetrieverConfig
    from gr_toolkit.retrieval.retriever import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {device}: CUDA is not available on this machine")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    index = tiger_index(items, levels, codebook, seed)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for s in range(0, queries, batch):
        n = min(batch, queries - s)
        lens = torch.randint(source_len // 2, source_len + 1, (n,), generator=gen)
        mask = torch.arange(source_len)[None, :] < lens[:, None]
        toks = torch.randint(4, source_vocab, (n, source_len), generator=gen).masked_fill(~mask, 0)
        batches.append(SourceBatch(toks, mask, "query").to(dev))
    overhead = constraint_overhead(index, beam, overhead_batch, max(repeats, 3), seed, dev)
    typer.echo(f"constraint only ({overhead['rows']} rows x {overhead['steps']} steps): {overhead['seconds_per_decode']} "
               f"-> x{overhead['speedup_vs_prefix_fn']}")
    results = {}
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        if name == "t5":
            cfg: Any = T5RetrieverConfig(dropout=0.0, seed=seed)
            model = HFSeq2SeqRetriever(cfg, index.decoder_vocab_size, source_vocab, "query",
                                       index.token_parent, index.token_level).eval().to(dev)

            def trie_for(b: SourceBatch, m=model) -> PrefixTrie:
                return PrefixTrie(index.codes, index.lengths, np.arange(index.vocab_size), m.eos_id, 1)
        elif name == "causal":
            cfg = CausalRetrieverConfig(seed=seed)
            model = HFCausalRetriever(cfg, index.decoder_vocab_size, source_vocab, "query",
                                      index.token_parent, index.token_level).eval().to(dev)
            tmap = model.token_map.cpu().numpy()
            eos = int(tmap[model.eos_id])
            tries: dict[int, PrefixTrie] = {}

            def trie_for(b: SourceBatch, m=model, tmap=tmap, eos=eos, tries=tries) -> PrefixTrie:
                width = int(m.prompt(b)[0].shape[1]) + 1
                if width not in tries:
                    tries[width] = PrefixTrie(index.codes, index.lengths, tmap, eos, width)
                return tries[width]
        else:
            raise typer.BadParameter(f"unknown model {name!r}; use t5 and/or causal")
        r = bench_model(model, index, batches, beam, repeats, trie_for, dev)
        r["model"] = {"name": name, **cfg.__dict__, "parameters": int(sum(p.numel() for p in model.parameters()))}
        results[name] = r
        line = ", ".join(f"{k} {v['queries_per_second']} q/s" + (f" (x{v['speedup_vs_prefix_fn']})" if "speedup_vs_prefix_fn" in v else "")
                         for k, v in r["routes"].items())
        typer.echo(f"{name}: {line}; top-1 agreement {r['top1_agreement']}")
    record = {
        "benchmark": "hf-decode",
        "index": {"items": items, "levels": levels, "codebook": codebook, "vocab_size": index.vocab_size},
        "beam": beam,
        "queries": queries,
        "batch": batch,
        "source_len": source_len,
        "constraint_only": overhead,
        "results": results,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": device_name(dev),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "commit": commit_label(),
        "command": current_command(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    typer.echo(f"wrote {out}")
