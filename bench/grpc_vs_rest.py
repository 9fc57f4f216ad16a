"""gRPC ÷ REST on one agent: streamed chat tokens/s, and one-row ONNX classify latency.

One ``edge-agent run`` process serves both APIs (the bundled SmolLM2 and a digits classifier
built here with scikit-learn). Chat: greedy, 128 new tokens, the same prompt; REST is read with
the official ``openai`` client (SSE), gRPC with the generated ``agl.v1.Chat`` stub (Stream).
Classify: one 64-feature row, REST ``POST /v1/classify`` (httpx, keep-alive) against KServe v2
``ModelInfer`` (generated stub, raw FP32 bytes). Runs alternate so drift hits both sides;
medians are compared.

    python bench/grpc_vs_rest.py [--runs 5] [--threads 2] [--calls 200]

The last line is ``ratio <grpc/rest tok/s>``; the target is ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import openai
from agent_process import MESSAGES, NEW_TOKENS, agent_process, streamed_tok_s
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from shared.proto import grpc_predict_v2_pb2 as kserve
from shared.proto import grpc_predict_v2_pb2_grpc as kserve_grpc
from shared.proto.agl.v1 import chat_pb2, chat_pb2_grpc

DIGITS = "digits"


def digits_model(folder: Path) -> tuple[Path, np.ndarray]:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    model = LogisticRegression(max_iter=300).fit(x[:1500], digits.target[:1500])
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    path = folder / "digits.onnx"
    path.write_bytes(onx.SerializeToString())
    return path, x[1500:1501]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grpc_tok_s(stub: chat_pb2_grpc.ChatStub, model: str) -> float:
    """Tokens/s of one greedy streamed answer of ``NEW_TOKENS`` tokens over agl.v1.Chat/Stream."""
    request = chat_pb2.ChatRequest(
        model=model,
        messages=[chat_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in MESSAGES],
        max_tokens=NEW_TOKENS,
        temperature=0,
    )
    started = time.perf_counter()
    tokens = 0
    for chunk in stub.Stream(request, timeout=600):
        if chunk.finish_reason:
            tokens = chunk.usage.completion_tokens
    elapsed = time.perf_counter() - started
    assert tokens == NEW_TOKENS, f"agent produced {tokens} tokens, expected {NEW_TOKENS}"
    return NEW_TOKENS / elapsed


def p50_ms(call: object, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per side (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads")
    parser.add_argument("--calls", type=int, default=200, help="classify calls per side per run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path, row = digits_model(Path(tmp))
        grpc_port = free_port()
        env = {
            "AGL_GRPC_PORT": str(grpc_port),
            "AGL_EXTRA_MODELS": json.dumps([{"id": DIGITS, "path": str(path), "task": "classify"}]),
        }
        with (
            agent_process(threads=args.threads, env=env) as url,
            openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
            httpx.Client(timeout=30) as http,
        ):
            model = client.models.list().data[0].id
            chat = chat_pb2_grpc.ChatStub(channel)
            infer = kserve_grpc.GRPCInferenceServiceStub(channel)
            request = kserve.ModelInferRequest(model_name=DIGITS)
            request.inputs.add(name="X", datatype="FP32", shape=list(row.shape))
            request.raw_input_contents.append(row.tobytes())
            body = {"model": DIGITS, "input": row.tolist()}

            def rest_classify() -> None:
                http.post(f"{url}/v1/classify", json=body).raise_for_status()

            def grpc_classify() -> None:
                infer.ModelInfer(request, timeout=30)

            streamed_tok_s(client, model), grpc_tok_s(chat, model)  # warm-up both
            p50_ms(rest_classify, 20), p50_ms(grpc_classify, 20)
            rest, over_grpc, rest_ms, grpc_ms = [], [], [], []
            for i in range(args.runs):
                rest.append(streamed_tok_s(client, model))
                over_grpc.append(grpc_tok_s(chat, model))
                rest_ms.append(p50_ms(rest_classify, args.calls))
                grpc_ms.append(p50_ms(grpc_classify, args.calls))
                print(
                    f"run {i + 1}: chat REST {rest[-1]:7.1f} tok/s   gRPC {over_grpc[-1]:7.1f} tok/s"
                    f"   classify p50 REST {rest_ms[-1]:6.2f} ms   gRPC {grpc_ms[-1]:6.2f} ms",
                    flush=True,
                )
    rest_med, grpc_med = statistics.median(rest), statistics.median(over_grpc)
    rest_p50, grpc_p50 = statistics.median(rest_ms), statistics.median(grpc_ms)
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs}")
    print(
        f"chat streamed: REST (openai client, SSE) {rest_med:.1f} tok/s; gRPC (agl.v1.Chat/Stream) {grpc_med:.1f} tok/s"
    )
    print(
        f"classify one row p50: REST /v1/classify {rest_p50:.2f} ms; gRPC ModelInfer {grpc_p50:.2f} ms;"
        f" ModelInfer ÷ REST {grpc_p50 / rest_p50:.3f}"
    )
    print(f"ratio {grpc_med / rest_med:.3f}")


if __name__ == "__main__":
    main()
