#!/usr/bin/env bash
# Install gr-toolkit with its test extras into ./.venv and run the test suite.
# pytest exits non-zero when no tests are collected (exit code 5), so an empty run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch is pinned to the CPU build in pyproject.toml; pip (not uv/poetry) finds it on local disk.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bm25]'
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
