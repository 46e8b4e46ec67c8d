from dataclasses import dataclass, field

import pytest

from gr_toolkit.config import ConfigError, from_dict, load_yaml, parse_cli_overrides, with_overrides


@dataclass
class Cfg:
    k: int = 8
    splitter: str = "fast"
    lr: float = 1e-3
    exact: bool = False
    ks: list[int] = field(default_factory=lambda: [5, 10])
    limit: int | None = None


def test_cli_overrides_are_parsed_and_coerced():
    ov = parse_cli_overrides(["--k", "16", "--exact", "--ks=1,2,3", "--limit", "none", "--lr", "0.5"])
    assert ov == {"k": "16", "exact": "true", "ks": "1,2,3", "limit": "none", "lr": "0.5"}
    cfg = with_overrides(Cfg(), ov)
    assert cfg == Cfg(k=16, exact=True, ks=[1, 2, 3], limit=None, lr=0.5)


def test_dash_names_map_to_underscores():
    assert parse_cli_overrides(["--exact-below", "100"]) == {"exact_below": "100"}


def test_unknown_field_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown field.*bogus.*valid: exact, k, ks, limit, lr, splitter"):
        with_overrides(Cfg(), {"bogus": "1"})


def test_bad_value_names_field_and_value():
    with pytest.raises(ConfigError, match=r"k: expected int, got 'eight'"):
        from_dict(Cfg, {"k": "eight"})
    with pytest.raises(ConfigError, match="expected a boolean"):
        from_dict(Cfg, {"exact": "maybe"})


def test_positional_garbage_is_rejected():
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        parse_cli_overrides(["oops"])


def test_yaml_round_trip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("k: 4\nsplitter: exact\nks: [1, 50]\n")
    assert load_yaml(Cfg, p) == Cfg(k=4, splitter="exact", ks=[1, 50])
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(Cfg, tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(Cfg, tmp_path / "bad.yaml")
