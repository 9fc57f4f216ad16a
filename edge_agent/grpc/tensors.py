"""KServe v2 tensors ↔ numpy arrays (pure: no I/O, no model).

    rows = read_tensor(request.inputs[0], request.raw_input_contents[0])   # or None: contents
    tensor, raw = write_tensor("probabilities", probs)                      # FP32, raw bytes

A tensor that does not add up (datatype, shape, byte count, element count) raises
:class:`TensorError` naming the input, which the service answers as INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from shared.proto import grpc_predict_v2_pb2 as pb

__all__ = ["DTYPES", "TensorError", "read_tensor", "write_bytes_tensor", "write_tensor"]

#: The datatypes the agent reads and writes, with their little-endian numpy types and the
#: ``InferTensorContents`` field that carries them when they do not travel as raw bytes.
DTYPES: dict[str, tuple[str, str]] = {
    "FP32": ("<f4", "fp32_contents"),
    "FP64": ("<f8", "fp64_contents"),
    "INT32": ("<i4", "int_contents"),
    "INT64": ("<i8", "int64_contents"),
}


class TensorError(ValueError):
    """An input tensor that cannot be read; the message names the input."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"input {name!r}: {problem}")
        self.name = name


def read_tensor(
    tensor: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    *,
    accept: Sequence[str],
) -> np.ndarray:
    """The array of one input: from ``raw`` (raw_input_contents) or the tensor's contents."""
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if datatype not in accept:
        raise TensorError(
            name, f"datatype {datatype!r} is not accepted here; send {' or '.join(accept)}"
        )
    if any(d < 0 for d in shape):
        raise TensorError(name, f"shape {shape} has a negative dimension")
    dtype, field = DTYPES[datatype]
    count = math.prod(shape)
    if raw is not None:
        if tensor.contents.ByteSize():
            raise TensorError(name, "data in both contents and raw_input_contents; send one")
        expected = count * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise TensorError(
                name,
                f"{len(raw)} bytes of raw data for shape {shape} of {datatype}; expected {expected}",
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise TensorError(
            name, f"{len(values)} values in contents.{field} for shape {shape}; expected {count}"
        )
    return np.asarray(values, dtype=dtype).reshape(shape)


def write_tensor(
    name: str, array: np.ndarray
) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    """An output tensor and its raw bytes (FP32, INT64, ... from the array's dtype)."""
    little = array.dtype.newbyteorder("<")
    found = [(d, t) for d, (t, _) in DTYPES.items() if np.dtype(t) == little]
    if not found:
        raise ValueError(f"no KServe datatype for {array.dtype}")
    datatype, dtype = found[0]
    tensor = pb.ModelInferResponse.InferOutputTensor(
        name=name, datatype=datatype, shape=list(array.shape)
    )
    return tensor, np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_bytes_tensor(
    name: str, values: Sequence[str]
) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    """A BYTES output tensor: each element a 4-byte little-endian length, then UTF-8."""
    encoded = [v.encode() for v in values]
    raw = b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    tensor = pb.ModelInferResponse.InferOutputTensor(
        name=name, datatype="BYTES", shape=[len(values)]
    )
    return tensor, raw
