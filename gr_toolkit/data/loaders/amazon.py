"""Amazon sequential-recommendation sets (user history -> next item), leave-one-out.

``beauty`` (Amazon 2014 5-core Beauty, the P5/TIGER split):
  ``user_sequence.txt`` = ``user item1 item2 ...`` (chronological ASINs). Catalog = every item of the
  sequences, in order of first appearance. Per user: last item = test target, second-last = valid
  target, and every earlier position t >= 1 is a training example (items[:t] -> items[t]), as
  SASRec/TIGER/P5 train. Item text: ``idgenrec_item_textual_id_phase0.txt`` (``ASIN word word ...``,
  a short generated surrogate label, not a real title); items without a label get an empty title
  (counted in notes); labels of items outside the sequences are ignored (counted in notes).

``games`` (Amazon 2018 Video Games, RecBole atomic files):
  ``Games-6k.item`` (``item_id, title``); ``Games-6k.test.inter`` / ``Games-6k.valid.inter``
  (``user_id, item_id_list, item_id``; valid = test with its last item removed). Test and valid are
  taken as given; training examples are every prefix of the VALID history (items[:t] -> items[t]),
  i.e. everything strictly before the validation target.

``scientific`` (Amazon 2018 Industrial & Scientific, UniSRec split):
  ``Scientific.text`` (``ASIN <tab> "title. category path. brand."``, used whole as the title),
  ``Scientific.item2index`` (ASIN -> internal index, the catalog order), and the given
  ``Scientific.{train,valid,test}.inter`` (train already holds one example per prefix).

Histories keep the last ``max_history`` (20) items. Bucketing: ``proxy:target-popularity``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gr_toolkit.data.loaders import DATASETS, dataset_dir
from gr_toolkit.data.loaders.common import check_unique, decode_text, read_atomic, split_sequences
from gr_toolkit.data.splits import leave_one_out
from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples

BUCKETING = "proxy:target-popularity"


def _history_examples(hists: list[np.ndarray], targets: np.ndarray, keys: list[str], max_history: int) -> Examples:
    return Examples(
        kind="history",
        targets=[targets[i: i + 1] for i in range(len(targets))],
        histories=[h[-max_history:] for h in hists],
        keys=keys,
    )


def _catalog_titles(ids: list[str], text_by_id: dict[str, str], notes: list[str], missing_note: str,
                    extra_note: str) -> list[str]:
    """The text of each catalog id (empty where it has none) from a text file keyed by id; notes how many
    ids have no text (``missing_note``) and how many texts have no catalog id (``extra_note``), each
    formatted with ``{n}``, when there are any."""
    titles = [text_by_id.get(a, "") for a in ids]
    n_missing = sum(1 for t in titles if not t)
    if n_missing:
        notes.append(missing_note.format(n=n_missing))
    extra = len(set(text_by_id) - set(ids))
    if extra:
        notes.append(extra_note.format(n=extra))
    return titles


# ---------------------------------------------------------------------------------------------- beauty
@DATASETS.register("beauty")
def load_beauty(data_dir=None, seed: int = 0, max_history: int = 20) -> Dataset:
    root = dataset_dir("beauty", data_dir)
    seq_path = root / "user_sequence.txt"
    lines = [ln.split() for ln in decode_text(seq_path, "utf-8").splitlines()]
    notes: list[str] = []
    blank = sum(1 for ln in lines if not ln)
    if blank:
        notes.append(f"{seq_path.name}: {blank} blank lines ignored")
    lines = [ln for ln in lines if ln]
    users = pd.Series([ln[0] for ln in lines])
    check_unique(users, seq_path, "user")
    lengths = np.array([len(ln) - 1 for ln in lines], dtype=np.int64)
    flat = np.array([a for ln in lines for a in ln[1:]], dtype=object)
    codes, uniques = pd.factorize(flat)  # order of first appearance
    ids = [str(u) for u in uniques]

    text_path = root / "idgenrec_item_textual_id_phase0.txt"
    labels: dict[str, str] = {}
    for row, ln in enumerate(decode_text(text_path, "utf-8").splitlines(), start=1):
        if not ln.strip():
            continue
        asin, _, words = ln.strip().partition(" ")
        if asin in labels and labels[asin] != words.strip():
            raise DataError(f"{text_path}: item {asin!r} (line {row}) has two different labels")
        labels[asin] = words.strip()
    titles = _catalog_titles(ids, labels, notes, "{n} items have no text label (empty title)",
                             "{n} labelled items never occur in a sequence (not in the catalog)")
    catalog = Catalog(name="beauty", ids=ids, fields={"title": titles})
    seqs = split_sequences(codes.astype(np.int64), lengths)
    train, valid, test = leave_one_out(seqs, users.tolist(), max_history=max_history, notes=notes)
    notes.append(f"leave-one-out; training examples = every prefix; history <= {max_history} items; "
                 "item text = generated surrogate labels")
    return Dataset("beauty", catalog, train, valid, test, protocol="leave-one-out", bucketing=BUCKETING, notes=notes)


# ---------------------------------------------------------------------------------------------- RecBole
def _read_inter(path: Path, ids: pd.Index) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(users, flat item ids, lengths, targets)``; histories are consecutive runs of ``flat``."""
    df = read_atomic(path, ("user_id", "item_id_list", "item_id"))
    col = df["item_id_list"].str.strip()
    joined = " ".join(col.tolist())
    flat = np.array(joined.split(), dtype=object)
    # Fast length count (RecBole writes single spaces); fall back to splitting when it disagrees.
    lengths = np.where(col.to_numpy(dtype=object) == "", 0, col.str.count(" ").to_numpy(dtype=np.int64) + 1)
    if lengths.sum() != len(flat):
        lengths = np.fromiter((len(x.split()) for x in col.tolist()), dtype=np.int64, count=len(col))
    rows = np.repeat(np.arange(len(df)) + 2, lengths)  # file line numbers (header is line 1)
    flat_ids = _lookup(flat, ids, path, "item_id_list entry", rows)
    targets = _lookup(df["item_id"].to_numpy(dtype=object), ids, path, "item_id", np.arange(len(df)) + 2)
    return df["user_id"].tolist(), flat_ids, lengths, targets


