"""The configs the manifests hand to each process are valid for that process.

edge.toml and hub.toml are loaded by the project's own settings schemas, with the environment
the container gets, so an unknown key, a wrong type or a bad value in a ConfigMap fails here.
nats.conf goes through `nats-server -t` with the pod's environment.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.settings import load_hub_settings
from edge_agent.settings import load_settings
from shared.errors import ConfigError
from tests.deploy.manifests import (
    K3S,
    OVERLAYS,
    Obj,
    config_arg,
    container,
    container_env,
    find,
    mounted_file,
    render,
    tool,
)

NODE = "edge-node-1"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No AGL_* variable of the test process leaks into the settings under test."""
    for key in list(os.environ):
        if key.startswith("AGL_"):
            monkeypatch.delenv(key)
    yield monkeypatch


def _app(overlay: str, kind: str, name: str, container_name: str) -> tuple[list[Obj], Obj, Obj]:
    objects = render(overlay)
    pod = find(objects, kind, name)["spec"]["template"]["spec"]
    return objects, pod, container(pod, container_name)


def _materialise(
    objects: list[Obj], pod: Obj, c: Obj, namespace: str, tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    path = config_arg(c)
    config = tmp_path / Path(path).name
    config.write_text(mounted_file(objects, namespace, pod, c, path), encoding="utf-8")
    env = container_env(objects, namespace, c, pod_name="pod-0", node_name=NODE)
    return config, env


AGENTS = [o for o in OVERLAYS if o != "cloud"]
HUBS = [o for o in OVERLAYS if o != "edge-site"]


@pytest.mark.parametrize("overlay", AGENTS)
def test_agent_config_loads_with_the_edge_settings(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects, pod, c = _app(overlay, "DaemonSet", "agl-agent", "agent")
    config, env = _materialise(objects, pod, c, objects[0]["metadata"]["name"], tmp_path)
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = load_settings(config)
    assert settings.device_id == NODE  # from spec.nodeName
    assert settings.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert settings.port == ports["http"]
    assert settings.hub.nats_url == "nats://nats:4222"
    assert settings.n_threads == int(c["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("overlay", HUBS)
def test_hub_config_loads_with_the_hub_settings(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects, pod, c = _app(overlay, "Deployment", "agl-hub", "hub")
    config, env = _materialise(objects, pod, c, objects[0]["metadata"]["name"], tmp_path)
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = load_hub_settings(config)
    assert settings.models, "the hub needs at least one model"
    assert settings.nats_url == "nats://nats:4222"
    args = [str(a) for a in c["args"]]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert args[args.index("--metrics-port") + 1] == str(ports["metrics"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    env_refs = {e["name"]: e.get("valueFrom", {}) for e in c.get("env", [])}
    for spec in settings.models:
        if spec.api_key_env:
            # The hub will not start without the key: it must come from a Secret, required.
            ref = env_refs[spec.api_key_env].get("secretKeyRef")
            assert ref is not None, f"{spec.api_key_env} must come from a Secret"
            assert not ref.get("optional"), f"{spec.api_key_env}: the hub cannot start without it"


def test_a_bad_key_in_a_manifest_config_fails(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check above has teeth: a typo in the rendered edge.toml is refused."""
    objects, pod, c = _app("dev", "DaemonSet", "agl-agent", "agent")
    config, _env = _materialise(objects, pod, c, "agl-dev", tmp_path)
    config.write_text(config.read_text().replace("max_queue", "max_queeu"), encoding="utf-8")
    with pytest.raises(ConfigError, match="max_queeu"):
        load_settings(config)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_config_is_valid_for_nats_server(overlay: str, tmp_path: Path) -> None:
    objects, pod, c = _app(overlay, "StatefulSet", "nats", "nats")
    namespace = objects[0]["metadata"]["name"]
    config, env = _materialise(objects, pod, c, namespace, tmp_path)
    proc = subprocess.run(
        [tool("nats-server"), "-t", "-c", str(config)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = config.read_text()
    assert "jetstream" in text and "store_dir: /data/jetstream" in text
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == "/data"


def test_leaf_node_uses_the_site_credentials_secret(tmp_path: Path) -> None:
    objects = render("edge-site")
    pod = find(objects, "StatefulSet", "nats")["spec"]["template"]["spec"]
    c = container(pod, "nats")
    text = mounted_file(objects, "agl-edge", pod, c, config_arg(c))
    assert 'credentials: "/etc/nats-creds/leaf.creds"' in text
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["creds"] == "/etc/nats-creds"
    volume = next(v for v in pod["volumes"] if v["name"] == "creds")
    secret = find(objects, "Secret", "agl-device-creds")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert set(secret["data"]) == {"leaf.creds"}


@pytest.mark.parametrize(
    ("content", "starts"),
    [
        ((K3S / "overlays/edge-site/creds/leaf.creds").read_text(encoding="utf-8"), False),
        ("", False),
        ("-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n", True),
    ],
    ids=["placeholder", "empty", "real-looking"],
)
def test_leaf_refuses_to_start_with_the_placeholder_creds(
    content: str, starts: bool, tmp_path: Path
) -> None:
    pod = find(render("edge-site"), "StatefulSet", "nats")["spec"]["template"]["spec"]
    [check] = pod["initContainers"]
    script = check["command"][-1].replace("/etc/nats-creds/", f"{tmp_path}/")
    (tmp_path / "leaf.creds").write_text(content, encoding="utf-8")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert (proc.returncode == 0) is starts, proc.stderr
    if not starts:
        assert "deploy/k3s/overlays/edge-site/creds/leaf.creds" in proc.stderr


def _toml_of(overlay: str, kind: str, name: str, container_name: str, tmp_path: Path) -> Path:
    objects, pod, c = _app(overlay, kind, name, container_name)
    config, _env = _materialise(objects, pod, c, objects[0]["metadata"]["name"], tmp_path)
    return config


@pytest.mark.parametrize(("edge", "hub"), [("dev", "dev"), ("edge-site", "cloud")])
def test_agents_escalate_only_to_models_their_hub_serves(
    edge: str, hub: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "h").mkdir()
    agent = load_settings(_toml_of(edge, "DaemonSet", "agl-agent", "agent", tmp_path / "e"))
    served = {
        m.name
        for m in load_hub_settings(
            _toml_of(hub, "Deployment", "agl-hub", "hub", tmp_path / "h")
        ).models
    }
    wanted = {agent.router.default_cloud_model, *agent.router.cloud_aliases.values()}
    assert wanted <= served, (
        f"{edge} routes to {wanted - served}, which the {hub} hub does not serve"
    )
