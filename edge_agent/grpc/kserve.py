"""The Open Inference Protocol (KServe v2) for the agent's ONNX models.

    ServerLive / ServerReady / ModelReady / ServerMetadata / ModelMetadata / ModelInfer

A classifier takes one FP32 (or FP64) input ``[rows, features]`` (a 1-D tensor is one row) and
answers ``label`` (BYTES), ``probabilities`` (FP32 ``[rows, classes]``), ``confidence`` (FP32)
and ``tier`` (BYTES, ``edge``/``cloud`` per row): the same rows as ``/v1/classify``, through the
same code (``classify_rows``), hard-example escalation included. An embedder takes INT64 (or
INT32) token ids ``[rows, tokens]`` and answers ``embedding`` (FP32 ``[rows, dim]``).
Outputs travel as ``raw_output_contents``, as Triton sends them; ``x-agl-tier``/``x-agl-reason``
come back as initial metadata and as response parameters.
"""

from __future__ import annotations

import numpy as np

from edge_agent import __version__
from edge_agent.api.inference import classify_rows, embed_token_rows
from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from edge_agent.grpc.errors import Context, api_errors
from edge_agent.grpc.tensors import TensorError, read_tensor, write_bytes_tensor, write_tensor
from edge_agent.models import ServedModel
from shared.proto import grpc_predict_v2_pb2 as pb
from shared.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from shared.runtimes.onnx import OnnxRuntime

__all__ = ["SERVER_NAME", "InferenceService"]

