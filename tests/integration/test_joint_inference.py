"""Sedna-style joint inference over real NATS: hard rows of an edge classifier go to the hub's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cloud_hub.settings import HubModelSpec
from tests.fixtures.agents import edge, run_agent
from tests.fixtures.calls import metric
from tests.fixtures.classifiers import digits, export_onnx, gaussian_nb, svc
from tests.fixtures.hubs import hub_in_thread, hub_settings
from tests.fixtures.nats import NatsServer


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    x, y = digits()
    out = tmp_path_factory.mktemp("joint")
    edge = export_onnx(gaussian_nb(x[:1200], y[:1200]), x, out / "edge.onnx")
    hub = export_onnx(svc(x[:1200], y[:1200]), x, out / "hub.onnx")
    return edge, hub, x[1200:1500], y[1200:1500]


@pytest.fixture()
def hub_on_nats(models, nats_server: NatsServer) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real nats-server and a hub serving the strong ONNX model, on a background loop."""
    _, hub_path, _, _ = models
    spec = HubModelSpec(
        name="digits-big", backend="onnx", path=hub_path, labels=[str(i) for i in range(10)]
    )
    with hub_in_thread(hub_settings(nats_server.url, spec)):
        yield nats_server.url


def test_hard_rows_escalate_and_beat_edge_only(models, hub_on_nats: str) -> None:  # type: ignore[no-untyped-def]
    edge_path, _, x, y = models
    extra = [
        {
            "id": "digits",
            "path": str(edge_path),
            "task": "classify",
            "labels": [str(i) for i in range(10)],
            "hard_example": {
                "method": "cross_entropy",
                "threshold": 0.9,
                "cloud_model": "digits-big",
            },
        }
    ]
    with edge(hub_on_nats, extra_models=extra) as agent:
        resp = httpx.post(
            f"{agent.v1}/classify", json={"model": "digits", "input": x.tolist()}, timeout=30
        )
        assert resp.status_code == 200
        assert resp.headers["x-agl-reason"] == "confidence"
        rows = resp.json()["data"]
        escalated = [r for r in rows if r["tier"] == "cloud"]
        assert 0 < len(escalated) < len(rows)
        joint_acc = np.mean([r["label"] == str(t) for r, t in zip(rows, y, strict=True)])

    with run_agent(extra_models=[{**extra[0], "hard_example": None}]) as edge_only:
        rows = httpx.post(
            f"{edge_only.v1}/classify", json={"model": "digits", "input": x.tolist()}
        ).json()["data"]
        edge_acc = np.mean([r["label"] == str(t) for r, t in zip(rows, y, strict=True)])
        assert all(r["tier"] == "edge" for r in rows)
    assert joint_acc > edge_acc


def test_hard_rows_stay_local_marked_fallback_without_a_hub(
    models, nats_server: NatsServer
) -> None:  # type: ignore[no-untyped-def]
    edge_path, _, x, _ = models
    extra = [
        {
            "id": "digits",
            "path": str(edge_path),
            "task": "classify",
            # the rule that escalates some of these rows in the test above
            "hard_example": {
                "method": "cross_entropy",
                "threshold": 0.9,
                "cloud_model": "digits-big",
            },
        }
    ]
    with edge(nats_server.url, extra_models=extra) as agent:  # NATS is up, no hub serves
        resp = httpx.post(
            f"{agent.v1}/classify", json={"model": "digits", "input": x.tolist()}, timeout=30
        )
        assert resp.status_code == 200
        assert resp.headers["x-agl-tier"] == "edge"
        assert resp.headers["x-agl-reason"] == "fallback"
        assert all(r["tier"] == "edge" for r in resp.json()["data"])
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("no_responders",): 1}
