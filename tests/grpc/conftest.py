"""A real agent with its gRPC API on (bundled chat model + an ONNX digits classifier)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.classifiers import digits, export_onnx, logistic_regression

MAX_MESSAGE = 64 * 1024
"""The agent's grpc_max_message_bytes in these tests (small, so oversize is cheap to send)."""
DIGITS = "digits"


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A logistic-regression digits classifier (64 features, 10 classes) and held-out rows."""
    x, y = digits()
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_onnx(logistic_regression(x[:1500], y[:1500]), x, path), x[1500:]


def digits_spec(path: Path) -> dict[str, object]:
    """The agent's extra_models entry of the digits classifier."""
    return {
        "id": DIGITS,
        "path": str(path),
        "task": "classify",
        "labels": [f"digit-{i}" for i in range(10)],
    }


@pytest.fixture(scope="session")
def grpc_agent(digits_onnx: tuple[Path, np.ndarray]) -> Iterator[RunningAgent]:
    """One agent for the gRPC tests: REST and gRPC (port 0) side by side."""
    with run_agent(
        grpc_port=0,
        grpc_max_message_bytes=MAX_MESSAGE,
        extra_models=[digits_spec(digits_onnx[0])],
    ) as agent:
        assert agent.state.grpc_port
        yield agent


@pytest.fixture()
def channel(grpc_agent: RunningAgent) -> Iterator[grpc.Channel]:
    """A plain (blocking) channel to the agent's gRPC port."""
    with grpc.insecure_channel(f"127.0.0.1:{grpc_agent.state.grpc_port}") as ch:
        yield ch
