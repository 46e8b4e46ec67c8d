"""A user's own data as two JSON-lines files: ``jsonl:DIR``.

``DIR/items.jsonl`` -- one item per line::

    {"id": "sku-1", "title": "Red running shoes", "description": "...", "attributes": {"category": "shoes"}}

``id`` (string or integer, unique) and ``title`` (string; empty allowed, counted in notes) are
required; every other key with a string value is a text field (items without it get ""); the
optional ``attributes`` object holds non-text attributes (values stored as strings).

``DIR/examples.jsonl`` -- one example per line, all lines of the same form:

- query:    ``{"query": "red shoes", "targets": ["sku-1"], "weight": 12, "split": "train",
  "grades": [3.0], "negatives": ["sku-9"]}`` -- ``weight`` (traffic, default 1), ``split``,
  ``grades`` (one number per target) and ``negatives`` are optional. Without ``split`` on every line
  the examples get a seeded 80/10/10 query-level split (by lower-cased query); with it, every line
  must have one of train/valid/test.
- history:  ``{"history": ["sku-3", "sku-1"], "targets": ["sku-2"], "split": "test"}`` -- ``split``
  required.
- sequence: ``{"user": "u1", "sequence": ["sku-3", "sku-1", "sku-2"]}`` -- one chronological
  sequence per user, split leave-one-out (``max_history``, default 20).

``"target": "sku-1"`` may replace a one-element ``targets``. Item references use the external ids of
items.jsonl; an unknown id, a malformed line, a missing field, an unknown key (a typo such as
``"wieght"`` would otherwise be ignored), a repeated target, or a weight/grade that is not a finite
number raises a ``DataError`` with the file, line and value. Bucketing: ``traffic`` when any query example has a weight, else
``proxy:query-length`` (queries) or ``proxy:target-popularity`` (histories).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gr_toolkit.data.loaders import DATASETS
from gr_toolkit.data.loaders.common import decode_text, normalize_query
from gr_toolkit.data.splits import SPLITS, leave_one_out, query_level_split
from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples


def _lines(path: Path):
    for no, line in enumerate(decode_text(path, "utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {no} is not valid JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {no} must be a JSON object, got {type(rec).__name__}")
        yield no, rec


def _read_items(path: Path, notes: list[str]) -> Catalog:
    ids: list[str] = []
    fields: dict[str, dict[int, str]] = {}
    attrs: dict[str, dict[int, str]] = {}
    for no, rec in _lines(path):
        if "id" not in rec:
            raise DataError(f"{path}: line {no}: missing field 'id'")
        if not isinstance(rec["id"], str | int) or isinstance(rec["id"], bool):
            raise DataError(f"{path}: line {no}: field 'id' must be a string or integer, got {rec['id']!r}")
        if "title" not in rec:
            raise DataError(f"{path}: line {no}: missing field 'title'")
        i = len(ids)
        ids.append(str(rec["id"]))
        for k, v in rec.items():
            if k == "id":
                continue
            if k == "attributes":
                if not isinstance(v, dict):
                    raise DataError(f"{path}: line {no}: field 'attributes' must be an object, got {v!r}")
                for ak, av in v.items():
                    attrs.setdefault(ak, {})[i] = str(av)
            elif isinstance(v, str):
                fields.setdefault(k, {})[i] = v.strip()
            elif v is None:
                fields.setdefault(k, {})[i] = ""
            else:
                raise DataError(f"{path}: line {no}: text field {k!r} must be a string, got {v!r} "
                                "(put non-text values under 'attributes')")
    if not ids:
        raise DataError(f"{path}: no items")
    seen: dict[str, int] = {}
    for i, e in enumerate(ids):
        if e in seen:
            raise DataError(f"{path}: duplicate id {e!r} (items {seen[e] + 1} and {i + 1})")
        seen[e] = i
    n = len(ids)
    full_fields = {k: [d.get(i, "") for i in range(n)] for k, d in fields.items()}
    full_attrs = {k: [d.get(i, "") for i in range(n)] for k, d in attrs.items()}
    n_empty = sum(1 for t in full_fields["title"] if not t)
    if n_empty:
        notes.append(f"{n_empty} items have an empty title (kept with empty text)")
    return Catalog(name=path.parent.name, ids=ids, fields=full_fields, attributes=full_attrs)


def _ids(value, path: Path, no: int, field: str, catalog: Catalog, allow_empty: bool = False) -> np.ndarray:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise DataError(f"{path}: line {no}: field {field!r} must be a {'' if allow_empty else 'non-empty '}list of item ids, got {value!r}")
    out = np.empty(len(value), dtype=np.int64)
    for j, v in enumerate(value):
        key = str(v) if isinstance(v, str | int) and not isinstance(v, bool) else None
        if key is None or not catalog.has(key):
            raise DataError(f"{path}: line {no}: {field} entry {v!r} is not an item id of items.jsonl")
        out[j] = catalog.index_of(key)
    return out


#: The keys each example form may carry (anything else is refused, so a misspelt key is never ignored).
ALLOWED_KEYS = {
    "query": {"query", "targets", "target", "weight", "split", "grades", "negatives"},
    "history": {"history", "targets", "target", "weight", "split", "grades", "negatives", "user"},
    "sequence": {"sequence", "user"},
}


@DATASETS.register("jsonl")
def load_jsonl(path: str, data_dir=None, seed: int = 0, max_history: int = 20,
               fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), bucketing: str | None = None) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"jsonl: {root} is not a directory (it must hold items.jsonl and examples.jsonl)")
    notes: list[str] = []
    catalog = _read_items(root / "items.jsonl", notes)
    ex_path = root / "examples.jsonl"
    records = list(_lines(ex_path))
    if not records:
        raise DataError(f"{ex_path}: no examples")
    forms = {"query": "query", "history": "history", "sequence": "sequence"}

    def form_of(no, rec):
        found = [f for f in forms if f in rec]
        if len(found) != 1:
            raise DataError(f"{ex_path}: line {no}: needs exactly one of 'query', 'history', 'sequence', got {sorted(rec)}")
        return found[0]

    form = form_of(*records[0])
    allowed = ALLOWED_KEYS[form]
    for no, rec in records:
        if form_of(no, rec) != form:
            raise DataError(f"{ex_path}: line {no}: a {form_of(no, rec)!r} example among {form!r} examples")
        unknown = sorted(set(rec) - allowed)
        if unknown:
            raise DataError(f"{ex_path}: line {no}: unknown field(s) {', '.join(map(repr, unknown))} in a {form} "
                            f"example; allowed: {', '.join(sorted(allowed))}")

    name = f"jsonl-{root.name}"
    if form == "sequence":
        seqs, users = [], []
        for no, rec in records:
            seqs.append(_ids(rec["sequence"], ex_path, no, "sequence", catalog))
            users.append(str(rec.get("user", f"line{no}")))
        train, valid, test = leave_one_out(seqs, users, max_history=max_history, notes=notes)
        return Dataset(name, catalog, train, valid, test, protocol="leave-one-out",
                       bucketing=bucketing or "proxy:target-popularity", notes=notes)

    has_split = ["split" in rec for _, rec in records]
    if any(has_split) and not all(has_split):
        no = records[has_split.index(False)][0]
        raise DataError(f"{ex_path}: line {no}: missing 'split' (some lines have one, so every line needs one)")
    if form == "history" and not all(has_split):
        raise DataError(f"{ex_path}: history examples need a 'split' on every line (or use the 'sequence' form)")
    split, targets, sources, weights, grades, negs, keys = [], [], [], [], [], [], []
    any_weight = any_grades = any_negs = False
    for no, rec in records:
        if "split" in rec and rec["split"] not in SPLITS:
            raise DataError(f"{ex_path}: line {no}: split {rec['split']!r} is not one of {', '.join(SPLITS)}")
        split.append(rec.get("split"))
        if "targets" in rec:
            t = _ids(rec["targets"], ex_path, no, "targets", catalog)
        elif "target" in rec:
            t = _ids([rec["target"]], ex_path, no, "target", catalog)
        else:
            raise DataError(f"{ex_path}: line {no}: missing field 'targets'")
        if len(np.unique(t)) != len(t):
            raise DataError(f"{ex_path}: line {no}: a target is listed twice in {rec.get('targets')!r}")
        targets.append(t)
        if form == "query":
            q = rec["query"]
            if not isinstance(q, str) or not q.strip():
                raise DataError(f"{ex_path}: line {no}: field 'query' must be a non-empty string, got {q!r}")
            sources.append(q.strip())
            keys.append(normalize_query(q))
        else:
            sources.append(_ids(rec["history"], ex_path, no, "history", catalog, allow_empty=True)[-max_history:])
            keys.append(str(rec.get("user", f"line{no}")))
        w = rec.get("weight", 1.0)
        if not isinstance(w, int | float) or isinstance(w, bool) or not (w > 0 and math.isfinite(w)):
            raise DataError(f"{ex_path}: line {no}: weight must be a finite positive number, got {w!r}")
        any_weight |= "weight" in rec
        weights.append(float(w))
        g = rec.get("grades")
        if g is not None:
            if not isinstance(g, list) or len(g) != len(t) or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in g):
                raise DataError(f"{ex_path}: line {no}: 'grades' must be one finite number per target, got {g!r}")
            any_grades = True
        grades.append(np.asarray(g if g is not None else [1.0] * len(t), dtype=np.float64))
        n = rec.get("negatives")
        any_negs |= n is not None
        negs.append(_ids(n, ex_path, no, "negatives", catalog, allow_empty=True) if n is not None else np.zeros(0, np.int64))

    if all(has_split):
        split_arr = np.asarray(split)
        protocol = "given-split"
    else:
        split_arr = query_level_split(keys, seed=seed, fractions=fractions)
        protocol = "query-split"
        notes.append(f"no 'split' given: seeded query-level split {fractions} (seed {seed})")
    out = {}
    for s in SPLITS:
        idx = np.flatnonzero(split_arr == s)
        pick = lambda v, idx=idx: [v[i] for i in idx]  # noqa: E731
        out[s] = Examples(
            kind="query" if form == "query" else "history",
            targets=pick(targets),
            queries=pick(sources) if form == "query" else None,
            histories=pick(sources) if form == "history" else None,
            weights=np.asarray(weights, dtype=np.float64)[idx],
            target_grades=pick(grades) if any_grades else None,
            negatives=pick(negs) if any_negs else None,
            keys=pick(keys),
        )
    if bucketing is None:
        bucketing = ("traffic" if any_weight else "proxy:query-length") if form == "query" else "proxy:target-popularity"
    return Dataset(name, catalog, out["train"], out["valid"], out["test"], protocol=protocol,
                   bucketing=bucketing, notes=notes)
