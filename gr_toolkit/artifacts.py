"""Artifacts are directories: ``manifest.json`` plus array files (``.npy``), written atomically.

A writer fills a temporary sibling directory and renames it into place only when everything is
written, so a crash or a bad input never leaves a half-written index behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A saved artifact is missing, corrupt, or does not match what it is loaded with."""


def _remove_stale_temps(target: Path) -> None:
    """Delete temp dirs of earlier builds of ``target`` whose process is gone (killed builds)."""
    for cand in target.parent.glob(f".{target.name}.pid*.*"):
        try:
            pid = int(cand.name[len(target.name) + 5:].split(".", 1)[0])
        except ValueError:
            continue
        if cand.is_dir() and not _alive(pid):
            shutil.rmtree(cand, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    if target.exists() and not overwrite:
        if any(target.iterdir()):
            raise ArtifactError(f"{target} already exists and is not empty (pass overwrite=True / --overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    # the pid in the name tells a later build whether the builder of a left-over temp dir is still alive
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.pid{os.getpid()}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Save each array as ``<name>.npy``; return a manifest entry per array (shape, dtype, sha256)."""
    entries = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype == object:
            raise ArtifactError(f"array {name!r} has dtype object; artifacts hold numeric arrays only")
        path = directory / f"{name}.npy"
        np.save(path, arr, allow_pickle=False)
        entries[name] = {"file": path.name, "shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": _sha256(path)}
    return entries


def _content_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` with a checksum of its own content, so an edit by hand is detected on read."""
    body = {**manifest, "content_sha256": _content_checksum(manifest)}
    (directory / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True))


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{directory} is not a gr-toolkit artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    stored = manifest.get("content_sha256")
    if stored is not None and stored != _content_checksum(manifest):
        raise ArtifactError(f"{path} was changed after it was written (content checksum mismatch): its fields "
                            "cannot be trusted; rebuild the artifact")
    return manifest


def require_fields(manifest: dict[str, Any], fields: tuple[str, ...], where: str | Path) -> None:
    missing = [f for f in fields if f not in manifest]
    if missing:
        raise ArtifactError(f"{where}: manifest.json lacks the field(s) {', '.join(map(repr, missing))}")


def read_arrays(directory: str | Path, entries: dict[str, dict[str, Any]], verify: bool = True) -> dict[str, np.ndarray]:
    """Load the arrays a manifest lists, checking presence, checksum, shape and dtype."""
    directory = Path(directory)
    out = {}
    for name, meta in entries.items():
        path = directory / meta["file"]
        if not path.exists():
            raise ArtifactError(f"{directory}: array file {meta['file']} listed in the manifest is missing")
        if verify and meta.get("sha256") and _sha256(path) != meta["sha256"]:
            raise ArtifactError(f"{path}: checksum mismatch (file corrupt or modified)")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:  # EOFError: empty / cut file
            raise ArtifactError(f"{path}: cannot be read as a numpy array: {e or type(e).__name__}") from None
        if list(arr.shape) != list(meta["shape"]) or str(arr.dtype) != meta["dtype"]:
            raise ArtifactError(
                f"{path}: expected shape {meta['shape']} dtype {meta['dtype']}, found {list(arr.shape)} {arr.dtype}"
            )
        out[name] = arr
    return out


def fingerprint_strings(values: list[str]) -> str:
    """A stable fingerprint of an ordered list of strings (e.g. a catalog's external ids)."""
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
