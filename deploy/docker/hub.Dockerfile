# syntax=docker/dockerfile:1.7
# Hub image: llama-cpp-python built with CUDA, onnxruntime-gpu (never next to the CPU
# `onnxruntime`: both own the `onnxruntime` module), on NVIDIA's CUDA + cuDNN runtime.
#
#   docker build -f deploy/docker/hub.Dockerfile -t ghcr.io/open-autoglm/hub:0.1.0 .
#   docker build … --build-arg CUDA_ARCHITECTURES=90 .     # one GPU generation: a faster build
#
# It needs an NVIDIA driver on the node and the NVIDIA container runtime (K3s: runtimeClassName
# nvidia) at run time; the build itself needs no GPU. For a CPU-only hub (dev overlay, compose
# default) run `hubctl serve` from the edge image instead.

ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
# Compute capabilities to compile kernels for: Ampere, Ada, Hopper (A100/A10, L4/L40, H100/H200).
ARG CUDA_ARCHITECTURES="80;86;89;90"
# Debian/Ubuntu packages are pinned by the base image's release, not one by one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# The driver's libcuda is not in a build container: link against the toolkit's stub.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    LIBRARY_PATH=/usr/local/cuda/lib64/stubs \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edge_agent ./edge_agent
COPY cloud_hub ./cloud_hub
COPY shared ./shared
COPY openautoglm ./openautoglm
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The `hub` extra brings llama-cpp-python, onnxruntime-gpu and httpx. The last line fails the
# build if anything pulled in the CPU `onnxruntime` distribution next to onnxruntime-gpu. The
# project's own dependencies follow pyproject.toml's bounds (DL3013 asks for pins it owns).
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" \
 && pip install ".[hub]" \
 && pip list --format=freeze | grep -i '^onnxruntime-gpu==' \
 && ! pip list --format=freeze | grep -i '^onnxruntime=='

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU}
LABEL org.opencontainers.image.title="open-autoglm hub" \
      org.opencontainers.image.description="Open-AutoGLM cloud hub: GGUF on CUDA, ONNX on CUDA, OpenAI-compatible upstreams over NATS" \
      org.opencontainers.image.licenses="Apache-2.0"
# Ubuntu 24.04 ships a user `ubuntu` with uid 1000, hence 10001 (as in the edge image).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agl \
 && useradd --system --uid 10001 --gid agl --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin agl
COPY --from=build /opt/venv /opt/venv
# Read-only root filesystem: no byte-code writes; caches (CUDA's JIT cache too) go to /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    CUDA_CACHE_PATH=/tmp/.nv/ComputeCache
USER 10001:10001
# Prometheus /metrics (`--metrics-port`); the hub serves nothing else over HTTP.
EXPOSE 9464
# /metrics opens once the models are loaded and the NATS service is subscribed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]
ENTRYPOINT ["hubctl"]
CMD ["serve", "--config", "/etc/agl/hub.toml", "--metrics-port", "9464", "--metrics-host", "0.0.0.0"]
