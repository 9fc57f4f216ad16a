"""ONNX classifiers and embedders served next to the chat model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import openai
import pytest
from onnx import TensorProto, helper

from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.classifiers import digits, export_onnx, logistic_regression
from tests.fixtures.names import MODEL


@pytest.fixture(scope="module")
def digits_classifier(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, np.ndarray, np.ndarray]:
    x, y = digits()
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_onnx(logistic_regression(x[:1500], y[:1500]), x, path), x[1500:], y[1500:]


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding table + mean pool, built with onnx.helper."""
    vocab, dim = 32, 8
    table = np.random.default_rng(0).normal(size=(vocab, dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["states"]),
        ],
        "tiny_embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("states", TensorProto.FLOAT, [1, None, dim])],
        [helper.make_tensor("table", TensorProto.FLOAT, table.shape, table.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "embedder.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def onnx_agent(digits_classifier, tiny_embedder) -> Iterator[RunningAgent]:  # type: ignore[no-untyped-def]
    extra = [
        {
            "id": "digits",
            "path": str(digits_classifier[0]),
            "task": "classify",
            "labels": [f"digit-{i}" for i in range(10)],
        },
        {"id": "tiny-embed", "path": str(tiny_embedder), "task": "embed"},
    ]
    with run_agent(extra_models=extra) as agent:
        yield agent


def test_classify_returns_label_probabilities_confidence(onnx_agent, digits_classifier) -> None:  # type: ignore[no-untyped-def]
    _, x_test, y_test = digits_classifier
    resp = httpx.post(
        f"{onnx_agent.v1}/classify", json={"model": "digits", "input": x_test[:50].tolist()}
    )
    assert resp.status_code == 200
    rows = resp.json()["data"]
    assert len(rows) == 50
    for row in rows:
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-3
        assert row["confidence"] == max(row["probabilities"].values())
        assert row["probabilities"][row["label"]] == row["confidence"]
    accuracy = np.mean([r["label"] == f"digit-{y}" for r, y in zip(rows, y_test[:50], strict=True)])
    assert accuracy > 0.8


def test_classify_single_vector_and_bad_shapes(onnx_agent, digits_classifier) -> None:  # type: ignore[no-untyped-def]
    _, x_test, _ = digits_classifier
    one = httpx.post(
        f"{onnx_agent.v1}/classify", json={"model": "digits", "input": x_test[0].tolist()}
    )
    assert one.status_code == 200 and len(one.json()["data"]) == 1
    short = httpx.post(f"{onnx_agent.v1}/classify", json={"model": "digits", "input": [1.0, 2.0]})
    assert short.status_code == 400 and "64 features" in short.json()["error"]["message"]
    ragged = httpx.post(
        f"{onnx_agent.v1}/classify", json={"model": "digits", "input": [[1.0], [1.0, 2.0]]}
    )
    assert ragged.status_code == 400 and "same length" in ragged.json()["error"]["message"]
    text = httpx.post(f"{onnx_agent.v1}/classify", json={"model": "digits", "input": ["a"]})
    assert text.status_code == 400 and text.json()["error"]["param"].startswith("input")


def test_onnx_embedder_takes_token_ids(onnx_agent) -> None:  # type: ignore[no-untyped-def]
    with openai.OpenAI(base_url=onnx_agent.v1, api_key="x", max_retries=0) as client:
        out = client.embeddings.create(model="tiny-embed", input=[[1, 2, 3], [1, 2, 3], [9, 9]])
        vecs = [np.asarray(d.embedding) for d in out.data]
        assert len(vecs[0]) == 8
        assert np.allclose(vecs[0], vecs[1]) and not np.allclose(vecs[0], vecs[2])
        assert out.usage.prompt_tokens == 8
        bad = httpx.post(
            f"{onnx_agent.v1}/embeddings", json={"model": "tiny-embed", "input": "text"}
        )
        assert bad.status_code == 400 and "token ids" in bad.json()["error"]["message"]


def test_models_lists_every_model_and_chat_on_onnx_is_refused(onnx_agent) -> None:  # type: ignore[no-untyped-def]
    with openai.OpenAI(base_url=onnx_agent.v1, api_key="x", max_retries=0) as client:
        assert {m.id for m in client.models.list()} == {MODEL, "digits", "tiny-embed"}
        with pytest.raises(openai.BadRequestError, match="/v1/classify"):
            client.chat.completions.create(
                model="digits", messages=[{"role": "user", "content": "hi"}]
            )
