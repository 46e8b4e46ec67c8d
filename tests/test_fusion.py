import numpy as np
import pytest

from gr_toolkit.baselines.fusion import normalize_scores, rrf, score_fusion


def _runs():
    # two rows; run A ranks 1,2,3 / 4,5,-; run B ranks 3,1 / 6,4
    a = (np.array([[1, 2, 3], [4, 5, -1]]), np.array([[3.0, 2.0, 1.0], [10.0, 0.0, -np.inf]]))
    b = (np.array([[3, 1], [6, 4]]), np.array([[0.9, 0.5], [2.0, 1.0]]))
    return a, b


def test_rrf_hand_computed():
    a, b = _runs()
    items, scores = rrf([a, b], k=3, c=60)
    # row 0: item1 = 1/61 + 1/62, item3 = 1/63 + 1/61, item2 = 1/62
    assert items[0].tolist() == [1, 3, 2]
    np.testing.assert_allclose(scores[0], [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62])
    # row 1: item4 = 1/61 + 1/62 best, then item6 (1/61), then item5 (1/62)
    assert items[1].tolist() == [4, 6, 5]


def test_rrf_weights_and_padding():
    a, b = _runs()
    items, _ = rrf([a, b], k=5, weights=[0.0, 1.0])
    # only run B counts: row 0 -> 3, 1, then A-only items with zero weight (ties by id)
    assert items[0][:2].tolist() == [3, 1]
    # row 1 has only 3 distinct items: the rest stay empty
    assert items[1].tolist()[3:] == [-1, -1]


def test_minmax_score_fusion_hand_computed():
    a, b = _runs()
    items, scores = score_fusion([a, b], k=3, norm="minmax")
    # row 0: A minmax -> 1:1, 2:.5, 3:0 ; B -> 3:1, 1:0  => 1:1, 3:1, 2:.5 ; tie broken by lower id
    assert items[0].tolist() == [1, 3, 2]
    np.testing.assert_allclose(scores[0], [1.0, 1.0, 0.5])


def test_zscore_normalisation_ignores_empty_slots():
    items = np.array([[1, 2, -1]])
    z = normalize_scores(items, np.array([[2.0, 0.0, -np.inf]]), "zscore")
    np.testing.assert_allclose(z, [[1.0, -1.0, 0.0]])


def test_bad_runs_raise():
    a, b = _runs()
    with pytest.raises(ValueError, match="rows"):
        rrf([a, (b[0][:1], b[1][:1])])
    with pytest.raises(ValueError, match="weights"):
        rrf([a, b], weights=[1.0])
    with pytest.raises(ValueError, match="normalisation"):
        score_fusion([a], norm="rank")
