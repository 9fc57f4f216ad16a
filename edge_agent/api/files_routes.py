"""``/v1/files``: batch input files up, output and error files down (OpenAI's shapes).

    client.files.create(file=open("in.jsonl", "rb"), purpose="batch")
    client.files.content(batch.output_file_id).text

Files live in the site leaf's JetStream object store, not in memory. An upload is
multipart/form-data with an ``Authorization`` header (the openai client always sends one): a
web page cannot add that header to a cross-site form post without the browser asking first,
so a drive-by page cannot fill the device's disk.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.api.http_io import json_response
from edge_agent.batches.multipart import FormError, parse_form
from edge_agent.batches.records import file_object
from edge_agent.batches.service import BatchService
from edge_agent.errors import ApiError

__all__ = ["FILE_ROUTES", "batch_service"]

#: Room for the multipart framing and the purpose field around the file itself.
_FORM_OVERHEAD = 64 * 1024


def batch_service(request: Request) -> BatchService:
    """The running Batch API, or a 503 that says how to turn it on."""
    runtime = getattr(request.app.state, "batches", None)
    if runtime is None:
        raise ApiError(
            503,
            "the Batch API is off: it needs the site's NATS leaf node; start the agent with "
            "--embedded-leaf, or set batches.leaf_domain and hub.nats_url to an existing leaf",
            type="server_error",
            code="batches_unavailable",
        )
    service = runtime.service
    assert isinstance(service, BatchService)
    return service


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _over(int(declared), limit), code="file_too_large", param="file")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, _over(size, limit), code="file_too_large", param="file")
        chunks.append(chunk)
    return b"".join(chunks)


def _over(size: int, limit: int) -> str:
    return (
        f"the upload has at least {size} bytes; files may have at most {limit - _FORM_OVERHEAD} "
        "(setting batches.max_file_bytes); split the batch into several files"
    )


async def upload_file(request: Request) -> Response:
    """``POST /v1/files`` (multipart: ``file``, ``purpose=batch``)."""
    service = batch_service(request)
    if "authorization" not in request.headers:
        raise ApiError(
            401,
            "an upload needs an Authorization header (the openai client sends one; with curl "
            "add -H 'Authorization: Bearer <key>')",
            code="missing_authorization",
        )
    body = await _read_capped(request, service.settings.max_file_bytes + _FORM_OVERHEAD)
    try:
        fields, files = parse_form(body, request.headers.get("content-type", ""))
    except FormError as exc:
        raise ApiError(400, str(exc), param="file") from None
    if "file" not in files:
        raise ApiError(400, "the form has no file field; send file=@input.jsonl", param="file")
    filename, data = files["file"]
    rec = await service.upload(filename, fields.get("purpose", ""), data)
    return json_response(file_object(rec))


async def list_files(request: Request) -> Response:
    """``GET /v1/files``."""
    service = batch_service(request)
    data = sorted(await service.store.records("file"), key=lambda r: r["created_at"])
    purpose = request.query_params.get("purpose")
    from edge_agent.batches.records import FileRecord

    items = [file_object(FileRecord.model_validate(r)) for r in data]
    items = [f for f in items if purpose is None or f["purpose"] == purpose]
    return json_response({"object": "list", "data": items, "has_more": False})


async def get_file(request: Request) -> Response:
    """``GET /v1/files/{id}``."""
    rec = await batch_service(request).file(request.path_params["file_id"])
    return json_response(file_object(rec))


async def file_content(request: Request) -> Response:
    """``GET /v1/files/{id}/content``: the bytes (JSONL)."""
    service = batch_service(request)
    rec = await service.file(request.path_params["file_id"])
    data = await service.store.file_content(rec.id)
    return Response(data, media_type="application/jsonl")


async def delete_file(request: Request) -> Response:
    """``DELETE /v1/files/{id}``."""
    service = batch_service(request)
    rec = await service.file(request.path_params["file_id"])
    await service.store.delete_file(rec.id)
    return json_response({"id": rec.id, "object": "file", "deleted": True})


FILE_ROUTES = [
    Route("/v1/files", upload_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
]
