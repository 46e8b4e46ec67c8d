import numpy as np
import pytest

from gr_toolkit.artifacts import (
    ArtifactError,
    atomic_dir,
    read_arrays,
    read_manifest,
    write_arrays,
    write_manifest,
)


def test_atomic_dir_publishes_only_on_success(tmp_path):
    target = tmp_path / "idx"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            write_arrays(d, {"a": np.arange(3)})
            raise RuntimeError("crash while writing")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temp leftovers either

    with atomic_dir(target) as d:
        entries = write_arrays(d, {"a": np.arange(3)})
        write_manifest(d, {"arrays": entries})
    m = read_manifest(target)
    np.testing.assert_array_equal(read_arrays(target, m["arrays"])["a"], np.arange(3))


def test_refuses_to_overwrite_unless_asked(tmp_path):
    target = tmp_path / "idx"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(ArtifactError, match="already exists"):
        with atomic_dir(target):
            pass
    assert (target / "keep.txt").exists()
    with atomic_dir(target, overwrite=True) as d:
        (d / "new.txt").write_text("y")
    assert (target / "new.txt").exists() and not (target / "keep.txt").exists()


def test_corrupt_and_missing_arrays_are_reported(tmp_path):
    with atomic_dir(tmp_path / "a") as d:
        entries = write_arrays(d, {"codes": np.arange(10)})
        write_manifest(d, {"arrays": entries})
    path = tmp_path / "a" / "codes.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_arrays(tmp_path / "a", read_manifest(tmp_path / "a")["arrays"])
    path.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        read_arrays(tmp_path / "a", read_manifest(tmp_path / "a")["arrays"])
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        read_manifest(tmp_path)


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match="dtype object"):
        write_arrays(tmp_path, {"x": np.array([{"a": 1}], dtype=object)})