SERVER_NAME = "open-autoglm-edge-agent"
CLASSIFY_OUTPUTS = ("label", "probabilities", "confidence", "tier")
EMBED_OUTPUTS = ("embedding",)
_Tensor = pb.ModelMetadataResponse.TensorMetadata


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` on the agent's shared state."""

    def __init__(self, state: AgentState) -> None:
        self._state = state

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        """Live as long as the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        """Ready once every model has loaded (as ``/readyz``)."""
        return pb.ServerReadyResponse(ready=self._state.registry.state == "ready")

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Whether ``name`` is loaded; NOT_FOUND for a model the agent does not serve."""
        async with api_errors(self._state, context):
            served = self._known(request.name)
            return pb.ModelReadyResponse(ready=served.runtime is not None)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        """The agent's name and version."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """Inputs and outputs of an ONNX model (a chat model lists none: use agl.v1.Chat)."""
        async with api_errors(self._state, context):
            served = self._state.registry.get(request.name)
            runtime = served.runtime
            reply = pb.ModelMetadataResponse(name=served.id, versions=["1"])
            if not isinstance(runtime, OnnxRuntime):
                reply.platform = "gguf"
                return reply
            reply.platform = "onnxruntime_onnx"
            if runtime.task == "classify":
                classes = len(served.spec.labels) if served.spec.labels else -1
                reply.inputs.append(
                    _Tensor(name=runtime.input_name, datatype="FP32", shape=[-1, _dim(runtime)])
                )
                reply.outputs.extend(
                    [
                        _Tensor(name="label", datatype="BYTES", shape=[-1]),
                        _Tensor(name="probabilities", datatype="FP32", shape=[-1, classes]),
                        _Tensor(name="confidence", datatype="FP32", shape=[-1]),
                        _Tensor(name="tier", datatype="BYTES", shape=[-1]),
                    ]
                )
            else:
                reply.inputs.append(
                    _Tensor(name=runtime.input_name, datatype="INT64", shape=[-1, -1])
                )
                reply.outputs.append(_Tensor(name="embedding", datatype="FP32", shape=[-1, -1]))
            return reply

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        """Classify or embed one batch; hard rows escalate as on ``/v1/classify``."""
        async with api_errors(self._state, context):
            served = self._state.registry.get(request.model_name)
            runtime = served.runtime
            if not isinstance(runtime, OnnxRuntime):
                raise ApiError(
                    400,
                    f"model {served.id!r} is a chat model; call agl.v1.Chat/Stream or Complete",
                    param="model_name",
                    code="wrong_model_type",
                )
            if len(request.inputs) != 1:
                raise ApiError(
                    400,
                    f"model {served.id!r} takes exactly one input ({runtime.input_name!r}); "
                    f"got {len(request.inputs)}",
                    param="inputs",
                )
            raws = request.raw_input_contents
            if raws and len(raws) != len(request.inputs):
                raise ApiError(
                    400,
                    f"{len(raws)} raw_input_contents for {len(request.inputs)} inputs; send one per input",
                    param="raw_input_contents",
                )
            tensor = request.inputs[0]
            raw = raws[0] if raws else None
            reply = pb.ModelInferResponse(model_name=served.id, model_version="1", id=request.id)
            if runtime.task == "classify":
                outputs, headers = await self._classify(served.id, runtime, tensor, raw)
            else:
                outputs, headers = await self._embed(served.id, tensor, raw)
            wanted = [o.name for o in request.outputs] or list(outputs)
            for name in wanted:
                if name not in outputs:
                    raise ApiError(
                        400,
                        f"model {served.id!r} has no output {name!r}; it has {', '.join(outputs)}",
                        param="outputs",
                    )
                out, data = outputs[name]
                reply.outputs.append(out)
                reply.raw_output_contents.append(data)
            for key, value in headers.items():
                reply.parameters[key].string_param = value
            await context.send_initial_metadata(tuple(headers.items()))
            return reply

    def _known(self, name: str) -> ServedModel:
        served = self._state.registry.models.get(name)
        if served is None:
            self._state.registry.get(name)  # raises the REST 404 with the list of models
        assert served is not None
        return served

    async def _classify(
        self,
        model: str,
        runtime: OnnxRuntime,
        tensor: pb.ModelInferRequest.InferInputTensor,
        raw: bytes | None,
    ) -> tuple[dict[str, tuple[pb.ModelInferResponse.InferOutputTensor, bytes]], dict[str, str]]:
        batch = _read(tensor, raw, accept=("FP32", "FP64"))
        if batch.ndim == 1:
            batch = batch.reshape(1, -1)
        features = _dim(runtime)
        if batch.ndim != 2 or batch.shape[0] == 0 or (features > 0 and batch.shape[1] != features):
            raise ApiError(
                400,
                f"input {tensor.name!r}: shape {list(tensor.shape)} does not fit the model; "
                f"send [rows, {features if features > 0 else 'features'}] with rows ≥ 1",
                param=tensor.name,
            )
        answer = await classify_rows(self._state, model, batch.astype(np.float64).tolist())
        results = answer.results
        probs = np.asarray([list(r.probabilities.values()) for r in results], dtype=np.float32)
        confidence = np.asarray([r.confidence for r in results], dtype=np.float32)
        outputs = {
            "label": write_bytes_tensor("label", [r.label for r in results]),
            "probabilities": write_tensor("probabilities", probs),
            "confidence": write_tensor("confidence", confidence),
            "tier": write_bytes_tensor("tier", answer.tiers),
        }
        return outputs, answer.headers()

    async def _embed(
        self, model: str, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None
    ) -> tuple[dict[str, tuple[pb.ModelInferResponse.InferOutputTensor, bytes]], dict[str, str]]:
        ids = _read(tensor, raw, accept=("INT64", "INT32"))
        if ids.ndim == 1:
            ids = ids.reshape(1, -1)
        if ids.ndim != 2 or 0 in ids.shape:
            raise ApiError(
                400,
                f"input {tensor.name!r}: shape {list(tensor.shape)} is not [rows, tokens]",
                param=tensor.name,
            )
        limit = self._state.settings.max_embedding_inputs
        if ids.shape[0] > limit:
            raise ApiError(
                400,
                f"input {tensor.name!r} holds {ids.shape[0]} rows; at most {limit} are accepted "
                "per request (setting max_embedding_inputs)",
                param=tensor.name,
            )
        vectors = await embed_token_rows(self._state, model, ids.astype(np.int64).tolist())
        out = write_tensor("embedding", np.asarray(vectors, dtype=np.float32))
        return {"embedding": out}, {"x-agl-tier": "edge", "x-agl-reason": "default"}


def _dim(runtime: OnnxRuntime) -> int:
    return runtime.n_features if runtime.n_features is not None else -1


def _read(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, *, accept: tuple[str, ...]
) -> np.ndarray:
    try:
        return read_tensor(tensor, raw, accept=accept)
    except TensorError as exc:
        raise ApiError(400, str(exc), param=exc.name) from None
