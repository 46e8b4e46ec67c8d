"""SFT then DPO with Hugging Face backbones trained from scratch on CPU (small T5 and a tiny causal LM).

For each dataset: load the data and an index built by the index CLI (RQ semantic IDs), fit the source
featurizer, then per model:

1. SFT: T5 with the toolkit loop (``gen`` + optionally SEATER ``align``/``rank``), the causal LM with
   trl's ``SFTTrainer`` (prompt -> identifier completion, completion-only loss);
2. evaluate on (a fixed subset of) the test split with the unified constrained beam search;
3. DPO: preference pairs from graded judgments (Home Depot) and hard negatives mined from the SFT
   model's own beams; the toolkit's DPO objective for T5, trl's ``DPOTrainer`` for the causal LM
   (reference = frozen in-memory copy);
4. evaluate again;
5. control (``--no-sft-control`` skips it): the SFT model trained by plain SFT for as many more steps as
   DPO took, at DPO's learning rate and batch size, so a DPO gain is not just "more training".

Results by head/torso/tail bucket go to ``eval/results/<dataset>__hf-<model>-<stage>.json``
   and one markdown table ``eval/results/hf_sft_dpo__<datasets>.md``.

Usage (the indexes come from ``gr-toolkit index``; see the markdown for the exact commands used)::

    nice -n 10 python recipes/hf_sft_dpo.py --datasets bestbuy,homedepot \\
        --index bestbuy=indexes/hf_bestbuy_rq --index homedepot=indexes/hf_homedepot_rq
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from gr_toolkit.data.buckets import assign_buckets
from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.evaluation.metrics import evaluate_rankings
from gr_toolkit.evaluation.results import current_command, device_name, result_record, write_result
from gr_toolkit.identifiers.base import load_index
from gr_toolkit.models.hf_causal import CausalRetrieverConfig, HFCausalRetriever
from gr_toolkit.models.hf_seq2seq import HFSeq2SeqRetriever, T5RetrieverConfig
from gr_toolkit.retrieval.retriever import resolve_device, retrieve_items
from gr_toolkit.training.dpo import DPOTrainConfig, build_pairs, train_preferences
from gr_toolkit.training.hf_sft import HFSFTConfig, train_sft

KS = (1, 5, 10, 20)
METRICS = ["recall@10", "ndcg@10", "recall@20"]


def build_model(name: str, index, featurizer, seed: int):
    if name == "t5":
        cfg = T5RetrieverConfig(d_model=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_ff=512, dropout=0.1,
                                seed=seed)
        return HFSeq2SeqRetriever.build(index, featurizer, cfg)
    if name == "causal":
        cfg = CausalRetrieverConfig(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                                    seed=seed)
        return HFCausalRetriever.build(index, featurizer, cfg)
    raise SystemExit(f"unknown model {name!r}; use t5 and/or causal")


def evaluate(model, index, featurizer, examples, buckets, beam: int, batch_size: int, device: str = "cpu") -> dict:
    items, _ = retrieve_items(model, index, featurizer, examples, top_k=max(KS), beam_size=beam, batch_size=batch_size,
                              device=device)
    return evaluate_rankings(items, examples.targets, KS, buckets=buckets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="bestbuy,homedepot")
    ap.add_argument("--index", action="append", default=[], help="DATASET=INDEX_DIR (built by gr-toolkit index)")
    ap.add_argument("--models", default="t5,causal")
    ap.add_argument("--sft-steps", type=int, default=600)
    ap.add_argument("--sft-lr", type=float, default=2e-3)
    ap.add_argument("--t5-losses", default="gen", help="T5 loss plug-ins (gen,align,rank)")
    ap.add_argument("--dpo-steps", type=int, default=150)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--dpo-beta", type=float, default=0.1)
    ap.add_argument("--dpo-sft-weight", type=float, default=0.0)
    ap.add_argument("--mine-examples", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--eval-max", type=int, default=1000, help="test examples evaluated (fixed random subset)")
    ap.add_argument("--text-vocab", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (training and decoding)")
    ap.add_argument("--out", default="eval/results")
    ap.add_argument("--no-sft-control", dest="sft_control", action="store_false",
                    help="skip the control: SFT continued for the DPO steps")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    index_dirs = dict(x.split("=", 1) for x in args.index)
    command = current_command()
    records = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name not in index_dirs:
            raise SystemExit(f"no --index {name}=DIR given")
        ds = load_dataset(name, seed=args.seed)
        index = load_index(index_dirs[name], catalog=ds.catalog)
        fz = SourceFeaturizer(FeaturizerConfig(vocab_size=args.text_vocab, seed=args.seed)).fit(ds)
        test = ds.test
        if args.eval_max and len(test) > args.eval_max:
            test = test.subset(np.sort(np.random.default_rng(args.seed).choice(len(test), args.eval_max, replace=False)))
        buckets = assign_buckets(ds, test)
        print(f"{name}: {len(ds.train):,} train / {len(test):,} test examples evaluated; index {index.scheme} "
              f"({index.n_items:,} items, vocab {index.vocab_size}, length {index.max_length}); bucketing {ds.bucketing}",
              flush=True)
        for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
            torch.manual_seed(args.seed)
            model = build_model(model_name, index, fz, args.seed)
            losses = args.t5_losses if model_name == "t5" else "gen"
            sft_cfg = HFSFTConfig(losses=losses, max_steps=args.sft_steps, batch_size=args.batch_size, lr=args.sft_lr,
                                  seed=args.seed, device=device, log_every=100, progress=True)
            sft = train_sft(model, index, fz, ds.train, sft_cfg, out_dir=f"runs/hf_sft_dpo/{name}_{model_name}_sft")
            t0 = time.time()
            m_sft = evaluate(model, index, fz, test, buckets, args.beam, 128, device)
            eval_s = time.time() - t0
            print(f"  {model_name} SFT ({sft['steps']} steps, {sft['train_seconds']:.0f} s): "
                  f"recall@10 {m_sft['all']['recall@10']:.4f} (eval {eval_s:.0f} s)", flush=True)
            control = copy.deepcopy(model) if args.sft_control else None  # the SFT weights, before DPO
            dpo_cfg = DPOTrainConfig(beta=args.dpo_beta, max_steps=args.dpo_steps, batch_size=args.batch_size,
                                     lr=args.dpo_lr, sft_weight=args.dpo_sft_weight, seed=args.seed, device=device,
                                     pairs="graded,mined", mine_beam=args.beam, mine_max_examples=args.mine_examples,
                                     progress=True, log_every=50)
            t0 = time.time()
            pairs = build_pairs(model, index, fz, ds.train, dpo_cfg)
            pair_s = time.time() - t0
            dpo = train_preferences(model, index, fz, ds.train, pairs, dpo_cfg,
                                    out_dir=f"runs/hf_sft_dpo/{name}_{model_name}_dpo")
            m_dpo = evaluate(model, index, fz, test, buckets, args.beam, 128, device)
            print(f"  {model_name} DPO ({len(pairs):,} pairs: {pairs.source}, {dpo['n_pairs']:,} used, {dpo['steps']} steps, "
                  f"{dpo['train_seconds']:.0f} s): recall@10 {m_dpo['all']['recall@10']:.4f}", flush=True)
            if control is not None:
                # Same extra steps, batch and lr as DPO, only the objective differs; another seed so the
                # batches are not a replay of SFT's first ones.
                ctl_cfg = dataclasses.replace(sft_cfg, max_steps=dpo["steps"], lr=args.dpo_lr, seed=args.seed + 1)
                ctl = train_sft(control, index, fz, ds.train, ctl_cfg,
                                out_dir=f"runs/hf_sft_dpo/{name}_{model_name}_sft_control")
                m_ctl = evaluate(control, index, fz, test, buckets, args.beam, 128, device)
                print(f"  {model_name} SFT control (+{ctl['steps']} SFT steps at lr {args.dpo_lr}): "
                      f"recall@10 {m_ctl['all']['recall@10']:.4f}", flush=True)
            common = dict(dataset=name, protocol=ds.protocol, split="test", seed=args.seed, bucketing=ds.bucketing,
                          n_examples=len(test), device=device_name(device), command=command,
                          index={"dir": index_dirs[name], "scheme": index.scheme, "n_items": index.n_items,
                                 "vocab_size": index.vocab_size, "max_length": index.max_length},
                          model=model_name, model_config=dict(model.config.__dict__),
                          n_parameters=int(sum(p.numel() for p in model.parameters())), beam=args.beam,
                          torch_threads=torch.get_num_threads())
            rec_sft = result_record(method=f"hf-{model_name}-sft", metrics=m_sft, train_seconds=sft["train_seconds"],
                                    stage="sft", sft={"steps": sft["steps"], "losses": losses, "lr": args.sft_lr,
                                                      "batch_size": args.batch_size,
                                                      "engine": "trl.SFTTrainer" if model_name == "causal" else "toolkit loop"},
                                    **common)
            rec_dpo = result_record(method=f"hf-{model_name}-dpo", metrics=m_dpo,
                                    train_seconds=sft["train_seconds"] + pair_s + dpo["train_seconds"], stage="dpo",
                                    dpo={"steps": dpo["steps"], "pairs": len(pairs), "pairs_used": dpo["n_pairs"],
                                         "pair_sources": pairs.source,
                                         "beta": args.dpo_beta, "lr": args.dpo_lr,
                                         "sft_weight": args.dpo_sft_weight, "mine_beam": args.beam,
                                         "mine_examples": args.mine_examples, "pair_seconds": round(pair_s, 1),
                                         "dpo_seconds": round(dpo["train_seconds"], 1),
                                         "engine": "trl.DPOTrainer" if model_name == "causal" else "toolkit DPO",
                                         "first_loss": dpo["history"][0]["loss"] if dpo["history"] else None,
                                         "last_loss": dpo["history"][-1]["loss"] if dpo["history"] else None},
                                    **common)
            stage_recs = [rec_sft, rec_dpo]
            if control is not None:
                stage_recs.insert(1, result_record(
                    method=f"hf-{model_name}-sft-control", metrics=m_ctl,
                    train_seconds=sft["train_seconds"] + ctl["train_seconds"], stage="sft+control",
                    sft={"steps": sft["steps"] + ctl["steps"], "losses": losses, "lr": args.sft_lr,
                         "control_steps": ctl["steps"], "control_lr": args.dpo_lr, "batch_size": args.batch_size,
                         "engine": "trl.SFTTrainer" if model_name == "causal" else "toolkit loop"},
                    **common))
            for rec in stage_recs:
                write_result(rec, args.out)
                records.append(rec)
    tag = "_".join(dict.fromkeys(r["dataset"] for r in records))
    write_markdown(records, Path(args.out) / f"hf_sft_dpo__{tag}.md", command)


def write_markdown(records: list[dict], path: Path, command: str) -> None:
    lines = ["# SFT then DPO with Hugging Face backbones (from scratch, CPU)", "",
             "Produced by `recipes/hf_sft_dpo.py`; exact command:", "", f"```\n{command}\n```", ""]
    for ds in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == ds]
        r0 = rows[0]
        lines += [f"## {ds} ({r0['protocol']}, test subset n={r0['n_examples']}, bucketing: {r0['bucketing']})", "",
                  f"Index: `{r0['index']['dir']}` ({r0['index']['scheme']}, {r0['index']['n_items']} items, "
                  f"vocab {r0['index']['vocab_size']}, identifier length {r0['index']['max_length']}); beam {r0['beam']}.",
                  ""]
        head = ["method", "stage"] + [f"{m} ({b})" for m in METRICS for b in ("all", "head", "torso", "tail")] + ["train s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["method"], r["stage"]]
            for m in METRICS:
                for b in ("all", "head", "torso", "tail"):
                    v = r["metrics"].get(b, {}).get(m)
                    cells.append("–" if v is None else f"{v:.4f}")
            cells.append(f"{r['train_seconds']:.0f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for r in rows:
            if r["stage"] == "dpo":
                d = r["dpo"]
                lines.append(f"- {r['method']}: {d['pairs']} pairs ({d['pair_sources']}; {d.get('pairs_used', d['pairs'])} drawn for training), {d['steps']} steps with "
                             f"{d['engine']}, beta {d['beta']}, lr {d['lr']}, loss {d['first_loss']:.4f} -> {d['last_loss']:.4f}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    (path.with_suffix(".json")).write_text(json.dumps([{k: r[k] for k in ("dataset", "method", "metrics")} for r in records],
                                                      indent=1) + "\n")


if __name__ == "__main__":
    main()
