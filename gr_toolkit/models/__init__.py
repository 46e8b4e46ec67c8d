"""Generative retrieval models, registered in ``MODELS`` by name (``--model seater|t5|causal``).

Contract for a registered model class (what the trainer, the run directory and the CLI rely on):

- ``config_class``: a dataclass of its hyper-parameters (YAML / ``--key value`` overrides);
- ``build(index, featurizer, config) -> GenerativeRetriever``: a fresh model for that index and source
  featurizer (decoder vocabulary from ``index.decoder_vocab_size``; source kind from ``featurizer.kind``);
- weights persist with ``safetensors.torch.save_model`` / ``load_model`` on the built module, so
  ``build`` with the saved config must recreate exactly the same parameter names and shapes.
"""

from gr_toolkit.models.base import MODELS, GenerativeRetriever, SourceBatch
from gr_toolkit.models.seater import SeaterConfig, SeaterModel

__all__ = ["MODELS", "GenerativeRetriever", "SourceBatch", "SeaterConfig", "SeaterModel"]
