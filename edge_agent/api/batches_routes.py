"""``/v1/batches``: OpenAI's Batch API, queued on the site's JetStream (store-and-forward).

    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"tier": "cloud"})
    client.batches.retrieve(batch.id).request_counts

A retried ``POST /v1/batches`` with the same ``Idempotency-Key`` header answers the batch
the first one made (no duplicate work). ``metadata.tier`` is ``cloud`` (the default), ``edge``
(the local model, on idle capacity only) or ``auto``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.api.files_routes import batch_service
from edge_agent.api.http_io import json_response, read_json
from edge_agent.batches.records import BatchRecord, batch_object

__all__ = ["BATCH_ROUTES"]

_MAX_LIST = 100


async def create_batch(request: Request) -> Response:
    """``POST /v1/batches``."""
    service = batch_service(request)
    body = await read_json(request, max_bytes=64 * 1024)
    rec = await service.create(body, idempotency_key=request.headers.get("idempotency-key"))
    return json_response(batch_object(rec))


async def get_batch(request: Request) -> Response:
    """``GET /v1/batches/{id}``."""
    rec = await batch_service(request).batch(request.path_params["batch_id"])
    return json_response(batch_object(rec))


async def list_batches(request: Request) -> Response:
    """``GET /v1/batches`` (newest first; ``limit``, ``after``)."""
    service = batch_service(request)
    raw = request.query_params.get("limit", "20")
    limit = min(int(raw), _MAX_LIST) if raw.isdigit() and int(raw) > 0 else 20
    recs = [BatchRecord.model_validate(r) for r in await service.store.records("batch")]
    recs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    after = request.query_params.get("after")
    if after is not None:
        ids = [r.id for r in recs]
        recs = recs[ids.index(after) + 1 :] if after in ids else []
    page = recs[:limit]
    data = [batch_object(r) for r in page]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(recs) > limit,
        }
    )


async def cancel_batch(request: Request) -> Response:
    """``POST /v1/batches/{id}/cancel``."""
    rec = await batch_service(request).cancel(request.path_params["batch_id"])
    return json_response(batch_object(rec))


BATCH_ROUTES = [
    Route("/v1/batches", create_batch, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
