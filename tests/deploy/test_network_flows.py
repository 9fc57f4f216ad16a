"""The NetworkPolicies allow exactly the flows of the design, and deny the rest.

Pods are taken from the rendered workloads (their template labels), so a renamed label or a
lost policy shows up here as a flow that is open or closed when it should not be.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import Obj, pod_labels, render
from tests.deploy.netpol import Peer, allowed

PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
TRAEFIK = Peer("kube-system", {"app.kubernetes.io/name": "traefik"})
JAEGER = Peer("observability", {"app.kubernetes.io/name": "jaeger"})
LOKI = Peer("observability", {"app.kubernetes.io/name": "loki"})
KUBE_DNS = Peer("kube-system", {"k8s-app": "kube-dns"})
APP = Peer("shop-app", {"open-autoglm.io/agent-client": "true"})
STRANGER = Peer("shop-app", {"app": "something-else"})
INTERNET = Peer(None)
PRIVATE_NET = Peer(None, ip="10.1.2.3")


def _pods(objects: list[Obj]) -> dict[str, Peer]:
    pods = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            labels = pod_labels(obj)
            pods[labels["app.kubernetes.io/name"]] = Peer(obj["metadata"]["namespace"], labels)
    return pods


def _policies(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


# (source, destination, port, allowed?) with pods named by app.kubernetes.io/name.
FLOWS = {
    "dev": [
        ("agl-agent", "nats", 4222, True),
        ("agl-hub", "nats", 4222, True),
        (PROMETHEUS, "agl-agent", 8080, True),
        (PROMETHEUS, "agl-hub", 9464, True),
        (APP, "agl-agent", 8080, True),
        ("agl-agent", KUBE_DNS, 53, True),
        (STRANGER, "agl-agent", 8080, False),
        ("agl-agent", "agl-hub", 9464, False),
        ("nats", "agl-agent", 8080, False),
        ("agl-hub", INTERNET, 443, False),
        ("agl-agent", INTERNET, 443, False),
        (INTERNET, "nats", 4222, False),
    ],
    "cloud": [
        ("agl-hub", "nats", 4222, True),
        ("agl-hub", "otel-collector", 4317, True),
        ("nats", "nats", 6222, True),
        (INTERNET, "nats", 7422, True),
        (PROMETHEUS, "agl-hub", 9464, True),
        (PROMETHEUS, "otel-collector", 8889, True),
        ("otel-collector", JAEGER, 4317, True),
        ("otel-collector", LOKI, 3100, True),
        (TRAEFIK, "otel-collector", 4318, True),
        ("agl-hub", INTERNET, 443, True),
        ("agl-hub", PRIVATE_NET, 443, False),
        (INTERNET, "nats", 4222, False),
        (INTERNET, "agl-hub", 9464, False),
        ("otel-collector", "nats", 4222, False),
        ("nats", INTERNET, 443, False),
        (STRANGER, "otel-collector", 4318, False),
    ],
    "edge-site": [
        ("agl-agent", "nats", 4222, True),
        ("agl-agent", "otel-agent", 4318, True),
        ("nats", INTERNET, 7422, True),
        ("otel-agent", INTERNET, 443, True),
        (PROMETHEUS, "agl-agent", 8080, True),
        (APP, "agl-agent", 8080, True),
        ("agl-agent", INTERNET, 7422, False),
        ("agl-agent", INTERNET, 443, False),
        ("nats", INTERNET, 4222, False),
        (INTERNET, "nats", 4222, False),
        (INTERNET, "agl-agent", 8080, False),
        (STRANGER, "agl-agent", 8080, False),
    ],
}


@pytest.mark.parametrize(
    ("overlay", "src", "dst", "port", "expected"),
    [(overlay, *flow) for overlay, flows in FLOWS.items() for flow in flows],
    ids=lambda v: v if isinstance(v, str | int | bool) else getattr(v, "namespace", None) or "ext",
)
def test_flow(overlay: str, src: str | Peer, dst: str | Peer, port: int, expected: bool) -> None:
    objects = render(overlay)
    pods = _pods(objects)
    source = pods[src] if isinstance(src, str) else src
    dest = pods[dst] if isinstance(dst, str) else dst
    verdict = allowed(_policies(objects), source, dest, port)
    assert verdict is expected, f"{overlay}: {src} -> {dst}:{port} should be {expected}"


@pytest.mark.parametrize("overlay", sorted(FLOWS))
def test_every_pod_of_the_overlay_is_covered_by_a_flow(overlay: str) -> None:
    named = {p for flow in FLOWS[overlay] for p in flow[:2] if isinstance(p, str)}
    assert set(_pods(render(overlay))) <= named


def test_evaluator_denies_without_policies_only_what_policies_deny() -> None:
    a = Peer("ns", {"app": "a"})
    b = Peer("ns", {"app": "b"})
    assert allowed([], a, b, 80)
    deny = {
        "metadata": {"namespace": "ns", "name": "d"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    assert not allowed([deny], a, b, 80)
