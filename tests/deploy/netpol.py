"""A small NetworkPolicy evaluator: may pod A open a TCP connection to pod B on port P?

It follows the Kubernetes semantics the manifests use: a pod selected by no policy of a
direction is open in that direction; once selected, a flow needs an egress rule on the source
side and an ingress rule on the destination side. ipBlock peers match only addresses outside
the cluster (what they are meant for); named ports are refused, so every rule says its number.

    allowed(policies, Peer("agl-dev", agent_labels), Peer("agl-dev", nats_labels), 4222)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    """One end of a flow: a pod (namespace + labels) or, with ``namespace=None``, an address."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = "203.0.113.10"  # TEST-NET-3: an address outside the cluster


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against a label set (``{}`` matches everything)."""
    selector = selector or {}
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _ns_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(rule_peer: Mapping[str, Any], other: Peer, policy_ns: str) -> bool:
    if "ipBlock" in rule_peer:
        if other.namespace is not None:
            return False
        block = rule_peer["ipBlock"]
        addr = ipaddress.ip_address(other.ip)
        if addr not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(addr in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selector_matches(rule_peer["namespaceSelector"], _ns_labels(other.namespace)):
            return False
    elif other.namespace != policy_ns:
        return False
    return selector_matches(rule_peer.get("podSelector"), other.labels)


def _port_matches(ports: list[Mapping[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    for entry in ports:
        number = entry.get("port")
        assert number is None or isinstance(number, int), f"named port {number!r}: use numbers"
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if number is None or number <= port <= entry.get("endPort", number):
            return True
    return False


def _side_allows(
    policies: list[dict[str, Any]], subject: Peer, other: Peer, port: int, direction: str
) -> bool:
    if subject.namespace is None:
        return True  # outside the cluster: no policy applies there
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == subject.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"].get("podSelector"), subject.labels)
    ]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            if not _port_matches(rule.get("ports"), port):
                continue
            peers = rule.get(peers_key)
            if not peers or any(
                _peer_matches(p, other, policy["metadata"]["namespace"]) for p in peers
            ):
                return True
    return False


def allowed(policies: list[dict[str, Any]], src: Peer, dst: Peer, port: int) -> bool:
    """Whether ``src`` may connect to ``dst`` on TCP ``port``."""
    return _side_allows(policies, src, dst, port, "Egress") and _side_allows(
        policies, dst, src, port, "Ingress"
    )
