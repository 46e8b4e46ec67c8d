"""Prompts for causal LMs: how a query or an item history becomes the tokens before the identifier.

Two layouts, one interface (:class:`PromptLayout`):

- **From-scratch LM** (ids in, ids out): the LM vocabulary is ``[pad, <query>, <history>]`` + the source
  featurizer's vocabulary (sentencepiece pieces or item ids, shifted by ``source_offset``) + the index's
  decoder vocabulary. A prompt is ``<kind marker> source tokens``; the identifier then starts with BOS.
- **Local pretrained LM** (text in): :class:`TextPromptFeaturizer` renders :data:`QUERY_TEMPLATE` /
  :data:`HISTORY_TEMPLATE` with the model's own tokenizer, so a ``SourceBatch`` already holds LM ids and
  the layout is the identity (no marker, offset 0).

``PromptLayout.build`` turns a right-padded ``SourceBatch`` into LEFT-padded prompt ids (so all rows end at
the same column and generated tokens line up), with position ids counted over real tokens only.
:func:`id_tokenizer` makes a ``transformers`` tokenizer whose tokens are the LM ids themselves
(``<t17>``), which lets trl's text-based trainers consume exact id sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gr_toolkit.models.base import SourceBatch

PAD_ID = 0
QUERY_MARKER = 1
HISTORY_MARKER = 2
N_PROMPT_SPECIAL = 3

QUERY_TEMPLATE = "Search query: {query}\nProduct identifier:"
HISTORY_TEMPLATE = "Items the user bought, oldest first: {history}\nNext item identifier:"


@dataclass
class PromptLayout:
    """Where source tokens and prompt markers live in the LM vocabulary."""

    source_offset: int = N_PROMPT_SPECIAL
    pad_id: int = PAD_ID
    use_markers: bool = True

    def prefix(self, kind: str) -> list[int]:
        if not self.use_markers:
            return []
        return [QUERY_MARKER if kind == "query" else HISTORY_MARKER]

    def build(self, batch: SourceBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids [B, P], mask [B, P], position_ids [B, P])``, left-padded; every row has >= 1 real token."""
        tokens, mask = batch.tokens, batch.mask.bool()
        b = tokens.shape[0]
        pre = torch.tensor(self.prefix(batch.kind), dtype=torch.long, device=tokens.device)
        ids = torch.cat([pre.expand(b, -1), tokens.clamp_min(0) + self.source_offset], dim=1)
        real = torch.cat([torch.ones(b, len(pre), dtype=torch.bool, device=tokens.device), mask], dim=1)
        if len(pre) == 0:  # no marker: an empty source still needs one attendable slot
            real[:, 0] |= ~real.any(1)
        # Stable sort on the mask moves padding to the left and keeps the order of real tokens.
        order = torch.sort(real.to(torch.int8), dim=1, stable=True).indices
        ids = ids.gather(1, order).masked_fill(~real.gather(1, order), self.pad_id)
        real = real.gather(1, order)
        pos = (real.long().cumsum(1) - 1).clamp_min(0)
        return ids, real, pos


def render_query(query: str, template: str = QUERY_TEMPLATE) -> str:
    return template.format(query=query)


def render_history(item_texts: Sequence[str], template: str = HISTORY_TEMPLATE, sep: str = "; ") -> str:
    return template.format(history=sep.join(item_texts))


class TextPromptFeaturizer:
    """Source featurizer for a LOCAL pretrained causal LM: text templates encoded by the model's tokenizer.

    ``batch(examples, idx)`` gives a ``SourceBatch`` whose tokens are LM ids (right-padded, mask = real);
    use it with ``HFCausalRetriever`` built with ``prompt_layout=PromptLayout(0, pad, use_markers=False)``.
    Histories are rendered with the items' text (``item_text[i]``).
    """

    def __init__(self, tokenizer, kind: str = "query", max_length: int = 128, item_text: Sequence[str] | None = None,
                 query_template: str = QUERY_TEMPLATE, history_template: str = HISTORY_TEMPLATE) -> None:
        if kind == "history" and item_text is None:
            raise ValueError("a history prompt needs item_text (one string per catalog item)")
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_length = int(max_length)
        self.item_text = list(item_text) if item_text is not None else None
        self.query_template = query_template
        self.history_template = history_template

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def texts(self, examples, idx: np.ndarray | Sequence[int]) -> list[str]:
        if self.kind == "query":
            return [render_query(examples.queries[i], self.query_template) for i in idx]
        return [render_history([self.item_text[j] for j in examples.histories[i]], self.history_template) for i in idx]

    def batch(self, examples, idx: np.ndarray | Sequence[int] | None = None) -> SourceBatch:
        idx = np.arange(len(examples)) if idx is None else np.asarray(idx)
        # keep the END of long prompts: the template's tail ("...identifier:") must survive truncation
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"  # the SourceBatch layout; PromptLayout re-pads on the left
        enc = self.tokenizer(self.texts(examples, idx), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", add_special_tokens=False)
        return SourceBatch(enc["input_ids"], enc["attention_mask"].bool(), self.kind)


def id_tokenizer(vocab_size: int, pad_id: int = PAD_ID, eos_id: int | None = None):
    """A fast tokenizer whose token ``i`` is the string ``<t{i}>``: ``ids_to_text`` / tokenize are exact inverses.

    trl's ``DPOTrainer`` tokenizes text columns; feeding it ``ids_to_text(ids)`` through this tokenizer gives
    back exactly ``ids``, whatever the model's real tokenizer (or none, for a from-scratch LM).
    """
    from tokenizers import Regex, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<t{i}>": i for i in range(int(vocab_size))}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=f"<t{pad_id}>"))
    tok.pre_tokenizer = Split(Regex(r"<t\d+>"), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=f"<t{pad_id}>", unk_token=f"<t{pad_id}>")
    if eos_id is not None:
        fast.eos_token = f"<t{eos_id}>"
    return fast


def ids_to_text(ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
    return "".join(f"<t{int(i)}>" for i in ids)
