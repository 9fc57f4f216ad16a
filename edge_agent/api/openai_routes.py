"""``/v1/chat/completions`` and ``/v1/completions``: read the body, make a job, answer it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.api.answer import answer
from edge_agent.api.http_io import parse_body, read_json
from edge_agent.api.inference import classify, embeddings
from edge_agent.api.jobs import chat_job, completion_job
from edge_agent.api.prompt import check_message_count
from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest
from edge_agent.api.state import agent_state

__all__ = ["OPENAI_ROUTES"]


async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streamed or not."""
    state = agent_state(request)
    body = await read_json(request, max_bytes=state.settings.max_body_bytes)
    # Counted before validation: validating a huge message list would hold the loop.
    messages = body.get("messages")
    if isinstance(messages, list):
        check_message_count(state, len(messages))
    return await answer(state, request, chat_job(parse_body(ChatCompletionRequest, body)))


async def completions(request: Request) -> Response:
    """OpenAI (legacy) text completions, streamed or not."""
    state = agent_state(request)
    body = await read_json(request, max_bytes=state.settings.max_body_bytes)
    return await answer(state, request, completion_job(parse_body(CompletionRequest, body)))


OPENAI_ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/classify", classify, methods=["POST"]),
]
