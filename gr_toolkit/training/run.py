"""The run directory: everything needed to retrieve with a trained model, and to resume training.

```
RUN/
  manifest.json        format, model name + config, train config, dataset, catalog fingerprint,
                       index (copied into RUN/index, original path recorded), status, best epoch/metric
  model.safetensors    the best weights so far (by the validation metric)
  losses.safetensors   parameters of loss plug-ins (the ranking loss's W), when any
  featurizer/          the fitted SourceFeaturizer
  index/               a copy of the ItemIndex the model was trained against
  catalog.json         external item ids and titles (so `search` needs no data files)
  history.jsonl        one JSON line per epoch: losses, validation metrics, seconds
  checkpoint/          the LAST epoch: model/loss/optimizer tensors (safetensors) + state.json
                       (epoch, counters, RNG states, optimizer hyper-parameters)
```
No pickles: tensors are safetensors, everything else JSON. Files are replaced atomically
(written next to their target, then renamed), so a crash leaves the previous version intact:
- ``create`` assembles the new run in a hidden sibling directory and renames it into place, so a
  kill while it runs leaves either nothing or a complete, resumable run;
- ``save_checkpoint`` writes ``.checkpoint.tmp`` (``state.json`` last = complete), moves the old one to
  ``.checkpoint.old`` and the new one in; a kill between the two renames is repaired on the next read
  (the complete temporary one, else the old one, becomes the checkpoint again);
- the best weights' SHA-256 is kept in ``manifest.json`` (``checksums``) and checked on every load, so
  a flipped bit or a truncated file is an error that names the file, never silently wrong results.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from gr_toolkit.artifacts import ArtifactError, _sha256

RUN_FORMAT = "gr-toolkit-run"
RUN_VERSION = 1


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def loss_modules(losses: list[Any]) -> torch.nn.ModuleDict:
    """The loss plug-ins that carry parameters, keyed by name (for optimiser and checkpoints)."""
    return torch.nn.ModuleDict({lo.name: lo for lo in losses if isinstance(lo, torch.nn.Module)})


# -- optimiser state <-> safetensors + JSON ---------------------------------------------------------
def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


class RunDir:
    """Reads and writes one run directory (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # paths
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def featurizer_dir(self) -> Path:
        return self.path / "featurizer"

    @property
    def catalog_path(self) -> Path:
        return self.path / "catalog.json"

    def read_catalog(self) -> dict[str, Any]:
        """``{"name", "ids", "titles"}`` of the catalog the run was trained on (titles may be None)."""
        if not self.catalog_path.exists():
            raise ArtifactError(f"{self.path}: catalog.json is missing (run written without its catalog)")
        return json.loads(self.catalog_path.read_text())

    @property
    def history_path(self) -> Path:
        return self.path / "history.jsonl"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    # manifest
    def read_manifest(self) -> dict[str, Any]:
        if not self.path.exists():
            raise ArtifactError(f"run directory {self.path} does not exist (train one with `gr-toolkit train`)")
        if not self.manifest_path.exists():
            raise ArtifactError(f"{self.path} is not a gr-toolkit run: manifest.json is missing")
        try:
            man = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{self.manifest_path} is not valid JSON: {e}") from None
        if man.get("format") != RUN_FORMAT:
            raise ArtifactError(f"{self.path}: not a gr-toolkit run (format={man.get('format')!r})")
        if man.get("version") != RUN_VERSION:
            raise ArtifactError(f"{self.path}: run format version {man.get('version')} is not supported")
        return man

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        man = self.read_manifest()
        man.update(fields)
        self.write_manifest(man)
        return man

    def create(
        self,
        *,
        model_name: str,
        model_config: dict[str, Any],
        train_config: dict[str, Any],
        dataset: str,
        catalog_fingerprint: str,
        index: Any,
        index_source: str | None,
        featurizer: Any,
        catalog: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a new run: featurizer, index copy, catalog ids/titles (for ``search`` output) and
        manifest (status ``training``)."""
        if self.path.exists() and any(self.path.iterdir()):
            raise ArtifactError(f"{self.path} exists and is not an unfinished run of the same setup; pick a new --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Assemble in a hidden sibling and rename into place: a kill leaves no half-made run behind.
        for stale in self.path.parent.glob(f".{self.path.name}.creating.*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed create of this same run
        tmp_run = RunDir(self.path.with_name(f".{self.path.name}.creating.{os.getpid()}"))
        tmp_run.path.mkdir()
        try:
            manifest = tmp_run._write_new(model_name, model_config, train_config, dataset, catalog_fingerprint, index,
                                          index_source, featurizer, catalog, extra)
            if self.path.exists():
                self.path.rmdir()  # empty (checked above)
            os.replace(tmp_run.path, self.path)
        except BaseException:
            shutil.rmtree(tmp_run.path, ignore_errors=True)
            raise
        return manifest

    def _write_new(self, model_name: str, model_config: dict[str, Any], train_config: dict[str, Any], dataset: str,
                   catalog_fingerprint: str, index: Any, index_source: str | None, featurizer: Any, catalog: Any,
                   extra: dict[str, Any] | None) -> dict[str, Any]:
        featurizer.save(self.featurizer_dir, overwrite=True)
        index.save(self.index_dir, overwrite=True)
        if catalog is not None:
            titles = catalog.fields.get("title") if "title" in catalog.fields else None
            _atomic_write_text(self.catalog_path, json.dumps({"name": catalog.name, "ids": list(catalog.ids),
                                                              "titles": titles}))
        manifest = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "model": model_name,
            "model_config": model_config,
            "train_config": train_config,
            "dataset": dataset,
            "catalog_fingerprint": catalog_fingerprint,
            "index": {"copy": "index", "source": index_source, "scheme": index.scheme, "n_items": index.n_items},
            "featurizer": "featurizer",
            "status": "training",
            "epochs_done": 0,
            "best": None,
            "train_seconds": 0.0,
            **(extra or {}),
        }
        self.write_manifest(manifest)
        return manifest

    # weights
    def save_best(self, model: torch.nn.Module, losses: torch.nn.ModuleDict | None = None) -> None:
        """Write the best weights with their SHA-256 in the manifest. While a file is being replaced the
        manifest accepts the old and the new digest, so a kill at any moment leaves a loadable run."""
        files = [(model, self.path / "model.safetensors")]
        if losses is not None and len(losses):
            files.append((losses, self.path / "losses.safetensors"))
        accepted = {k: (v if isinstance(v, list) else [v]) for k, v in (self.read_manifest().get("checksums") or {}).items()}
        staged = []
        for module, path in files:
            tmp = path.with_name(f".{path.name}.tmp")
            save_model(module, str(tmp))
            digest = _sha256(tmp)
            accepted[path.name] = [digest] + [d for d in accepted.get(path.name, []) if d != digest]
            staged.append((tmp, path, digest))
        self.update_manifest(checksums=accepted)
        for tmp, path, _ in staged:
            os.replace(tmp, path)
        self.update_manifest(checksums={**accepted, **{path.name: [digest] for _, path, digest in staged}})

    def _load_weights(self, module: torch.nn.Module, path: Path, device: torch.device | str,
                      checksums: dict[str, str] | None) -> None:
        expected = (checksums or {}).get(path.name)
        expected = [expected] if isinstance(expected, str) else expected
        if expected and _sha256(path) not in expected:
            raise ArtifactError(f"{path}: checksum mismatch (the file changed after training wrote it: corrupted or "
                                "truncated); retrain or restore it")
        try:
            load_model(module, str(path), strict=True, device=str(device))
        except Exception as e:  # safetensors' SafetensorError (truncated file) is a plain Exception subclass
            raise ArtifactError(f"{path}: cannot read the weights ({type(e).__name__}: {e})") from None

    def load_best(self, model: torch.nn.Module, device: torch.device | str = "cpu",
                  losses: torch.nn.ModuleDict | None = None) -> None:
        path = self.path / "model.safetensors"
        if not path.exists():
            raise ArtifactError(f"{self.path}: model.safetensors is missing (training never finished an epoch)")
        checksums = self.read_manifest().get("checksums")
        self._load_weights(model, path, device, checksums)
        if losses is not None and len(losses):
            self._load_weights(losses, self.path / "losses.safetensors", device, checksums)

    # checkpoints
    def save_checkpoint(
        self,
        model: torch.nn.Module,
        losses: torch.nn.ModuleDict,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        rng: np.random.Generator,
        ema: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the last-epoch checkpoint into a fresh directory and swap it in atomically.

        ``ema``: the running weight average (``WeightAverage.state_tensors``), when training keeps one.
        """
        tmp = self.path / ".checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        if len(losses):
            save_model(losses, str(tmp / "losses.safetensors"))
        opt_tensors, opt_meta = optimizer_to_files(optimizer)
        save_file({k: v.contiguous().cpu() for k, v in opt_tensors.items()}, str(tmp / "optimizer.safetensors"))
        rng_tensors = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng_tensors[f"cuda{i}"] = s
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        if ema is not None:
            save_file(ema, str(tmp / "ema.safetensors"))
        full = {**state, "optimizer": opt_meta, "numpy_rng": rng.bit_generator.state}
        (tmp / "state.json").write_text(json.dumps(full, indent=2))  # last: marks the checkpoint complete
        old = self.path / ".checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint.exists():
            os.replace(self.checkpoint, old)
        os.replace(tmp, self.checkpoint)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint_ema(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        path = self.checkpoint / "ema.safetensors"
        if not path.exists():
            raise ArtifactError(f"{self.checkpoint}: ema.safetensors is missing (the run was trained without ema_decay)")
        return load_file(str(path), device=str(device))

    def recover_checkpoint(self) -> None:
        """Repair a kill between ``save_checkpoint``'s two renames: no ``checkpoint/`` but a complete
        ``.checkpoint.tmp`` (newest) or ``.checkpoint.old`` becomes the checkpoint again."""
        if (self.checkpoint / "state.json").exists():
            return
        for candidate in (self.path / ".checkpoint.tmp", self.path / ".checkpoint.old"):
            if (candidate / "state.json").exists():
                shutil.rmtree(self.checkpoint, ignore_errors=True)
                os.replace(candidate, self.checkpoint)
                return

    def has_checkpoint(self) -> bool:
        self.recover_checkpoint()
        return (self.checkpoint / "state.json").exists()

    def load_checkpoint(
        self,
        model: torch.nn.Module,
        losses: torch.nn.ModuleDict,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        device: torch.device | str,
    ) -> dict[str, Any]:
        """Restore model, loss parameters, optimizer and RNG states; return the saved counters."""
        ck = self.checkpoint
        try:
            state = json.loads((ck / "state.json").read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{ck / 'state.json'} is not valid JSON ({e}); the checkpoint is damaged: start "
                                "over with a new --out") from None
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors") + (
                ("losses.safetensors",) if len(losses) else ()):
            if not (ck / name).exists():
                raise ArtifactError(f"{ck}: {name} is missing; the checkpoint is damaged: start over with a new --out")
        self._load_weights(model, ck / "model.safetensors", device, None)
        if len(losses):
            self._load_weights(losses, ck / "losses.safetensors", device, None)
        try:
            opt_tensors = load_file(str(ck / "optimizer.safetensors"), device=str(device))
            optimizer.load_state_dict(optimizer_from_files(opt_tensors, state.pop("optimizer")))
            rng_t = load_file(str(ck / "rng.safetensors"))
        except Exception as e:  # damaged optimizer / RNG files (SafetensorError, KeyError, shape mismatch)
            raise ArtifactError(f"{ck}: cannot restore the optimizer / RNG state ({type(e).__name__}: {e})") from None
        torch.set_rng_state(rng_t["torch"])
        if torch.cuda.is_available():
            cuda = [rng_t[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng_t]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        rng.bit_generator.state = state.pop("numpy_rng")
        return state

    # history
    def append_history(self, record: dict[str, Any]) -> None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_history(self, allow_cut_last_line: bool = False) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        lines = [ln for ln in self.history_path.read_text().splitlines() if ln.strip()]
        rows = []
        for n, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if allow_cut_last_line and n == len(lines):
                    break  # a kill inside append_history: that epoch is redone from the checkpoint
                raise ArtifactError(f"{self.history_path}: line {n} is not valid JSON") from None
        return rows

    def truncate_history(self, epochs_done: int) -> None:
        """Drop history lines of epochs after the checkpoint (a crash between history and checkpoint)."""
        rows = [r for r in self.read_history(allow_cut_last_line=True) if r.get("epoch", 0) <= epochs_done]
        _atomic_write_text(self.history_path, "".join(json.dumps(r) + "\n" for r in rows))
