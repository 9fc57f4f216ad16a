"""KServe v2 over gRPC on a real agent: the official client, our stub, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shared.proto import grpc_predict_v2_pb2 as pb
from shared.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.fixtures.agents import RunningAgent
from tests.grpc.conftest import DIGITS, MAX_MESSAGE

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).parent


def infer_request(
    rows: np.ndarray, *, name: str = "X", datatype: str = "FP32"
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=DIGITS)
    request.inputs.add(name=name, datatype=datatype, shape=list(rows.shape))
    request.raw_input_contents.append(rows.tobytes())
    return request


def rest_labels(agent: RunningAgent, rows: np.ndarray) -> list[str]:
    resp = httpx.post(f"{agent.v1}/classify", json={"model": DIGITS, "input": rows.tolist()})
    assert resp.status_code == 200, resp.text
    return [row["label"] for row in resp.json()["data"]]


def test_tritonclient_is_live_reads_metadata_and_infers_digits(
    grpc_agent: RunningAgent, digits_onnx: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    rows = digits_onnx[1][:8]
    np.save(tmp_path / "rows.npy", rows)
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "triton_client.py"),
            f"127.0.0.1:{grpc_agent.state.grpc_port}",
            DIGITS,
            str(tmp_path / "rows.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["metadata"]["name"] == DIGITS
    assert got["metadata"]["inputs"][0]["datatype"] == "FP32"
    assert got["metadata"]["inputs"][0]["shape"] == ["-1", "64"]
    assert got["labels"] == rest_labels(grpc_agent, rows)
    assert got["outputs"] == ["label", "confidence"]
    assert all(0 < c <= 1 for c in got["confidence"])
    assert got["parameters"]["x-agl-tier"]["string_param"] == "edge"


def test_model_infer_answers_what_rest_classify_answers(
    channel: grpc.Channel, grpc_agent: RunningAgent, digits_onnx: tuple[Path, np.ndarray]
) -> None:
    rows = digits_onnx[1][:5]
    reply, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
        infer_request(rows), timeout=30
    )
    assert [o.name for o in reply.outputs] == ["label", "probabilities", "confidence", "tier"]
    assert list(reply.outputs[1].shape) == [5, 10]
    probs = np.frombuffer(reply.raw_output_contents[1], dtype="<f4").reshape(5, 10)
    labels = [f"digit-{i}" for i in probs.argmax(axis=1)]
    assert labels == rest_labels(grpc_agent, rows)
    metadata = dict(call.initial_metadata())
    assert (metadata["x-agl-tier"], metadata["x-agl-reason"]) == ("edge", "default")


@pytest.mark.parametrize(
    ("tweak", "says"),
    [
        (lambda r: r.inputs[0].shape.__setitem__(1, 63), "input 'X'"),  # wrong shape
        (lambda r: setattr(r.inputs[0], "datatype", "INT8"), "input 'X': datatype 'INT8'"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 10), "input 'X': 10 bytes"),
    ],
    ids=["wrong-shape", "wrong-datatype", "byte-count"],
)
def test_malformed_tensors_are_invalid_argument_naming_the_input(
    channel: grpc.Channel, digits_onnx: tuple[Path, np.ndarray], tweak, says: str
) -> None:  # type: ignore[no-untyped-def]
    request = infer_request(digits_onnx[1][:2])
    tweak(request)
    with pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in caught.value.details()


def test_unknown_model_is_not_found_and_lists_the_models(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = infer_request(np.zeros((1, 64), dtype=np.float32))
    request.model_name = "nope"
    for call, arg in [
        (stub.ModelInfer, request),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
        (stub.ModelReady, pb.ModelReadyRequest(name="nope")),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(arg, timeout=30)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert "'nope' does not exist on this agent; available: digits" in caught.value.details()


def test_a_chat_model_is_not_a_tensor_model(channel: grpc.Channel) -> None:
    request = infer_request(np.zeros((1, 64), dtype=np.float32))
    request.model_name = "smollm2-135m-instruct"
    with pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "agl.v1.Chat" in caught.value.details()


def test_an_oversize_message_is_resource_exhausted(channel: grpc.Channel) -> None:
    rows = np.zeros((MAX_MESSAGE // (64 * 4) + 1, 64), dtype=np.float32)
    with pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(rows), timeout=30)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {MAX_MESSAGE}" in caught.value.details()  # gRPC names the configured limit


def test_server_metadata_health_and_reflection(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10).name
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService", "agl.v1.Chat"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflect.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"inference.GRPCInferenceService", "agl.v1.Chat", "grpc.health.v1.Health"} <= names
