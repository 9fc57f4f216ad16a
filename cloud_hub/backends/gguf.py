"""GGUF models through llama.cpp, continuously batched (``shared.runtimes.batched``).

One :class:`~shared.runtimes.batched.BatchedDecoder` per model decodes up to ``slots``
requests together (the hub's ``concurrency``); a request joins the batch at the next decode
step. GPU offload is on by default (``n_gpu_layers = -1``; on a CPU-only build it changes
nothing). Tokens are yielded as :class:`~shared.runtimes.types.TokenPiece` s, with
log-probabilities when the request's ``params.logprobs`` asks for them; the service coalesces
them into chunk messages (``stream_interval_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path

from cloud_hub.backends.base import BackendEvent, RequestContext
from cloud_hub.errors import BackendError
from shared.errors import AglError
from shared.model_files import bundled_model_path
from shared.protocol import InferRequest, sampling_params
from shared.runtimes.batched import BatchedDecoder, DecoderObserver
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.slots import DecodeJob
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece
from shared.tool_calls import tool_prompt

_DONE = object()


class _Inbox:
    """Events from the decode thread to one request's task; one wake-up per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[object] = deque()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    def post(self, item: object) -> None:
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
                self._loop.call_soon_threadsafe(_wake, waiter)

    async def take(self) -> list[object]:
        """Every event posted so far (waiting for at least one)."""
        with self._lock:
            waiter = None
            if not self._items:
                waiter = self._waiter = self._loop.create_future()
        if waiter is not None:
            await waiter
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class GgufBackend:
    """Serves chat and completion requests from one GGUF file, ``slots`` at a time."""

    kinds = frozenset({"chat", "completion"})
    #: Streams go out as chunks of the tokens made per ``stream_interval_ms`` (the service paces).
    coalesce_stream = True

    def __init__(
        self,
        name: str,
        *,
        path: Path | None,
        n_ctx: int,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        slots: int = 4,
    ) -> None:
        self.name = name
        self._path = path
        self._n_ctx = n_ctx
        self._n_gpu_layers = n_gpu_layers
        self._n_threads = n_threads
        self.slots = slots
        self._runtime: GgufRuntime | None = None
        self._decoder: BatchedDecoder | None = None

    async def start(self) -> None:
        """Load the model file and start its decoder, in a thread."""
        path = self._path or bundled_model_path()
        self._runtime = await asyncio.to_thread(
            GgufRuntime.load,
            path,
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
            n_gpu_layers=self._n_gpu_layers,
        )
        self._decoder = await asyncio.to_thread(BatchedDecoder, self._runtime, parallel=self.slots)

    def observe(self, observer: DecoderObserver) -> None:
        """Report the decoder's figures (``agl.batch.*``) to ``observer``."""
        if self._decoder is not None:
            self._decoder.observer = observer

    async def close(self) -> None:
        """Stop the decoder (running requests end with an error) and free the model."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            await asyncio.to_thread(decoder.close)
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        """Queue the request on the decoder; yield token pieces, then a :class:`GenerationEnd`."""
        rt, decoder = self._runtime, self._decoder
        if rt is None or decoder is None:
            raise BackendError(f"model {self.name} is not loaded; start() the back-end first")
        if ctx.cancelled.is_set():
            yield GenerationEnd("cancelled", 0, 0)
            return
        try:
            prompt, params = await asyncio.to_thread(_prepare, rt, req)
        except AglError:
            raise
        except Exception as exc:  # a llama.cpp failure must reach the caller as such
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        inbox = _Inbox(asyncio.get_running_loop())
        decoder.submit(
            DecodeJob(
                prompt, params, inbox.post, lambda: inbox.post(_DONE), cancelled=ctx.cancelled
            )
        )
        try:
            while True:
                for item in await inbox.take():
                    if item is _DONE:
                        return
                    if isinstance(item, AglError):
                        raise item
                    if isinstance(item, BaseException):
                        raise BackendError(f"llama.cpp failed: {item}") from item
                    if isinstance(item, TokenPiece) and not item.text and item.logprob is None:
                        continue  # text held back and no logprob asked for: nothing to tell
                    if isinstance(item, TokenPiece | GenerationEnd):
                        yield item
        finally:
            ctx.cancelled.set()  # our reader went away: the sequence leaves at the next step


def _prepare(rt: GgufRuntime, req: InferRequest) -> tuple[PreparedPrompt, SamplingParams]:
    """Template and tokenize the request (off the event loop); refuse what cannot fit."""
    params = sampling_params(req.params)
    if req.kind == "chat":
        # Tools in the generic format; their grammar replaces any sent (shared.tool_calls).
        messages, grammar, listed = tool_prompt(
            [m.model_dump() for m in req.messages or []],
            req.tools,
            req.tool_choice,
            req.parallel_tool_calls,
            template_tools=rt.tool_template,
        )
        if grammar is not None:  # tools to call; else a response_format grammar stands
            params = replace(params, grammar=grammar)
        prompt = rt.prepare_chat(messages, tools=listed)
    else:
        prompt = rt.prepare_text(req.prompt or "")
    rt.check_fits(prompt, params.max_tokens)
    return prompt, params
