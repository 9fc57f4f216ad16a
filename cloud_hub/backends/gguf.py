"""GGUF models through llama.cpp (``shared.runtimes.gguf``), GPU offload by default.

A llama.cpp context runs one generation at a time, so requests for one model queue on a
lock; generation runs in a worker thread and hands tokens to the event loop. Tokens are
yielded as :class:`~shared.runtimes.types.TokenPiece` s, with log-probabilities when the
request's ``params.logprobs`` asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path

from cloud_hub.backends.base import BackendEvent, RequestContext
from cloud_hub.errors import BackendError
from shared.errors import AglError
from shared.model_files import bundled_model_path
from shared.protocol import InferRequest, sampling_params
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.tool_calls import tool_prompt

_DONE = object()


class GgufBackend:
    """Serves chat and completion requests from one GGUF file."""

    kinds = frozenset({"chat", "completion"})

    def __init__(
        self,
        name: str,
        *,
        path: Path | None,
        n_ctx: int,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
    ) -> None:
        self.name = name
        self._path = path
        self._n_ctx = n_ctx
        self._n_gpu_layers = n_gpu_layers
        self._n_threads = n_threads
        self._runtime: GgufRuntime | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the model file in a thread."""
        path = self._path or bundled_model_path()
        self._runtime = await asyncio.to_thread(
            GgufRuntime.load,
            path,
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
            n_gpu_layers=self._n_gpu_layers,
        )

    async def close(self) -> None:
        """Free the llama.cpp context (waits for a running generation)."""
        async with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        """Generate in a thread; yield token pieces, then a :class:`GenerationEnd`."""
        rt = self._runtime
        if rt is None:
            raise BackendError(f"model {self.name} is not loaded; start() the back-end first")
        async with self._lock:
            if ctx.cancelled.is_set():
                yield GenerationEnd("cancelled", 0, 0)
                return
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[object] = asyncio.Queue()
            thread = threading.Thread(
                target=self._generate, args=(rt, req, ctx, loop, queue), daemon=True
            )
            thread.start()
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, TokenPiece) and not item.text and item.logprob is None:
                        continue  # text held back and no logprob asked for: nothing to tell
                    if isinstance(item, TokenPiece | GenerationEnd):
                        yield item
            finally:
                # Stop the thread if our consumer went away, and keep the lock until it ends.
                ctx.cancelled.set()
                await asyncio.to_thread(thread.join)

    @staticmethod
    def _generate(
        rt: GgufRuntime,
        req: InferRequest,
        ctx: RequestContext,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[object],
    ) -> None:
        put = queue.put_nowait
        try:
            params = sampling_params(req.params)
            if req.kind == "chat":
                # Tools in the generic format; their grammar replaces any sent (shared.tool_calls).
                messages, grammar = tool_prompt(
                    [m.model_dump() for m in req.messages or []],
                    req.tools,
                    req.tool_choice,
                    req.parallel_tool_calls,
                )
                if req.tools:
                    params = replace(params, grammar=grammar)
                prompt = rt.prepare_chat(messages)
            else:
                prompt = rt.prepare_text(req.prompt or "")
            rt.check_fits(prompt, params.max_tokens)
            for event in rt.generate(prompt, params, cancelled=ctx.cancelled):
                loop.call_soon_threadsafe(put, event)
        except AglError as exc:
            loop.call_soon_threadsafe(put, exc)
        except Exception as exc:  # llama.cpp failures must reach the caller, not kill the thread
            loop.call_soon_threadsafe(put, BackendError(f"llama.cpp failed: {exc}"))
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed while we generated
                loop.call_soon_threadsafe(put, _DONE)
