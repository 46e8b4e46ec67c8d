"""Dataset loaders: each real format on tiny files written here, user formats (esci, jsonl), errors,
and (when ../shared/data exists) the real datasets' counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gr_toolkit.data.loaders import dataset_names, load_dataset, parse_loader_options
from gr_toolkit.data.splits import check_no_query_leakage
from gr_toolkit.data.types import DataError
from tests.conftest import real_data


def _all_examples(d):
    """(split, query, targets, grades, negatives) for every query example."""
    out = {}
    for s in ("train", "valid", "test"):
        ex = d.split(s)
        for i, q in enumerate(ex.queries):
            out[q] = (s, ex.targets[i], None if ex.target_grades is None else ex.target_grades[i],
                      None if ex.negatives is None else ex.negatives[i], ex.weights[i])
    return out


# ---------------------------------------------------------------------------------------------- Home Depot
HD_ROWS = [
    (1, 100001, "Simpson Strong-Tie Angle", "angle bracket", 3),
    (2, 100001, "Simpson Strong-Tie Angle", "l bracket", 2.5),
    (3, 100002, "Behr Premium Deck Stain", "deck stain", 2.67),
    (4, 100003, "Caf\u00e9 Bistro Table", "deck stain", 1.33),
    (5, 100004, "Behr Semi-Transparent Stain", "Deck  Stain", 3),
    (6, 100005, "Hampton Bay Ceiling Fan", "ceiling fan", 2.33),
    (7, 100006, "Unjudged-positive Lamp", "ceiling fan", 1.0),
]


def _write_homedepot(root: Path, rows=HD_ROWS, header="id,product_uid,product_title,search_term,relevance") -> Path:
    d = root / "homedepot"
    d.mkdir(parents=True)
    lines = [header] + [",".join(f'"{v}"' if isinstance(v, str) else str(v) for v in r) for r in rows]
    (d / "train.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return root


def test_homedepot_format(tmp_path):
    root = _write_homedepot(tmp_path)
    d = load_dataset("homedepot", data_dir=root)
    assert d.protocol == "query-split" and d.bucketing == "proxy:query-length"
    assert d.catalog.ids == ["100001", "100002", "100003", "100004", "100005", "100006"]
    assert d.catalog.fields["title"][2] == "Caf\u00e9 Bistro Table"  # latin-1 decoded explicitly
    ex = _all_examples(d)
    # "Deck  Stain" and "deck stain" are one query: positives 100002 (2.67) and 100004 (3), best first
    split, targets, grades, negs, w = ex["deck stain"]
    assert targets.tolist() == [d.catalog.index_of("100004"), d.catalog.index_of("100002")]
    assert grades.tolist() == [3.0, 2.67] and w == 1.0
    assert negs.tolist() == [d.catalog.index_of("100003")]  # judged non-relevant (< 2.0)
    # "l bracket" (2.5) and "ceiling fan" (2.33) have no positive: left out and counted
    assert "l bracket" not in ex and "ceiling fan" not in ex
    dropped = sum(int(n.split(": ")[1].split()[0]) for n in d.notes if "no product at relevance" in n)
    assert dropped == 2
    check_no_query_leakage(d.train, d.valid, d.test)


def test_homedepot_thresholds_are_options(tmp_path):
    d = load_dataset("homedepot", data_dir=_write_homedepot(tmp_path), positive_threshold=2.3, negative_threshold=1.5)
    ex = _all_examples(d)
    assert "ceiling fan" in ex and "l bracket" in ex
    assert ex["ceiling fan"][3].tolist() == [d.catalog.index_of("100006")]


def test_homedepot_errors(tmp_path):
    bad = list(HD_ROWS)
    bad[3] = (4, 100003, "Table", "deck stain", "high")
    with pytest.raises(DataError, match=r"relevance.*row 4.*'high'"):
        load_dataset("homedepot", data_dir=_write_homedepot(tmp_path / "a", bad))
    with pytest.raises(DataError, match="missing column.*relevance"):
        load_dataset("homedepot", data_dir=_write_homedepot(tmp_path / "b", [r[:4] for r in HD_ROWS],
                                                            header="id,product_uid,product_title,search_term"))
    with pytest.raises(DataError, match=r"tried .*homedepot.*GR_DATA_DIR"):
        load_dataset("homedepot", data_dir=tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- Best Buy
def _write_bestbuy(root: Path, train_rows, test_rows) -> Path:
    d = root / "bestbuy_xbox"
    d.mkdir(parents=True)
    head = "user,sku,category,query,click_time,query_time"
    for name, rows in (("train.csv", train_rows), ("test.csv", test_rows)):
        lines = [head] + [f"u{i},{sku},abcat0701002,{q},2011-09-01 00:00:00,2011-09-01 00:00:00"
                          for i, (sku, q) in enumerate(rows)]
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


BB_TRAIN = [(111, "Gears  of War 3")] * 6 + [(111, "gears")] * 2 + [(222, "halo")] * 3 + [(333, "gears")]
BB_TEST = [(111, "gears of war 3")] * 2 + [(444, "gears of war 3"), (444, "kinect sports")]


def test_bestbuy_format(tmp_path):
    d = load_dataset("bestbuy", data_dir=_write_bestbuy(tmp_path, BB_TRAIN, BB_TEST), valid_share=0.0)
    assert d.protocol == "given-split" and d.bucketing == "traffic"
    assert d.catalog.ids == ["111", "222", "333", "444"]  # test-only sku 444 is retrievable
    titles = dict(zip(d.catalog.ids, d.catalog.fields["title"], strict=True))
    assert titles["111"] == "gears of war 3 | gears"  # training queries, most clicked first
    assert titles["444"] == "" and "kinect" not in " ".join(titles.values())  # no test text leaks
    assert any("1 of 4 skus have no training query" in n for n in d.notes)
    # train: one example per (query, sku) with weight = clicks
    pairs = {(q, int(t[0])): w for q, t, w in zip(d.train.queries, d.train.targets, d.train.weights, strict=True)}
    i111, i333 = d.catalog.index_of("111"), d.catalog.index_of("333")
    assert pairs[("gears of war 3", i111)] == 6 and pairs[("gears", i111)] == 2 and pairs[("gears", i333)] == 1
    # test: one example per distinct query; targets = distinct skus by clicks; grades = clicks
    ex = {q: (t, g, w) for q, t, g, w in zip(d.test.queries, d.test.targets, d.test.target_grades, d.test.weights,
                                              strict=True)}
    t, g, w = ex["gears of war 3"]
    assert t.tolist() == [i111, d.catalog.index_of("444")] and g.tolist() == [2, 1] and w == 3
    assert len(d.valid) == 0


def test_bestbuy_validation_is_carved_from_train_rows(tmp_path):
    rows = [(100 + i % 7, f"query {i % 40}") for i in range(400)]
    d = load_dataset("bestbuy", data_dir=_write_bestbuy(tmp_path, rows, rows[:20]), seed=3)
    n_train, n_valid = d.train.weights.sum(), d.valid.weights.sum()
    assert n_train + n_valid == 400 and 20 < n_valid < 90
    again = load_dataset("bestbuy", data_dir=tmp_path, seed=3)
    assert np.array_equal(again.valid.weights, d.valid.weights) and again.valid.queries == d.valid.queries


def test_bestbuy_undecodable_bytes(tmp_path):
    root = _write_bestbuy(tmp_path, BB_TRAIN, BB_TEST)
    p = root / "bestbuy_xbox" / "train.csv"
    p.write_bytes(p.read_bytes().replace(b"halo", b"h\xffalo", 1))
    with pytest.raises(DataError, match=r"train.csv.*line 10.*not valid utf-8"):
        load_dataset("bestbuy", data_dir=root)


# ---------------------------------------------------------------------------------------------- Amazon
def _write_beauty(root: Path) -> Path:
    d = root / "amazon_beauty"
    d.mkdir(parents=True)
    (d / "user_sequence.txt").write_text("U1 A B C D E\nU2 B C A\nU3 E A\n")
    (d / "idgenrec_item_textual_id_phase0.txt").write_text("A red lipstick\nB face cream\nC\nD shampoo bar\n"
                                                           "E hair dryer\nZ unused item\n")
    return root


def test_beauty_format(tmp_path):
    d = load_dataset("beauty", data_dir=_write_beauty(tmp_path), max_history=3)
    assert d.catalog.ids == ["A", "B", "C", "D", "E"]  # order of first appearance
    assert d.catalog.fields["title"] == ["red lipstick", "face cream", "", "shampoo bar", "hair dryer"]
    assert any("1 items have no text label" in n for n in d.notes)
    assert any("never occur in a sequence" in n for n in d.notes)
    assert any("exactly 2 items" in n for n in d.notes)  # U3: test only
    assert d.test.keys == ["U1", "U2", "U3"] and d.valid.keys == ["U1", "U2"]
    assert d.test.histories[0].tolist() == [1, 2, 3] and d.test.targets[0].tolist() == [4]
    assert d.valid.histories[0].tolist() == [0, 1, 2] and d.valid.targets[0].tolist() == [3]
    assert [t.tolist() for t in d.train.targets] == [[1], [2]]  # U1 prefixes; U2 (3 items) none
    assert d.bucketing == "proxy:target-popularity"


def test_beauty_duplicate_user(tmp_path):
    root = _write_beauty(tmp_path)
    (root / "amazon_beauty" / "user_sequence.txt").write_text("U1 A B C\nU1 C B A\n")
    with pytest.raises(DataError, match="duplicate user 'U1'"):
        load_dataset("beauty", data_dir=root)


def _write_games(root: Path, test_lines=None) -> Path:
    d = root / "amazon_games"
    d.mkdir(parents=True)
    (d / "Games-6k.item").write_text("item_id:token\ttitle:token_seq\n0\tHalo\n1\tGears\n2\tFable\n3\tForza\n")
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (d / "Games-6k.test.inter").write_text(head + (test_lines or "0\t0 1 2\t3\n1\t2 0 1\t3\n"))
    (d / "Games-6k.valid.inter").write_text(head + "0\t0 1\t2\n1\t2 0\t1\n")
    return root


def test_games_format(tmp_path):
    d = load_dataset("games", data_dir=_write_games(tmp_path))
    assert d.catalog.fields["title"] == ["Halo", "Gears", "Fable", "Forza"]
    assert d.test.histories[0].tolist() == [0, 1, 2] and d.test.targets[0].tolist() == [3]
    assert d.valid.histories[1].tolist() == [2, 0] and d.valid.targets[1].tolist() == [1]
    # train = every prefix of the valid history: 0 -> 1 (user 0), 2 -> 0 (user 1)
    assert [(h.tolist(), t.tolist()) for h, t in zip(d.train.histories, d.train.targets, strict=True)] == [
        ([0], [1]), ([2], [0])]
    assert not any("not their test history" in n for n in d.notes)


def test_games_unknown_item(tmp_path):
    root = _write_games(tmp_path, test_lines="0\t0 1 9\t3\n1\t2 0 1\t3\n")
    with pytest.raises(DataError, match=r"Games-6k.test.inter.*'9'.*row 2.*not in the catalog"):
        load_dataset("games", data_dir=root)


def test_scientific_format(tmp_path):
    d = tmp_path / "amazon_scientific"
    d.mkdir()
    (d / "Scientific.item2index").write_text("X1\t1\nX0\t0\nX2\t2\n")
    (d / "Scientific.user2index").write_text("U0\t0\n")
    (d / "Scientific.text").write_text("item_id:token\ttext:token_seq\nX0\tGlue. Adhesives. Gorilla. \nX1\tTape. Tapes. 3M. \n")
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (d / "Scientific.train.inter").write_text(head + "0\t0\t1\n")
    (d / "Scientific.valid.inter").write_text(head + "0\t0 1\t2\n")
    (d / "Scientific.test.inter").write_text(head + "0\t0 1 2\t0\n")
    ds = load_dataset("scientific", data_dir=tmp_path)
    assert ds.catalog.ids == ["X0", "X1", "X2"]
    assert ds.catalog.fields["title"] == ["Glue. Adhesives. Gorilla.", "Tape. Tapes. 3M.", ""]
    assert any("1 items have no text" in n for n in ds.notes)
    assert ds.test.histories[0].tolist() == [0, 1, 2] and ds.test.targets[0].tolist() == [0]
    assert ds.train.targets[0].tolist() == [1]


# ---------------------------------------------------------------------------------------------- ESCI
def _write_esci(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ex = pd.DataFrame({
        "example_id": range(9),
        "query": ["Red Shoes", "red shoes", "red shoes", "blue hat", "blue hat", "wool socks", "wool socks",
                  "zapatos", "lamp"],
        "query_id": [1, 1, 1, 2, 2, 3, 3, 4, 5],
        "product_id": ["P1", "P2", "P3", "P4", "P1", "P5", "P2", "P1", "P6"],
        "product_locale": ["us"] * 7 + ["es", "us"],
        "esci_label": ["E", "S", "I", "E", "C", "S", "I", "E", "I"],
        "small_version": [1] * 9,
        "large_version": [1] * 9,
        "split": ["train", "train", "train", "test", "test", "train", "train", "train", "test"],
    })
    pr = pd.DataFrame({
        "product_id": ["P1", "P2", "P3", "P4", "P5", "P6", "P1"],
        "product_title": ["Red running shoe", "Crimson sneaker", "Blue sock", "Blue cap", "Wool sock", "", "Zapato"],
        "product_description": [None] * 7,
        "product_bullet_point": ["b"] * 7,
        "product_brand": ["Nike", "Puma", "X", "Y", "Z", "W", "N"],
        "product_color": ["red", "red", "blue", "blue", "grey", "", "rojo"],
        "product_locale": ["us"] * 6 + ["es"],
    })
    ex.to_parquet(root / "shopping_queries_dataset_examples.parquet")
    pr.to_parquet(root / "shopping_queries_dataset_products.parquet")
    return root


def test_esci_exact_targets_grades_negatives(tmp_path):
    root = _write_esci(tmp_path / "esci")
    d = load_dataset(f"esci:{root}", valid_share=0.0)
    assert d.protocol == "query-split" and d.bucketing == "proxy:query-length"
    assert d.catalog.ids == ["P1", "P2", "P3", "P4", "P5", "P6"]  # locale us only
    assert set(d.catalog.fields) >= {"title", "description", "bullet_point", "brand", "color"}
    ex = _all_examples(d)
    split, targets, grades, negs, _ = ex["red shoes"]  # "Red Shoes" and "red shoes" are one query
    assert split == "train" and targets.tolist() == [0] and grades.tolist() == [1.0]
    assert negs.tolist() == [2]
    assert ex["blue hat"][0] == "test" and ex["blue hat"][1].tolist() == [3]
    assert "wool socks" not in ex and "lamp" not in ex  # no exact product: left out, counted
    assert any("train: 1 queries with no E product" in n for n in d.notes)
    assert any("test: 1 queries with no E product" in n for n in d.notes)
    assert any("empty title" in n for n in d.notes)


def test_esci_substitutes_and_locales(tmp_path):
    root = _write_esci(tmp_path / "esci")
    d = load_dataset(f"esci:{root}", include_substitutes=True, valid_share=0.0)
    ex = _all_examples(d)
    assert ex["red shoes"][1].tolist() == [0, 1] and ex["red shoes"][2].tolist() == [1.0, 0.1]
    assert ex["wool socks"][1].tolist() == [4]
    both = load_dataset(f"esci:{root}", locale=None, valid_share=0.0)
    assert "es/P1" in both.catalog.ids and "us/P1" in both.catalog.ids
    files = f"esci:{root / 'shopping_queries_dataset_examples.parquet'},{root / 'shopping_queries_dataset_products.parquet'}"
    assert load_dataset(files, valid_share=0.0).catalog.ids == d.catalog.ids


def test_esci_errors(tmp_path):
    root = _write_esci(tmp_path / "esci")
    pr = pd.read_parquet(root / "shopping_queries_dataset_products.parquet")
    pr[pr["product_id"] != "P4"].to_parquet(root / "shopping_queries_dataset_products.parquet")
    with pytest.raises(DataError, match=r"product_id 'P4'.*not in the catalog"):
        load_dataset(f"esci:{root}")
    ex = pd.read_parquet(root / "shopping_queries_dataset_examples.parquet")
    ex.drop(columns=["esci_label"]).to_parquet(root / "shopping_queries_dataset_examples.parquet")
    with pytest.raises(DataError, match="missing column.*esci_label"):
        load_dataset(f"esci:{root}")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"esci:{tmp_path / 'nothing'}")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("esci")


# ---------------------------------------------------------------------------------------------- JSONL
def _write_jsonl(root: Path, items, examples) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.jsonl").write_text("\n".join(json.dumps(i) if isinstance(i, dict) else i for i in items) + "\n")
    (root / "examples.jsonl").write_text("\n".join(json.dumps(e) if isinstance(e, dict) else e for e in examples) + "\n")
    return root


ITEMS = [{"id": "a", "title": "Red shoes", "brand": "Nike", "attributes": {"category": "shoes", "price": 50}},
         {"id": "b", "title": "Blue hat"}, {"id": 3, "title": ""}]


def test_jsonl_query_with_splits(tmp_path):
    root = _write_jsonl(tmp_path / "shop", ITEMS, [
        {"query": "red shoes", "targets": ["a"], "weight": 10, "split": "train", "negatives": ["b"]},
        {"query": "hat", "target": "b", "split": "valid"},
        {"query": "thing", "targets": ["3", "a"], "grades": [2, 1], "split": "test"},
    ])
    d = load_dataset(f"jsonl:{root}")
    assert d.catalog.ids == ["a", "b", "3"] and d.catalog.fields["brand"] == ["Nike", "", ""]
    assert d.catalog.attributes["price"] == ["50", "", ""]
    assert any("1 items have an empty title" in n for n in d.notes)
    assert d.protocol == "given-split" and d.bucketing == "traffic"
    assert d.train.weights.tolist() == [10.0] and d.train.negatives[0].tolist() == [1]
    assert d.test.targets[0].tolist() == [2, 0] and d.test.target_grades[0].tolist() == [2.0, 1.0]
    assert d.valid.queries == ["hat"]


def test_jsonl_query_without_splits_is_query_level(tmp_path):
    ex = [{"query": f"q{i % 30}", "targets": ["a"]} for i in range(90)]
    d = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 's', ITEMS, ex)}", seed=1)
    assert d.protocol == "query-split" and d.bucketing == "proxy:query-length"
    check_no_query_leakage(d.train, d.valid, d.test)
    assert len(d.train) + len(d.valid) + len(d.test) == 90


def test_jsonl_sequences_and_histories(tmp_path):
    d = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 's', ITEMS, [{'user': 'u', 'sequence': ['a', 'b', '3', 'a']}])}")
    assert d.protocol == "leave-one-out" and d.test.targets[0].tolist() == [0]
    assert d.test.histories[0].tolist() == [0, 1, 2] and d.train.targets[0].tolist() == [1]
    h = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'h', ITEMS, [{'history': ['a'], 'targets': ['b'], 'split': 'test'}])}")
    assert h.kind == "history" and h.test.histories[0].tolist() == [0]


@pytest.mark.parametrize("items,examples,pattern", [
    (ITEMS, [{"query": "x", "targets": ["zzz"]}], r"examples.jsonl: line 1: targets entry 'zzz' is not an item"),
    (ITEMS + [{"id": "a", "title": "dup"}], [{"query": "x", "targets": ["a"]}], "duplicate id 'a'"),
    ([{"id": "a"}], [{"query": "x", "targets": ["a"]}], "line 1: missing field 'title'"),
    (ITEMS, ['{"query": "x", "targets": ["a"]', ], "line 1 is not valid JSON"),
    (ITEMS, [{"query": "x", "targets": ["a"]}, {"history": ["a"], "targets": ["b"]}], "line 2: a 'history' example"),
    (ITEMS, [{"query": "x", "targets": []}], "non-empty list"),
    (ITEMS, [{"query": "x", "targets": ["a"], "split": "train"}, {"query": "y", "targets": ["a"]}], "line 2: missing 'split'"),
    (ITEMS, [{"query": "x", "targets": ["a"], "weight": -1}], "positive number"),
    (ITEMS, [{"history": ["a"], "targets": ["b"]}], "need a 'split'"),
    (ITEMS, ['{"query": "x", "targets": ["a"], "weight": Infinity}'], "finite positive number, got inf"),
    (ITEMS, ['{"query": "x", "targets": ["a"], "weight": NaN}'], "finite positive number, got nan"),
    (ITEMS, ['{"query": "x", "targets": ["a", "b"], "grades": [1, Infinity]}'], "one finite number per target"),
    (ITEMS, [{"query": "x", "targets": ["a", "a"]}], r"line 1: a target is listed twice in \['a', 'a'\]"),
    (ITEMS, [{"query": "x", "targets": ["a"], "wieght": 3}], "line 1: unknown field\\(s\\) 'wieght' in a query example"),
])
def test_jsonl_errors(tmp_path, items, examples, pattern):
    with pytest.raises(DataError, match=pattern):
        load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'bad', items, examples)}")


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert {"synthetic", "homedepot", "bestbuy", "beauty", "games", "scientific", "esci:PATH", "jsonl:PATH"} <= set(
        dataset_names())
    with pytest.raises(DataError, match="unknown dataset 'amazon'.*valid names: synthetic"):
        load_dataset("amazon")
    with pytest.raises(DataError, match="only esci, jsonl take"):
        load_dataset("beauty:/x")
    with pytest.raises(TypeError):
        load_dataset("synthetic", not_an_option=1)
    assert parse_loader_options("beauty", {"max_history": "50"}) == {"max_history": 50}
    with pytest.raises(DataError, match="no option 'max_hist'"):
        parse_loader_options("beauty", {"max_hist": "5"})


# ---------------------------------------------------------------------------------------------- real data
@real_data
def test_real_homedepot(real_data_dir):
    d = load_dataset("homedepot", data_dir=real_data_dir)
    assert len(d.catalog) == 54_667
    check_no_query_leakage(d.train, d.valid, d.test)
    n_q = len(d.train) + len(d.valid) + len(d.test)
    n_pos = sum(len(t) for s in (d.train, d.valid, d.test) for t in s.targets)
    # README: 9,716 queries / 34,338 pairs with a positive; a few differ only in case or spacing.
    assert 9_700 <= n_q <= 9_716 and 34_300 <= n_pos <= 34_338
    assert any("no product at relevance" in n for n in d.notes)
    assert 0.75 < len(d.train) / n_q < 0.85


@real_data
def test_real_bestbuy(real_data_dir):
    d = load_dataset("bestbuy", data_dir=real_data_dir)
    assert len(d.catalog) == 413
    assert d.train.weights.sum() + d.valid.weights.sum() == 33_892 and d.test.weights.sum() == 8_473
    assert all(q == " ".join(q.lower().split()) for q in d.test.queries)


@real_data
def test_real_beauty(real_data_dir):
    d = load_dataset("beauty", data_dir=real_data_dir)
    assert len(d.catalog) == 12_101 and len(d.test) == len(d.valid) == 22_363
    assert len(d.train) == 198_502 - 3 * 22_363  # every position but the first and the last two
    assert max(len(h) for h in d.test.histories) == 20


@real_data
def test_real_games_and_scientific(real_data_dir):
    g = load_dataset("games", data_dir=real_data_dir)
    assert len(g.catalog) == 16_859 and len(g.test) == len(g.valid) == 50_546
    assert not any("not their test history" in n for n in g.notes)
    s = load_dataset("scientific", data_dir=real_data_dir)
    assert len(s.catalog) == 4_385 and len(s.test) == len(s.valid) == 8_442


def test_bestbuy_cut_last_row_is_named(tmp_path):
    root = _write_bestbuy(tmp_path, BB_TRAIN, BB_TEST)
    path = root / "bestbuy_xbox" / "train.csv"
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind(",abcat")])  # the download stopped inside the last row
    with pytest.raises(DataError, match=r"train.csv: line 13 has 2 field\(s\), the header has 6 .*cut or malformed"):
        load_dataset("bestbuy", data_dir=root)
