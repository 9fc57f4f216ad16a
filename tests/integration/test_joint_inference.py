"""Sedna-style joint inference over real NATS: hard rows of an edge classifier go to the hub's."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC

from cloud_hub.settings import HubModelSpec, HubSettings
from shared.embedded_nats import embedded_nats
from tests.fixtures.agents import run_agent
from tests.fixtures.hubs import serving_hub


def _export(model: object, x: np.ndarray, path: Path) -> Path:
    with warnings.catch_warnings():
        # skl2onnx reads SVC's probA_/probB_, deprecated in scikit-learn 1.9
        warnings.filterwarnings("ignore", r"Attribute `prob[AB]_`", FutureWarning)
        onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    out = tmp_path_factory.mktemp("joint")
    edge = _export(GaussianNB().fit(x[:1200], y[:1200]), x, out / "edge.onnx")
    hub = _export(SVC(gamma=0.001).fit(x[:1200], y[:1200]), x, out / "hub.onnx")
    return edge, hub, x[1200:1500], y[1200:1500]


@pytest.fixture()
def hub_on_nats(models) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real nats-server and a hub serving the strong ONNX model, on a background loop."""
    _, hub_path, _, _ = models
    with embedded_nats() as nats:
        ready, stop = threading.Event(), threading.Event()
        settings = HubSettings(
            nats_url=nats.url,
            models=[
                HubModelSpec(
                    name="digits-big",
                    backend="onnx",
                    path=hub_path,
                    labels=[str(i) for i in range(10)],
                )
            ],
        )

        async def main() -> None:
            async with serving_hub(settings):
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        assert ready.wait(30), "the hub did not start"
        try:
            yield nats.url
        finally:
            stop.set()
            thread.join(10)


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
    with run_agent(extra_models=extra, hub={"nats_url": hub_on_nats}) as agent:
        deadline = 50
        while not (agent.state.uplink and agent.state.uplink.connected) and deadline:
            deadline -= 1
            threading.Event().wait(0.1)
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


def test_hard_rows_stay_local_marked_fallback_without_a_hub(models) -> None:  # type: ignore[no-untyped-def]
    edge_path, _, x, _ = models
    extra = [
        {
            "id": "digits",
            "path": str(edge_path),
            "task": "classify",
            "hard_example": {"method": "max_prob", "threshold": 0.99, "cloud_model": "digits-big"},
        }
    ]
    with (
        embedded_nats() as nats,
        run_agent(extra_models=extra, hub={"nats_url": nats.url}) as agent,
    ):
        resp = httpx.post(
            f"{agent.v1}/classify", json={"model": "digits", "input": x[:20].tolist()}, timeout=10
        )
        assert resp.status_code == 200
        assert resp.headers["x-agl-tier"] == "edge"
        assert resp.headers["x-agl-reason"] in {"fallback", "default"}
        assert all(r["tier"] == "edge" for r in resp.json()["data"])
