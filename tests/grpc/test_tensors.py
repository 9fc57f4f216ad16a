"""KServe v2 tensors ↔ numpy: the pure conversions and the errors that name the input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_agent.grpc.tensors import TensorError, read_tensor, write_bytes_tensor, write_tensor
from shared.proto import grpc_predict_v2_pb2 as pb

Input = pb.ModelInferRequest.InferInputTensor


def test_raw_fp32_rows_read_back_row_major() -> None:
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    got = read_tensor(
        Input(name="x", datatype="FP32", shape=[2, 3]), data.tobytes(), accept=["FP32"]
    )
    assert got.tolist() == data.tolist()


def test_contents_are_read_when_there_is_no_raw_data() -> None:
    tensor = Input(name="x", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([1.5, 2.5])
    assert read_tensor(tensor, None, accept=["FP32"]).tolist() == [[1.5, 2.5]]


@pytest.mark.parametrize(
    ("tensor", "raw", "says"),
    [
        (Input(name="feat", datatype="FP32", shape=[2, 3]), b"\0" * 20, "20 bytes"),
        (Input(name="feat", datatype="BYTES", shape=[1]), b"\0" * 4, "datatype 'BYTES'"),
        (Input(name="feat", datatype="FP32", shape=[-1, 3]), b"", "negative dimension"),
        (Input(name="feat", datatype="FP32", shape=[1, 2]), None, "0 values in contents"),
    ],
)
def test_a_tensor_that_does_not_add_up_names_the_input(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, says: str
) -> None:
    with pytest.raises(TensorError, match="input 'feat'") as caught:
        read_tensor(tensor, raw, accept=["FP32"])
    assert says in str(caught.value)
    assert caught.value.name == "feat"


def test_outputs_are_little_endian_raw_bytes() -> None:
    tensor, raw = write_tensor("p", np.asarray([[0.25, 0.75]], dtype=np.float32))
    assert (tensor.datatype, list(tensor.shape)) == ("FP32", [1, 2])
    assert np.frombuffer(raw, dtype="<f4").tolist() == [0.25, 0.75]


def test_bytes_outputs_carry_length_prefixes() -> None:
    tensor, raw = write_bytes_tensor("label", ["a", "bc"])
    assert (tensor.datatype, list(tensor.shape)) == ("BYTES", [2])
    assert raw == struct.pack("<I", 1) + b"a" + struct.pack("<I", 2) + b"bc"
