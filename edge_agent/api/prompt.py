"""The prompt of a job: which local model serves it, whether it is small enough, its tokens.

Nothing here runs long on the event loop: sizes are checked from counts and characters, and the
chat template and tokeniser run on the agent's worker pool.
"""

from __future__ import annotations

import asyncio
import functools

from edge_agent.api.jobs import Job
from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import PreparedPrompt
from shared.tool_calls import render_messages

__all__ = [
    "check_message_count",
    "check_size",
    "local_runtime",
    "overflow",
    "prepare",
    "text_chars",
]


def check_message_count(state: AgentState, count: int) -> None:
    """A 400 when a chat holds more than ``max_messages`` messages."""
    limit = state.settings.max_messages
    if count > limit:
        raise ApiError(
            400,
            f"the chat has {count} messages; at most {limit} are accepted; split the "
            "conversation or raise max_messages",
            param="messages",
        )


def check_size(state: AgentState, job: Job) -> None:
    """``check_message_count`` for a job (again after plugins, which may add messages)."""
    if job.messages is not None:
        check_message_count(state, len(job.messages))


def text_chars(job: Job) -> int:
    if job.messages is None:
        return len(job.prompt_text or "")
    return sum(len(m["content"]) for m in job.messages)


def overflow(at_least: int, n_ctx: int) -> ApiError:
    return ApiError(
        400,
        f"the prompt has at least {at_least} tokens, but this model's context holds {n_ctx} "
        "tokens; shorten the prompt",
        code="context_length_exceeded",
        param="messages",
    )


def local_runtime(state: AgentState, model: str) -> tuple[str, GgufRuntime]:
    """The local model that serves (or stands in for) ``model``."""
    if model not in state.registry.models and model in state.settings.router.cloud_aliases:
        model = state.registry.main_id  # a cloud alias: the main model counts tokens and falls back
    model = state.settings.router.local_aliases.get(model, model)
    served = state.registry.get(model)
    if not isinstance(served.runtime, GgufRuntime):
        raise ApiError(
            400,
            f"model {model!r} is an ONNX {served.spec.task} model; use /v1/classify or /v1/embeddings",
            param="model",
            code="wrong_model_type",
        )
    return served.id, served.runtime


async def prepare(state: AgentState, runtime: GgufRuntime, job: Job) -> PreparedPrompt:
    """Chat template and tokens, on a worker thread: long prompts take a while to tokenise."""
    loop = asyncio.get_running_loop()
    if job.messages is not None:
        # Tools, calls and tool results in the generic format (``shared.tool_calls``); a chat
        # template that renders tools lists them itself.
        listed = runtime.tool_template and job.tools is not None and bool(job.tools.calling)
        messages = render_messages(job.messages, job.tools, template_tools=listed)
        tools = job.tools.calling if listed and job.tools is not None else None
        return await loop.run_in_executor(
            state.workers, functools.partial(runtime.prepare_chat, messages, tools=tools)
        )
    return await loop.run_in_executor(state.workers, runtime.prepare_text, job.prompt_text or "")
