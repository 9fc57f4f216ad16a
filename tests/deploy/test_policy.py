"""What a careful SRE checks in every rendered manifest, for every overlay.

Each workload: liveness and readiness probes, CPU and memory requests and limits, the
`restricted` Pod Security profile (non-root, read-only root filesystem with explicit writable
volumes, no privilege escalation, every capability dropped, RuntimeDefault seccomp, only the
volume types the profile allows). Each namespace: labelled for Pod Security admission and
closed by a default-deny NetworkPolicy. Each image: pinned by tag (never `latest`) or digest.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    ROOT,
    Obj,
    container,
    find,
    kind_name,
    pod_specs,
    render,
)

#: Volume types the `restricted` Pod Security profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
OUR_IMAGES = ("ghcr.io/open-autoglm/edge-agent", "ghcr.io/open-autoglm/hub")


def _containers(pod: Obj) -> list[tuple[str, Obj]]:
    return [("container", c) for c in pod["containers"]] + [
        ("initContainer", c) for c in pod.get("initContainers", [])
    ]


def pod_violations(obj: Obj, pod: Obj) -> list[str]:
    """Every way a pod spec falls short of the policy, as readable lines."""
    where = kind_name(obj)
    out = []
    pod_sc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{where}: {key} is set")
    if pod.get("automountServiceAccountToken") is not False:
        out.append(f"{where}: mounts a service account token it does not use")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"{where}: volume {volume['name']} is {kinds}, not allowed by restricted")
    for role, c in _containers(pod):
        name = f"{where} {role} {c['name']}"
        sc = c.get("securityContext", {})
        if role == "container":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    out.append(f"{name}: no {probe}")
        resources = c.get("resources", {})
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in resources.get(part, {}):
                    out.append(f"{name}: no {part}.{res}")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: does not drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{name}: runs as uid 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile is not RuntimeDefault")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port['hostPort']}")
        if not image_is_pinned(c.get("image", "")):
            out.append(f"{name}: image {c.get('image')!r} is not pinned by tag or digest")
        if c.get("image", "").startswith(OUR_IMAGES):
            # Python writes temporary files; with a read-only root it needs a writable /tmp.
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            tmp = mounts.get("/tmp")
            if tmp is None or tmp.get("readOnly"):
                out.append(f"{name}: no writable /tmp volume under a read-only root")
    return out


def image_is_pinned(image: str) -> bool:
    """``repo:tag`` (tag not latest) or ``repo@sha256:…``."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_meets_the_policy(overlay: str) -> None:
    violations = [v for obj, pod in pod_specs(render(overlay)) for v in pod_violations(obj, pod)]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespace_is_restricted_and_denies_by_default(overlay: str) -> None:
    objects = render(overlay)
    for ns in (o for o in objects if o["kind"] == "Namespace"):
        name = ns["metadata"]["name"]
        labels = ns["metadata"].get("labels", {})
        for mode in ("enforce", "audit", "warn"):
            assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", (name, mode)
        deny = [
            p
            for p in objects
            if p["kind"] == "NetworkPolicy"
            and p["metadata"]["namespace"] == name
            and p["spec"].get("podSelector") == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
        ]
        assert deny, f"namespace {name} has no default-deny NetworkPolicy"


def test_policy_catches_what_it_should() -> None:
    """The checker itself: a bare container fails on every count."""
    obj = {"kind": "Deployment", "metadata": {"name": "bad", "namespace": "x"}}
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "image": "ghcr.io/open-autoglm/hub:latest"}],
    }
    text = "\n".join(pod_violations(obj, pod))
    for expected in (
        "hostNetwork",
        "service account token",
        "hostPath",
        "no livenessProbe",
        "no readinessProbe",
        "no limits.memory",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "drop ALL",
        "runAsNonRoot",
        "seccompProfile",
        "not pinned",
        "writable /tmp",
    ):
        assert expected in text, expected


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("nats:2.15.1-alpine", True),
        ("registry:5000/team/app:1.2", True),
        (f"nats@sha256:{'a' * 64}", True),
        ("nats", False),
        ("nats:latest", False),
        ("registry:5000/team/app", False),
    ],
)
def test_image_pinning_rule(image: str, pinned: bool) -> None:
    assert image_is_pinned(image) is pinned


def test_project_images_carry_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    for overlay in OVERLAYS:
        for _obj, pod in pod_specs(render(overlay)):
            for c in pod["containers"]:
                if c["image"].startswith(OUR_IMAGES):
                    assert c["image"].endswith(f":{version}"), (overlay, c["image"])
    compose = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    for image in re.findall(r"image: (ghcr\.io/open-autoglm/\S+)", compose):
        assert image.endswith(f":{version}"), image


def test_cloud_hub_runs_on_gpu_nodes() -> None:
    objects = render("cloud")
    hub = find(objects, "Deployment", "agl-hub")["spec"]["template"]["spec"]
    assert hub["runtimeClassName"] == "nvidia"
    limits = container(hub, "hub")["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in hub["tolerations"])
    terms = hub["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.present"
    assert container(hub, "hub")["image"].startswith("ghcr.io/open-autoglm/hub:")


def test_dev_is_cpu_only() -> None:
    for _obj, pod in pod_specs(render("dev")):
        assert "runtimeClassName" not in pod
        for c in pod["containers"]:
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
            assert not c["image"].startswith("ghcr.io/open-autoglm/hub")


def test_cloud_nats_is_a_three_node_jetstream_cluster_with_leafnodes() -> None:
    objects = render("cloud")
    nats = find(objects, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    [claim] = nats["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    ports = {
        p["name"]: p["containerPort"]
        for p in container(nats["spec"]["template"]["spec"], "nats")["ports"]
    }
    assert ports == {"client": 4222, "monitor": 8222, "cluster": 6222, "leafnodes": 7422}
    for name in ("nats", "agl-hub"):
        pdb = find(objects, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_edge_site_runs_agents_on_edge_nodes_only() -> None:
    objects = render("edge-site")
    for name in ("agl-agent", "otel-agent"):
        pod = find(objects, "DaemonSet", name)["spec"]["template"]["spec"]
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        keys = {t["matchExpressions"][0]["key"] for t in terms}
        assert keys == {
            "open-autoglm.io/edge-device",
            "node-role.kubernetes.io/edge",
            "openyurt.io/is-edge-worker",
        }
        assert {t["key"] for t in pod["tolerations"]} >= {"node-role.kubernetes.io/edge"}
    agent = find(objects, "DaemonSet", "agl-agent")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(agent, "agent")["volumeMounts"]}
    assert mounts["model-cache"]["mountPath"] == "/var/cache/agl/models"


def test_collector_config_is_generated_from_the_project_file_not_copied() -> None:
    source = (DEPLOY / "otel-collector.yaml").read_text(encoding="utf-8")
    for overlay, workload in (("cloud", "Deployment"), ("edge-site", "DaemonSet")):
        objects = render(overlay)
        assert find(objects, "ConfigMap", "otel-collector-config")["data"]["config.yaml"] == source
        kind = "otel-collector" if workload == "Deployment" else "otel-agent"
        pod = find(objects, workload, kind)["spec"]["template"]["spec"]
        args = container(pod, "otel-collector")["args"]
        assert args[0] == "--config=/etc/otelcol/config.yaml", args
    copies = [
        p
        for p in (DEPLOY / "k3s").rglob("*")
        if p.is_file() and p.read_text(encoding="utf-8", errors="replace") == source
    ]
    assert not copies, f"hand-made copies of deploy/otel-collector.yaml: {copies}"
