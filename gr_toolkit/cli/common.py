"""Helpers shared by the CLI command modules (not a command itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gr_toolkit.config import ConfigError


def read_yaml_mapping(path: str | Path, expected: str = "a mapping") -> dict[str, Any]:
    """The top-level mapping of a YAML config file (an empty file is ``{}``).

    Raises ``ConfigError`` naming the file when it is missing, not YAML, or not ``expected`` at the top level.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected} at the top level")
    return data
