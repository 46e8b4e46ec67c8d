import json
import math

import numpy as np
import pytest

from gr_toolkit.identifiers.sandglass import (
    diagnose,
    entropy_bits,
    gini,
    is_sandglass,
    most_concentrated_middle_level,
    verdict,
    write_report,
)

# Hand-made table: level 0 over C=2 (counts 3,1), level 1 over C=4 (1,1,1,1), level 2 over C=4 (4,0,0,0).
HAND = np.array([[0, 0, 0], [0, 1, 0], [0, 2, 0], [1, 3, 0]])


def test_hand_computed_level_statistics():
    t = diagnose(HAND, [2, 4, 4])
    l0, l1, l2 = t.levels
    # level 0: p = (3/4, 1/4)
    assert l0.entropy == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert l0.norm_entropy == pytest.approx(l0.entropy / 1.0)
    assert l0.gini == pytest.approx(0.25)  # ((2*1-3)*1 + (2*2-3)*3) / (2*4)
    assert l0.std == pytest.approx(1.0)
    assert l0.top1_share == pytest.approx(0.75) and l0.top10_share == pytest.approx(1.0)
    assert l0.used_tokens == 2 and l0.path_sparsity == pytest.approx(1.0)
    # level 1: uniform over 4
    assert l1.entropy == pytest.approx(2.0) and l1.norm_entropy == pytest.approx(1.0)
    assert l1.gini == pytest.approx(0.0) and l1.top1_share == pytest.approx(0.25)
    assert l1.used_prefixes == 4 and l1.possible_prefixes == 8 and l1.path_sparsity == pytest.approx(0.5)
    # level 2: everything on one entry of 4 -> Gini (2*4-5)*4 / (4*4) = 0.75
    assert l2.gini == pytest.approx(0.75) and l2.entropy == pytest.approx(0.0)
    assert l2.used_tokens == 1 and l2.top1_share == 1.0
    assert l2.path_sparsity == pytest.approx(4 / 32)
    assert t.collision_rate == 0.0 and t.max_collision_group == 1


def test_collision_rate_counts_items_sharing_a_full_code():
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 1]])
    t = diagnose(codes, 2)
    assert t.collision_rate == pytest.approx(3 / 5)
    assert t.n_colliding_items == 3 and t.max_collision_group == 3


def test_absent_entries_are_not_counted():
    codes = np.array([[0, -1], [1, 0], [1, 1], [0, -1]])
    t = diagnose(codes, [2, 2])
    assert t.levels[1].n_items == 2 and t.levels[1].top1_share == pytest.approx(0.5)
    assert t.levels[0].n_items == 4


def test_gini_and_entropy_edge_cases():
    assert gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 9])) == pytest.approx(2 / 3)
    assert entropy_bits(np.array([0, 0])) == 0.0
    with pytest.raises(ValueError, match="outside its codebook"):
        diagnose(np.array([[3]]), 2)


def _sandglass_codes():
    # level 0 uniform over 4, level 1 all on entry 0 of 4, level 2 uniform over 4
    i = np.arange(64)
    return np.stack([i % 4, np.zeros(64, dtype=int), (i // 4) % 4], axis=1)


def test_sandglass_rule():
    t = diagnose(_sandglass_codes(), 4)
    assert is_sandglass(t)
    assert most_concentrated_middle_level(t) == 1
    assert "PRESENT" in verdict(t)
    even = np.stack([np.arange(64) % 4, (np.arange(64) // 4) % 4, (np.arange(64) // 16) % 4], axis=1)
    t2 = diagnose(even, 4)
    assert not is_sandglass(t2) and "ABSENT" in verdict(t2)
    with pytest.raises(ValueError, match="no middle level"):
        most_concentrated_middle_level(diagnose(even[:, :2], 4))


def test_write_report(tmp_path):
    t = diagnose(_sandglass_codes(), 4)
    j, m = write_report(tmp_path, {"before": t}, extra={"command": "x --y"})
    data = json.loads(j.read_text())
    assert data["tables"]["before"]["is_sandglass"] is True
    assert data["tables"]["before"]["levels"][1]["top1_share"] == 1.0
    assert "`x --y`" in m.read_text() and "| 1 | 4 | 64 | 1 |" in m.read_text()


def test_diagnose_index_works_for_trees_and_rq_tokens():
    from gr_toolkit.data.types import Catalog
    from gr_toolkit.identifiers.codes import CodeIndex
    from gr_toolkit.identifiers.sandglass import diagnose_index

    # a 2-level tree: nodes 0,1 at depth 0; leaves 2..5 at depth 1 (children 2,3 of 0 and 4,5 of 1)
    tree = CodeIndex(
        scheme="t", codes=np.array([[0, 2], [0, 3], [1, 4], [1, 5]]), lengths=np.array([2, 2, 2, 2]), vocab_size=6,
        token_parent=np.array([-1, -1, 0, 0, 1, 1]), token_level=np.array([0, 0, 1, 1, 1, 1]),
        catalog_fingerprint=Catalog("c", ["a", "b", "c", "d"]).fingerprint(),
    )
    t = diagnose_index(tree)
    assert [s.codebook for s in t.levels] == [2, 4]
    assert t.levels[0].gini == 0.0 and t.levels[1].top1_share == 0.25
    # per-level RQ tokens with level offsets, interleaved level ids: same table as the raw codes
    from gr_toolkit.identifiers.rq_tokens import assemble

    lay = assemble(HAND, [2, 4, 4])
    idx = CodeIndex(
        scheme="rq", codes=lay.codes, lengths=lay.lengths, vocab_size=lay.vocab_size,
        token_parent=lay.token_parent, token_level=lay.token_level,
        catalog_fingerprint=Catalog("c", ["a", "b", "c", "d"]).fingerprint(),
    )
    assert diagnose_index(idx).to_dict() == diagnose(HAND, [2, 4, 4]).to_dict()
