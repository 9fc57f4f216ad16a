"""Runs the official KServe v2 client (tritonclient.grpc) against an agent; prints JSON.

    python tests/grpc/triton_client.py 127.0.0.1:50051 digits rows.npy

A separate process on purpose: tritonclient registers its own copy of the ``inference`` proto
package, which cannot share one process's descriptor pool with the agent's.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton


def main(url: str, model: str, rows_path: str) -> None:
    rows = np.load(rows_path).astype(np.float32)
    client = triton.InferenceServerClient(url=url)
    meta = client.get_model_metadata(model, as_json=True)
    tensor = triton.InferInput(meta["inputs"][0]["name"], list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(
        model,
        [tensor],
        outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("confidence")],
    )
    labels = [b.decode() for b in result.as_numpy("label")]
    response = result.get_response(as_json=True)
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "metadata": meta,
                "labels": labels,
                "confidence": result.as_numpy("confidence").tolist(),
                "outputs": [o["name"] for o in response["outputs"]],
                "parameters": response.get("parameters", {}),
            }
        )
    )
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
