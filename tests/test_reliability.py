"""Fault injection for long runs: kills at the worst moments, damaged files, bad settings. A killed run
resumes to exactly the weights of an uninterrupted one; damage is an error that names the file."""

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.cli.main import app
from gr_toolkit.cli.train import run_training
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.training.run import RunDir
from tests.seater_helpers import digit_tree_index

MODEL = {"d_model": 16, "ffn": 32, "heads": 2}
TRAIN = {"losses": "gen", "epochs": 2, "max_steps_per_epoch": 2, "eval_max_examples": 20, "eval_beam": 5,
         "progress": False, "threads": 1, "patience": 0}
FEAT = {"vocab_size": 400}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "idx"
    digit_tree_index(load_dataset("synthetic").catalog, k=8).save(out)
    return out


def _train(index_dir, out, **train):
    return run_training("synthetic", index_dir, out, "seater", dict(MODEL), {**TRAIN, **train}, dict(FEAT),
                        log=lambda *_: None)


def _bytes(run, name="model.safetensors"):
    return (run / name).read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(index_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    torch.manual_seed(1)
    _train(index_dir, out)
    return out


def test_same_seed_same_run_whatever_came_before(index_dir, uninterrupted, tmp_path):
    torch.manual_seed(999)  # the model is built after the trainer seeds torch: earlier draws do not matter
    torch.rand(17)
    _train(index_dir, tmp_path / "again")
    assert _bytes(tmp_path / "again") == _bytes(uninterrupted)
    assert _bytes(tmp_path / "again", "checkpoint/model.safetensors") == _bytes(uninterrupted, "checkpoint/model.safetensors")


@pytest.mark.parametrize("leftover", [".checkpoint.old", ".checkpoint.tmp"])
def test_kill_between_the_checkpoint_renames_resumes_exactly(index_dir, uninterrupted, tmp_path, leftover):
    run = tmp_path / "run"
    _train(index_dir, run, epochs=1)
    if leftover == ".checkpoint.old":  # killed after checkpoint -> .old, before .tmp -> checkpoint
        os.replace(run / "checkpoint", run / ".checkpoint.old")
    else:  # killed with the new checkpoint complete in .tmp and the old one gone
        os.replace(run / "checkpoint", run / ".checkpoint.tmp")
    _train(index_dir, run, epochs=2)
    assert _bytes(run) == _bytes(uninterrupted)
    assert _bytes(run, "checkpoint/model.safetensors") == _bytes(uninterrupted, "checkpoint/model.safetensors")
    assert [json.loads(x)["epoch"] for x in (run / "history.jsonl").read_text().splitlines()] == [1, 2]


def test_cut_last_history_line_is_redone(index_dir, uninterrupted, tmp_path):
    run = tmp_path / "run"
    _train(index_dir, run, epochs=1)
    with open(run / "history.jsonl", "a") as f:
        f.write('{"epoch": 2, "loss_to')  # killed inside append_history of epoch 2
    _train(index_dir, run, epochs=2)
    assert _bytes(run) == _bytes(uninterrupted)


def test_kill_inside_create_leaves_nothing_and_a_rerun_works(index_dir, uninterrupted, tmp_path, monkeypatch):
    from gr_toolkit.identifiers.codes import CodeIndex

    real_save = CodeIndex.save

    def killed(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(CodeIndex, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(index_dir, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.creating.*"))
    monkeypatch.setattr(CodeIndex, "save", real_save)
    _train(index_dir, tmp_path / "run")
    assert _bytes(tmp_path / "run") == _bytes(uninterrupted)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_weights_are_refused_by_name(uninterrupted, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    data = bytearray(_bytes(run))
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) // 3]
    (run / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.safetensors: checksum mismatch"):
        RunDir(run).load_best(torch.nn.Linear(1, 1))
    res = CliRunner().invoke(app, ["eval", "synthetic", "--run", str(run), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "checksum mismatch" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r.json").exists()


def test_damaged_checkpoint_files_are_errors_not_tracebacks(index_dir, tmp_path):
    run = tmp_path / "run"
    _train(index_dir, run, epochs=1)
    (run / "checkpoint" / "optimizer.safetensors").unlink()
    with pytest.raises(ArtifactError, match="optimizer.safetensors is missing"):
        _train(index_dir, run, epochs=2)
    (run / "checkpoint" / "state.json").write_text('{"epoch": 1, "be')
    with pytest.raises(ArtifactError, match="state.json is not valid JSON"):
        _train(index_dir, run, epochs=2)


@pytest.mark.parametrize("option,value,pattern", [
    ("epochs", 0, "epochs must be >= 1, got 0"),
    ("indexing", "titel", "subset of title, spans"),
    ("indexing_ratio", -1.0, "indexing_ratio must be a finite number >= 0"),
])
def test_bad_settings_fail_before_the_run_directory_exists(index_dir, tmp_path, option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        _train(index_dir, tmp_path / "run", **{option: value})
    assert not (tmp_path / "run").exists()


def test_search_refuses_a_negative_beam(uninterrupted):
    res = CliRunner().invoke(app, ["search", "--run", str(uninterrupted), "red shoes", "--beam", "-5"])
    assert res.exit_code == 2 and "--beam must be >= 1, got -5" in res.output


def test_empty_vector_file_is_a_named_error_not_aborted(tmp_path):
    from gr_toolkit.vectors.io import VectorError, load_vectors

    (tmp_path / "v.npy").write_bytes(b"")
    with pytest.raises(VectorError, match="v.npy: cannot be read as a numpy array"):
        load_vectors(tmp_path / "v.npy")
    ds = load_dataset("synthetic")
    res = CliRunner().invoke(app, ["index", "synthetic", "--scheme", "seater", "--vectors", str(tmp_path / "v.npy"),
                                   "--out", str(tmp_path / "idx")])
    assert res.exit_code != 0 and "Aborted" not in res.output and "v.npy" in res.output
    assert not (tmp_path / "idx").exists() and len(ds.catalog)


def test_empty_validation_split_fails_before_anything_is_written():
    from dataclasses import replace

    from gr_toolkit.training.config import TrainConfig
    from gr_toolkit.training.sft import check_train_setup

    ds = load_dataset("synthetic")
    with pytest.raises(ValueError, match="has no validation examples"):
        check_train_setup(replace(ds, valid=ds.valid.subset([])), TrainConfig())


def test_edited_or_incomplete_index_manifest_is_refused(index_dir, tmp_path):
    import shutil

    from gr_toolkit.identifiers.base import load_index

    for edit, pattern in ((lambda m: m.update(scheme="rq"), "changed after it was written"),
                          (lambda m: m.pop("arrays"), "changed after it was written")):
        d = tmp_path / "idx"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(index_dir, d)
        man = json.loads((d / "manifest.json").read_text())
        edit(man)
        (d / "manifest.json").write_text(json.dumps(man))
        with pytest.raises(ArtifactError, match=pattern):
            load_index(d)
    man.pop("content_sha256")  # an older manifest without the checksum: missing fields are still named
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="lacks the field\\(s\\) 'arrays'"):
        load_index(d)


def test_temp_dir_of_a_killed_build_is_removed_by_the_next_build(tmp_path):
    from gr_toolkit.artifacts import atomic_dir

    dead = tmp_path / ".idx.pid999999999.abc123"  # no such process
    dead.mkdir()
    (dead / "half.npy").write_bytes(b"x")
    live = tmp_path / f".idx.pid{os.getpid()}.zzz"  # a build still running in this process: kept
    live.mkdir()
    with atomic_dir(tmp_path / "idx") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not dead.exists() and live.exists() and (tmp_path / "idx" / "manifest.json").exists()


def test_frozen_parameters_stay_put_and_a_bad_prefix_is_refused(index_dir, tmp_path):
    from safetensors.torch import load_file

    from gr_toolkit.config import from_dict
    from gr_toolkit.data.featurize import SourceFeaturizer
    from gr_toolkit.identifiers.base import load_index
    from gr_toolkit.models.seater import SeaterConfig, SeaterModel
    from gr_toolkit.training.sft import seed_everything

    _train(index_dir, tmp_path / "a", epochs=1, freeze="token_emb")
    run = RunDir(tmp_path / "a")
    man = run.read_manifest()
    assert man["train_config"]["freeze"] == "token_emb"
    seed_everything(man["train_config"]["seed"])  # rebuild the initial weights the run started from
    start = SeaterModel.build(load_index(run.index_dir), SourceFeaturizer.load(run.featurizer_dir),
                              from_dict(SeaterConfig, man["model_config"]))
    trained = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert torch.equal(trained["token_emb.weight"], start.token_emb.weight)  # frozen: untouched
    assert not torch.equal(trained["dec_norm.weight"], start.dec_norm.weight)  # the rest trained
    with pytest.raises(ValueError, match="freeze: no parameter name starts with 'tokn_emb'"):
        _train(index_dir, tmp_path / "c", epochs=1, freeze="tokn_emb")
    assert not (tmp_path / "c").exists()


def test_kill_while_the_best_weights_are_replaced_leaves_a_loadable_run(index_dir, uninterrupted, tmp_path,
                                                                        monkeypatch):
    """save_best: the manifest accepts the old and new digest while the file is swapped."""
    import shutil

    from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner
    from gr_toolkit.training import run as run_module

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    runner = GenerativeRetrieverRunner.load(run, device="cpu")
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith("model.safetensors"):
            raise KeyboardInterrupt  # after the manifest lists both digests, before the swap
        return real_replace(src, dst)

    monkeypatch.setattr(run_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        RunDir(run).save_best(torch.nn.Linear(2, 2))
    monkeypatch.setattr(run_module.os, "replace", real_replace)
    assert len(RunDir(run).read_manifest()["checksums"]["model.safetensors"]) == 2
    GenerativeRetrieverRunner.load(run, device="cpu")  # the old weights still load
    RunDir(run).save_best(runner.model)  # a later save settles on one digest
    assert len(RunDir(run).read_manifest()["checksums"]["model.safetensors"]) == 1
