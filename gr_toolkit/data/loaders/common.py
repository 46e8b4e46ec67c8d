"""Shared reading helpers for loaders: explicit decoding, column checks, errors that name file/row/value."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gr_toolkit.data.types import DataError, Examples

_WS = re.compile(r"\s+")


def normalize_query(q: str) -> str:
    """Lower-case, collapse whitespace, strip (how search logs are usually keyed)."""
    return _WS.sub(" ", q.lower()).strip()


def normalize_queries(s: pd.Series) -> pd.Series:
    return s.astype(str).str.lower().str.replace(_WS, " ", regex=True).str.strip()


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what}: file {path} not found")
    return path


def decode_text(path: Path, encoding: str) -> str:
    """Read and decode a whole file; undecodable bytes raise a DataError with line and byte offset."""
    raw = require_file(path, "input").read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: bytes {raw[e.start:e.end + 3]!r} at byte {e.start} (line {line}) are not valid {encoding}; "
            f"re-encode the file as {encoding} or pass the right encoding"
        ) from None


def _check_field_counts(text: str, path: Path) -> None:
    """Every record must have the header's number of fields: pandas would pad a cut last row with
    empty values (and report a misleading problem later, or none)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file (no header)")
    for row in reader:
        if row and len(row) != len(header):
            raise DataError(f"{path}: line {reader.line_num} has {len(row)} field(s), the header has {len(header)} "
                            f"({', '.join(header)}): a cut or malformed row")


def read_csv(path: Path, encoding: str, required: Sequence[str], dtype: dict | None = None, **kw) -> pd.DataFrame:
    """Decode explicitly, parse with pandas, check the required columns are present."""
    text = decode_text(path, encoding)
    if kw.get("sep", ",") == ",":
        _check_field_counts(text, path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=dtype, keep_default_na=False, **kw)
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{path}: cannot parse as CSV: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")
    return df


def numeric_column(df: pd.DataFrame, col: str, path: Path, header_lines: int = 1) -> np.ndarray:
    """Column as float; the first non-numeric value raises naming its row (file line)."""
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = vals.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: column {col!r}, row {i + 1} (line {i + 1 + header_lines}): "
                        f"value {df[col].iloc[i]!r} is not a number")
    return vals.to_numpy(dtype=np.float64)


def read_atomic(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; returns columns named without the type."""
    text = decode_text(path, "utf-8")
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing field(s) {', '.join(missing)}; header has {', '.join(df.columns)}")
    return df


def check_unique(ids: pd.Series, path: Path, field: str) -> None:
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)[:2]
        raise DataError(f"{path}: duplicate {field} {ids.iloc[rows[0]]!r} (rows {rows[0] + 1} and {rows[1] + 1})")


def map_items(ext: np.ndarray, index: dict[str, int], path: Path, field: str, rows: np.ndarray | None = None) -> np.ndarray:
    """External ids -> internal ids; an unknown id raises naming file, field, row and value."""
    s = pd.Series(ext, dtype=object).map(index)
    bad = s.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        row = int(rows[i]) if rows is not None else i + 1
        raise DataError(f"{path}: {field} {ext[i]!r} (row {row}) is not in the catalog")
    return s.to_numpy(dtype=np.int64)


def split_sequences(flat_ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Cut one flat id array into consecutive sequences of the given lengths (views, no copies)."""
    return np.split(flat_ids, np.cumsum(lengths)[:-1]) if len(lengths) else []


def group_query_examples(
    keys: np.ndarray,
    items: np.ndarray,
    grades: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    negatives_mask: np.ndarray | None = None,
) -> tuple[Examples, int]:
    """Group (query, item) rows into one example per distinct query.

    ``keep`` marks target rows, ``negatives_mask`` judged non-relevant rows; targets are ordered by
    grade (descending) then item id. Queries without any target row are left out and counted (the
    caller notes the count). Example weight = sum of ``weights`` over its target rows (1 without weights).
    """
    n = len(keys)
    keep = np.ones(n, dtype=bool) if keep is None else keep
    grades = np.ones(n) if grades is None else np.asarray(grades, dtype=np.float64)
    unit_weight = weights is None  # no traffic: every example weighs 1
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    neg = np.zeros(n, dtype=bool) if negatives_mask is None else negatives_mask
    uq, qid = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    order = np.lexsort((items, -grades, qid))
    qid_s, items_s, grades_s, keep_s, neg_s, w_s = qid[order], items[order], grades[order], keep[order], neg[order], weights[order]
    starts = np.searchsorted(qid_s, np.arange(len(uq)))
    ends = np.append(starts[1:], len(qid_s))
    targets, tgrades, negs, queries, ws = [], [], [], [], []
    dropped = 0
    for q in range(len(uq)):
        sl = slice(starts[q], ends[q])
        k = keep_s[sl]
        if not k.any():
            dropped += 1
            continue
        targets.append(items_s[sl][k])
        tgrades.append(grades_s[sl][k])
        negs.append(items_s[sl][neg_s[sl]])
        ws.append(1.0 if unit_weight else w_s[sl][k].sum())
        queries.append(str(uq[q]))
    ex = Examples(kind="query", targets=targets, queries=queries, weights=np.asarray(ws, dtype=np.float64),
                  target_grades=tgrades, negatives=negs, keys=list(queries))
    return ex, dropped
