import numpy as np
import pytest

from gr_toolkit.retrieval.trec import TrecFormatError, arrays_from_run, read_run, run_from_arrays, write_run


def test_round_trip(tmp_path):
    run = {"q1": [("B00X", 3.5), ("A-2", 1.25)], "q 2".replace(" ", "_"): [("C3", -0.5)]}
    p = write_run(tmp_path / "run.txt", run, tag="bm25")
    lines = p.read_text().splitlines()
    assert lines[0] == "q1 Q0 B00X 1 3.500000 bm25"
    assert lines[1].split()[3] == "2"
    assert read_run(p) == run


def test_arrays_round_trip(tmp_path):
    ids = ["a", "b", "c", "d"]
    items = np.array([[2, 0, -1], [3, 1, 2]])
    scores = np.array([[0.9, 0.1, -np.inf], [3.0, 2.0, 1.0]])
    run = run_from_arrays(["x", "y"], items, scores, ids)
    assert run["x"] == [("c", 0.9), ("a", 0.1)]
    back = read_run(write_run(tmp_path / "r.txt", run))
    it2, sc2 = arrays_from_run(back, ["x", "y"], {d: i for i, d in enumerate(ids)}, k=3)
    np.testing.assert_array_equal(it2, items)
    np.testing.assert_allclose(sc2[1], scores[1])


def test_bad_input(tmp_path):
    with pytest.raises(TrecFormatError, match="whitespace"):
        write_run(tmp_path / "r.txt", {"q 1": [("a", 1.0)]})
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 Q0 a 1 0.5 tag\nq1 Q0 b two 0.4 tag\n")
    with pytest.raises(TrecFormatError, match="bad.txt:2"):
        read_run(bad)
    bad.write_text("q1 a 1 0.5\n")
    with pytest.raises(TrecFormatError, match="6 fields"):
        read_run(bad)
    with pytest.raises(TrecFormatError, match="not in the catalog"):
        arrays_from_run({"q": [("zz", 1.0)]}, ["q"], {"a": 0}, k=2)
