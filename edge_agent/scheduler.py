"""Local generation scheduling: the seam between the HTTP layer and the model.

The HTTP layer only sees :class:`Scheduler`: ``submit`` a prompt, then iterate the
returned :class:`GenerationHandle`. :class:`BatchedScheduler` (the default) decodes up to
``parallel`` sequences per step on one llama.cpp context (``shared.runtimes.batched``);
:class:`SerialScheduler` runs one sequence at a time on a worker thread (tests use it
through the seam with a wrapped ``generate``).
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Protocol

from edge_agent.errors import QueueFullError
from edge_agent.settings import EdgeSettings
from shared.runtimes.batched import (
    BatchedDecoder,
    DecoderObserver,
    SamplerFactory,
    default_sampler,
)
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.slots import DecodeJob
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece

Event = TokenPiece | GenerationEnd
GenerateFn = Callable[[PreparedPrompt, SamplingParams, threading.Event], Iterator[Event]]

_DONE = object()


class GenerationHandle:
    """One submitted generation: read it with ``batches()``; ``cancel()`` stops it between tokens.

    The worker thread appends events to a buffer and wakes the event loop only when the
    reader is waiting (or, with ``wake_each=False``, only when generation ends), so a
    reader that drains in batches costs one wake-up per batch instead of one per token.
    """

    def __init__(
        self,
        prompt: PreparedPrompt,
        params: SamplingParams,
        loop: asyncio.AbstractEventLoop,
        *,
        wake_each: bool = True,
    ) -> None:
        self.prompt = prompt
        self.params = params
        self.cancelled = threading.Event()
        self.submitted_at = time.monotonic()
        self._loop = loop
        self._wake_each = wake_each
        self._buf: deque[object] = deque()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.first_token_at: float | None = None
        """``time.monotonic()`` when the worker produced the first token (even if nobody woke)."""

    def cancel(self) -> None:
        """Ask the worker to stop; safe to call from any thread, any number of times."""
        self.cancelled.set()

    def _post(self, item: object) -> None:
        # Called from the worker thread.
        if self.first_token_at is None and isinstance(item, TokenPiece):
            self.first_token_at = time.monotonic()
        with self._lock:
            self._buf.append(item)
            final = item is _DONE
            if not (self._wake_each or final):
                return
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self.cancelled.set()

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        """Lists of events already generated (waiting for at least one), ending with the end."""
        while not self._closed:
            with self._lock:
                waiter = None
                if not self._buf or (not self._wake_each and self._buf[-1] is not _DONE):
                    waiter = self._waiter = self._loop.create_future()
            if waiter is not None:
                await waiter
            with self._lock:
                items = list(self._buf)
                self._buf.clear()
            batch: list[Event] = []
            for item in items:
                if item is _DONE:
                    self._closed = True
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)  # type: ignore[arg-type]
            if batch:
                yield batch


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Scheduler(Protocol):
    """What the HTTP layer needs from local generation."""

    def submit(
        self, prompt: PreparedPrompt, params: SamplingParams, *, wake_each: bool = True
    ) -> GenerationHandle:
        """Queue a generation or raise :class:`QueueFullError`; must be called on the event loop.

        ``wake_each=False`` wakes the reader only when generation ends (non-streamed answers).
        """
        ...

    @property
    def queue_depth(self) -> int:
        """Generations waiting or running."""
        ...

    def expected_wait_s(self) -> float:
        """Rough time a new request would wait before its first token."""
        ...

    def close(self, *, timeout: float = 5.0) -> None:
        """Stop the worker(s); queued requests are cancelled."""
        ...


class SerialScheduler:
    """One worker thread, a bounded FIFO of waiting requests.

    ``max_queue`` counts requests waiting behind the running one; the next request
    beyond that is refused with 503 and a Retry-After based on recent job durations.
    """

    def __init__(self, generate: GenerateFn, *, max_queue: int) -> None:
        self._generate = generate
        self._max_queue = max_queue
        self._jobs: queue.SimpleQueue[GenerationHandle | None] = queue.SimpleQueue()
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._avg_job_s = 1.0
        self._thread = threading.Thread(target=self._run, name="agl-generate", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._depth

    def expected_wait_s(self) -> float:
        return self._depth * self._avg_job_s

    def submit(
        self, prompt: PreparedPrompt, params: SamplingParams, *, wake_each: bool = True
    ) -> GenerationHandle:
        with self._depth_lock:
            if self._depth > self._max_queue:  # one running + max_queue waiting
                retry = max(1, math.ceil(self.expected_wait_s()))
                raise QueueFullError(depth=self._depth, retry_after_s=retry)
            self._depth += 1
        handle = GenerationHandle(prompt, params, asyncio.get_running_loop(), wake_each=wake_each)
        self._jobs.put(handle)
        return handle

    def close(self, *, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            started = time.monotonic()
            try:
                if job.cancelled.is_set():
                    continue
                for event in self._generate(job.prompt, job.params, job.cancelled):
                    job._post(event)
            except Exception as exc:  # reported to the request, never kills the worker
                job._post(exc)
            finally:
                with self._depth_lock:
                    self._depth -= 1
                job._post(_DONE)
                elapsed = time.monotonic() - started
                self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * elapsed
        # Drain what is left so waiting requests end instead of hanging.
        while True:
            try:
                left = self._jobs.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                left._post(RuntimeError("the agent is shutting down"))
                left._post(_DONE)


class BatchedScheduler:
    """Continuous batching: up to ``parallel`` generations decode together, FIFO behind them.

    ``max_queue`` counts requests waiting for a slot; the next one beyond that is refused
    with 503 and a Retry-After from the expected wait. A cancelled handle (the client went
    away) leaves its slot at the next decode step.
    """

    def __init__(self, decoder: BatchedDecoder, *, max_queue: int) -> None:
        self._decoder = decoder
        self._max_queue = max_queue
        self._depth = 0
        self._lock = threading.Lock()
        self._avg_job_s = 1.0

    @property
    def slots(self) -> int:
        """Sequences decoded together."""
        return self._decoder.parallel

    @property
    def queue_depth(self) -> int:
        return self._depth

    def observe(self, observer: DecoderObserver) -> None:
        """Report the decoder's figures (``agl.batch.*``) to ``observer`` from now on."""
        self._decoder.observer = observer

    def expected_wait_s(self) -> float:
        # Wait for (those ahead of us + 1) slots to free up, `slots` finishing in parallel.
        ahead = self._depth - self.slots + 1
        return max(0, ahead) * self._avg_job_s / self.slots

    def submit(
        self, prompt: PreparedPrompt, params: SamplingParams, *, wake_each: bool = True
    ) -> GenerationHandle:
        with self._lock:
            if self._depth >= self.slots + self._max_queue:
                retry = max(1, math.ceil(self.expected_wait_s()))
                raise QueueFullError(depth=self._depth, retry_after_s=retry)
            self._depth += 1
        handle = GenerationHandle(prompt, params, asyncio.get_running_loop(), wake_each=wake_each)

        def done() -> None:
            elapsed = time.monotonic() - handle.submitted_at
            with self._lock:
                self._depth -= 1
                self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * elapsed
            handle._post(_DONE)

        try:
            self._decoder.submit(
                DecodeJob(prompt, params, handle._post, done, cancelled=handle.cancelled)
            )
        except BaseException:
            with self._lock:
                self._depth -= 1
            raise
        return handle

    def close(self, *, timeout: float = 5.0) -> None:
        # No timeout: the model is freed right after, never under a running decode step.
        self._decoder.close()


def batched_scheduler(
    runtime: GgufRuntime,
    settings: EdgeSettings,
    *,
    sampler_factory: SamplerFactory = default_sampler,
) -> Scheduler:
    """The default scheduler: ``settings.parallel`` sequences decoded together.

    ``sampler_factory`` is a seam: a test can wrap the real samplers.
    """
    decoder = BatchedDecoder(runtime, parallel=settings.parallel, sampler_factory=sampler_factory)
    return BatchedScheduler(decoder, max_queue=settings.max_queue)