def _lookup(ext: np.ndarray, ids: pd.Index, path: Path, field: str, rows: np.ndarray) -> np.ndarray:
    pos = ids.get_indexer(ext)
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        raise DataError(f"{path}: {field} {ext[i]!r} (row {int(rows[i])}) is not in the catalog")
    return pos.astype(np.int64)


def _windows(flat: np.ndarray, lengths: np.ndarray, max_history: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every prefix example of every sequence: (history views, targets, sequence number)."""
    starts = np.cumsum(lengths) - lengths
    seq = np.repeat(np.arange(len(lengths)), np.maximum(lengths - 1, 0))
    # position t = 1 .. len-1 inside each sequence
    t = np.arange(len(seq)) - np.repeat(np.cumsum(np.maximum(lengths - 1, 0)) - np.maximum(lengths - 1, 0),
                                        np.maximum(lengths - 1, 0)) + 1
    end = starts[seq] + t
    begin = np.maximum(starts[seq], end - max_history)
    hists = [flat[a:b] for a, b in zip(begin.tolist(), end.tolist(), strict=True)]
    return hists, flat[end], seq


@DATASETS.register("games")
def load_games(data_dir=None, seed: int = 0, max_history: int = 20) -> Dataset:
    root = dataset_dir("games", data_dir)
    item_path = root / "Games-6k.item"
    items = read_atomic(item_path, ("item_id", "title"))
    check_unique(items["item_id"], item_path, "item_id")
    notes: list[str] = []
    titles = items["title"].str.strip()
    if (titles == "").any():
        notes.append(f"{int((titles == '').sum())} items have an empty title")
    catalog = Catalog(name="games", ids=items["item_id"].tolist(), fields={"title": titles.tolist()})
    ids = pd.Index(catalog.ids)
    te_users, te_flat, te_len, te_tgt = _read_inter(root / "Games-6k.test.inter", ids)
    va_users, va_flat, va_len, va_tgt = _read_inter(root / "Games-6k.valid.inter", ids)
    if te_users != va_users:
        raise DataError(f"{root}: Games-6k.valid.inter and Games-6k.test.inter must list the same users in the same order")
    # Valid must be test minus its last item (both files may cut long histories from the left);
    # otherwise training on valid histories could leak a test target.
    te_end = np.cumsum(te_len)
    va_end = np.cumsum(va_len)
    last_ok = (te_len > 0) & (te_flat[np.maximum(te_end - 1, 0)] == va_tgt)
    m = np.minimum(va_len, np.maximum(te_len - 1, 0))
    owner = np.repeat(np.arange(len(m)), m)
    off = np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m)
    same = va_flat[np.repeat(va_end - m, m) + off] == te_flat[np.repeat(te_end - 1 - m, m) + off]
    suffix_ok = np.bincount(owner[~same], minlength=len(m)) == 0
    mismatch = int((~(last_ok & suffix_ok)).sum())
    if mismatch:
        notes.append(f"{mismatch} users whose validation sequence is not their test history (check the files)")
    tr_h, tr_t, tr_seq = _windows(va_flat, va_len, max_history)
    users = np.asarray(va_users, dtype=object)
    train = Examples(kind="history", targets=list(tr_t.reshape(-1, 1)), histories=tr_h, keys=users[tr_seq].tolist())
    valid = _history_examples(split_sequences(va_flat, va_len), va_tgt, va_users, max_history)
    test = _history_examples(split_sequences(te_flat, te_len), te_tgt, te_users, max_history)
    notes.append(f"given valid/test; training examples = every prefix of the validation history; "
                 f"history <= {max_history} items")
    return Dataset("games", catalog, train, valid, test, protocol="leave-one-out", bucketing=BUCKETING, notes=notes)


@DATASETS.register("scientific")
def load_scientific(data_dir=None, seed: int = 0, max_history: int = 20) -> Dataset:
    root = dataset_dir("scientific", data_dir)
    i2i_path = root / "Scientific.item2index"
    i2i = pd.read_csv(i2i_path, sep="\t", header=None, names=["asin", "idx"], dtype=str, keep_default_na=False)
    check_unique(i2i["asin"], i2i_path, "ASIN")
    idx = pd.to_numeric(i2i["idx"], errors="coerce")
    if idx.isna().any() or sorted(idx.astype(int)) != list(range(len(i2i))):
        raise DataError(f"{i2i_path}: indices must be the integers 0..{len(i2i) - 1}, each once")
    ids = i2i.sort_values("idx", key=lambda s: s.astype(int))["asin"].tolist()
    text_path = root / "Scientific.text"
    text = read_atomic(text_path, ("item_id", "text"))
    check_unique(text["item_id"], text_path, "item_id")
    by_asin = dict(zip(text["item_id"], text["text"].str.strip(), strict=True))
    notes: list[str] = []
    titles = _catalog_titles(ids, by_asin, notes, "{n} items have no text (empty title)",
                             "{n} items in Scientific.text are not in item2index (ignored)")
    catalog = Catalog(name="scientific", ids=ids, fields={"title": titles})
    # The .inter files use the internal index as item token.
    index = pd.Index([str(i) for i in range(len(ids))])
    splits = {}
    for s in ("train", "valid", "test"):
        users, flat, lengths, tgt = _read_inter(root / f"Scientific.{s}.inter", index)
        splits[s] = _history_examples(split_sequences(flat, lengths), tgt, users, max_history)
    notes.append(f"given train/valid/test (train holds every prefix); history <= {max_history} items; "
                 "title = 'title. category path. brand.'")
    return Dataset("scientific", catalog, splits["train"], splits["valid"], splits["test"],
                   protocol="leave-one-out", bucketing=BUCKETING, notes=notes)
