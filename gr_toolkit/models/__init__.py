"""Generative retrieval models, registered in ``MODELS`` by name (``--model seater|t5|causal``).

Contract for a registered model class (what the trainer, the run directory and the CLI rely on):

- ``config_class``: a dataclass of its hyper-parameters (YAML / ``--key value`` overrides);
- ``build(index, featurizer, config) -> GenerativeRetriever``: a fresh model for that index and source
  featurizer (decoder vocabulary from ``index.decoder_vocab_size``; source kind from ``featurizer.kind``);
- weights persist with ``safetensors.torch.save_model`` / ``load_model`` on the built module, so
  ``build`` with the saved config must recreate exactly the same parameter names and shapes.
"""

import importlib

from gr_toolkit.models.base import MODELS, GenerativeRetriever, SourceBatch
from gr_toolkit.models.seater import SeaterConfig, SeaterModel

#: Modules that register further models; imported on first use (transformers takes seconds to import).
LAZY_MODELS = {"t5": "gr_toolkit.models.hf_seq2seq", "causal": "gr_toolkit.models.hf_causal"}


def model_class(name: str) -> type:
    """The registered model class ``name`` (importing its module when it is one of ``LAZY_MODELS``)."""
    if name not in MODELS and name in LAZY_MODELS:
        importlib.import_module(LAZY_MODELS[name])
    if name not in MODELS:
        known = sorted(set(MODELS.names()) | set(LAZY_MODELS))
        raise KeyError(f"unknown model {name!r}; known: {', '.join(known)}")
    return MODELS.get(name)


__all__ = ["MODELS", "LAZY_MODELS", "GenerativeRetriever", "SourceBatch", "SeaterConfig", "SeaterModel", "model_class"]
