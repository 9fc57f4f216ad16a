"""SIMULATED local model — a STAND-IN for llama.cpp in the fleet simulator, never a default.

:class:`SimulatedRuntime` answers the calls the edge's request path makes on a GGUF runtime
(``prepare_chat``, ``prepare_text``, ``check_fits``, ``surely_too_long``, ``n_ctx`` …) without a
model: one token per word, answers made of ``local<i>`` words. :func:`simulated_scheduler` is a
``scheduler_factory`` for ``create_app``: it plays a generation on the event loop with the
scenario's time to first token, token rate and log-probability distribution, one sequence at a
time per device (a device has one model), and no thread, so hundreds of devices share one
process.

    app = create_app(settings, registry, scheduler_factory=simulated_scheduler(model, rng))
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.errors import QueueFullError
from edge_agent.scheduler import _DONE, GenerationHandle, Scheduler
from edge_agent.settings import EdgeSettings
from shared.errors import ContextOverflowError
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece

__all__ = ["LOCAL_WORD", "LocalModelSpec", "SimulatedRuntime", "simulated_scheduler"]

#: Every simulated local answer is made of ``local0 local1 …`` (the ledger tells tiers apart by it).
LOCAL_WORD = "local"
#: Tokens a chat template adds per message (role markers), like a real template.
_PER_MESSAGE = 4
#: Generation events are posted in batches at this period (one timer per device, not per token).
_TICK_S = 0.05


class LocalModelSpec:
    """How the simulated local model behaves: token timing and confidence distributions.

    ``logprob_mean`` is drawn per request from N(mean, ``difficulty_sd``): an unsure answer has all
    its tokens lower, so a cascade judges requests, not tokens, as on a real model.
    """

    def __init__(
        self,
        *,
        ttft_s: float,
        tokens_per_s: float,
        logprob_mean: float,
        logprob_sd: float,
        difficulty_sd: float,
        n_ctx: int,
        batch_exponent: float = 0.25,
    ) -> None:
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.logprob_mean = logprob_mean
        self.logprob_sd = logprob_sd
        self.difficulty_sd = difficulty_sd
        self.n_ctx = n_ctx
        self.batch_exponent = batch_exponent


class SimulatedRuntime(GgufRuntime):
    """A SIMULATED GGUF runtime: same public methods, no model (see the module docstring).

    It subclasses :class:`GgufRuntime` only so that the edge code, which serves GGUF models,
    serves it unchanged; none of the parent's llama.cpp state exists.
    """

    def __init__(self, spec: LocalModelSpec, *, name: str = "simulated") -> None:
        # Deliberately not calling GgufRuntime.__init__: there is no llama.cpp model.
        self.spec = spec
        self.path = Path(f"<{name}>")
        self.n_ctx = spec.n_ctx
        self.n_vocab = 32_000
        self.n_threads = 1
        self.n_gpu_layers = 0
        self.tool_template = False  # tools are rendered by shared.tool_calls, as for most GGUFs

    @property
    def has_chat_template(self) -> bool:
        return True

    @property
    def control_texts(self) -> frozenset[str]:
        return frozenset()

    @property
    def control_token_ids(self) -> frozenset[int]:
        return frozenset()

    @property
    def max_token_bytes(self) -> int:
        return 64

    def prepare_chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> PreparedPrompt:
        count = sum(_PER_MESSAGE + _words(str(m.get("content") or "")) for m in messages)
        count += sum(_words(json.dumps(t)) for t in tools or ())
        return PreparedPrompt(tokens=list(range(max(1, count))), stop=("<|im_end|>",))

    def prepare_text(self, prompt: str) -> PreparedPrompt:
        return PreparedPrompt(tokens=list(range(1 + _words(prompt))))

    def count_tokens(self, text: str) -> int:
        return _words(text)

    def token_text(self, token: int) -> str:
        return f"{LOCAL_WORD}{token} "

    def check_fits(self, prompt: PreparedPrompt, max_tokens: int | None) -> None:
        if len(prompt.tokens) + (max_tokens or 1) > self.n_ctx:
            raise ContextOverflowError(
                prompt_tokens=len(prompt.tokens), max_tokens=max_tokens, n_ctx=self.n_ctx
            )

    def generate(
        self,
        prompt: PreparedPrompt,
        params: SamplingParams,
        *,
        cancelled: threading.Event | None = None,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        """All events at once, without timing (the scheduler adds the timing)."""
        return iter(self.events(prompt, params, random.Random(params.seed)))

    def events(
        self, prompt: PreparedPrompt, params: SamplingParams, rng: random.Random
    ) -> list[TokenPiece | GenerationEnd]:
        """A whole simulated generation: ``max_tokens`` words (within the context), then the end."""
        budget = max(0, min(params.max_tokens, self.n_ctx - len(prompt.tokens)))
        spec = self.spec
        center = min(0.0, rng.gauss(spec.logprob_mean, spec.difficulty_sd))
        out: list[TokenPiece | GenerationEnd] = []
        for i in range(budget):
            logprob = min(0.0, rng.gauss(center, spec.logprob_sd)) if params.logprobs else None
            out.append(TokenPiece(text=self.token_text(i), token_id=i, logprob=logprob))
        out.append(GenerationEnd("length", len(prompt.tokens), budget))
        return out

    def close(self) -> None:
        """Nothing to free."""


def _words(text: str) -> int:
    return len(text.split())


class _LoopHandle(GenerationHandle):
    """A handle the scheduler posts to from the event loop itself: it wakes the reader with
    ``call_soon``, sparing the self-pipe write of ``call_soon_threadsafe`` (a syscall per wake,
    hundreds per second with hundreds of devices). Other threads post with the base method."""

    def _post(self, item: object) -> None:
        if self.first_token_at is None and isinstance(item, TokenPiece):
            self.first_token_at = time.monotonic()
        with self._lock:
            self._buf.append(item)
            if not (self._wake_each or item is _DONE):
                return
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _SimulatedScheduler:
    """Up to ``parallel`` sequences at once on the event loop, a bounded FIFO behind them (like
    the batched scheduler). With ``k`` sequences running, the device makes
    ``tokens_per_s * k ** batch_exponent`` tokens/s in all, shared among them."""

    def __init__(
        self, runtime: SimulatedRuntime, *, parallel: int, max_queue: int, rng: random.Random
    ) -> None:
        self._runtime = runtime
        self._parallel = max(1, parallel)
        self._max_queue = max_queue
        self._rng = rng
        self._waiting: deque[GenerationHandle] = deque()
        self._active = 0
        self._depth = 0
        self._avg_job_s = runtime.spec.ttft_s + 32 / runtime.spec.tokens_per_s
        self._workers: set[asyncio.Task[None]] = set()

    @property
    def queue_depth(self) -> int:
        return self._depth

    def expected_wait_s(self) -> float:
        return max(0, self._depth - self._parallel + 1) * self._avg_job_s / self._parallel

    def submit(
        self, prompt: PreparedPrompt, params: SamplingParams, *, wake_each: bool = True
    ) -> GenerationHandle:
        if self._depth >= self._max_queue + self._parallel:  # running + max_queue waiting
            retry = max(1, math.ceil(self.expected_wait_s()))
            raise QueueFullError(depth=self._depth, retry_after_s=retry)
        loop = asyncio.get_running_loop()
        handle = _LoopHandle(prompt, params, loop, wake_each=wake_each)
        self._depth += 1
        self._waiting.append(handle)
        if len(self._workers) < self._parallel:
            worker = loop.create_task(self._drain(), name="sim-generate")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return handle

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            handle = self._waiting.popleft()
            started = loop.time()
            self._active += 1
            try:
                if not handle.cancelled.is_set():
                    await self._play(handle)
            except Exception as exc:  # reported to the request, never kills the worker
                handle._post(exc)
            finally:
                self._active -= 1
                self._depth -= 1
                handle._post(_DONE)
                self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * (loop.time() - started)

    def _rate(self) -> float:
        """Tokens/s of one sequence now: the device's batched throughput shared by the active."""
        spec, k = self._runtime.spec, float(max(1, self._active))
        return spec.tokens_per_s * math.pow(k, spec.batch_exponent) / k

    async def _play(self, handle: GenerationHandle) -> None:
        events = self._runtime.events(handle.prompt, handle.params, self._rng)
        await asyncio.sleep(self._runtime.spec.ttft_s)
        start = 0
        while start < len(events):
            if handle.cancelled.is_set():
                done = sum(isinstance(e, TokenPiece) for e in events[:start])
                handle._post(GenerationEnd("cancelled", len(handle.prompt.tokens), done))
                return
            rate = self._rate()
            step = max(1, round(rate * _TICK_S))
            for event in events[start : start + step]:
                handle._post(event)
            start += step
            if start < len(events):
                await asyncio.sleep(step / rate)

    def close(self, *, timeout: float = 5.0) -> None:
        for handle in self._waiting:  # on a worker thread: the thread-safe post
            GenerationHandle._post(handle, RuntimeError("the simulated device is shutting down"))
            GenerationHandle._post(handle, _DONE)
        self._waiting.clear()
        for worker in list(self._workers):
            if not worker.done():
                # close() runs on a worker thread (AgentState.close): cancel on the task's loop.
                worker.get_loop().call_soon_threadsafe(worker.cancel)


def simulated_scheduler(
    rng: random.Random,
) -> Callable[[GgufRuntime, EdgeSettings], Scheduler]:
    """A ``scheduler_factory`` for ``create_app`` that plays :class:`SimulatedRuntime` models."""

    def factory(runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
        if not isinstance(runtime, SimulatedRuntime):
            raise TypeError("simulated_scheduler plays SimulatedRuntime models only")
        return _SimulatedScheduler(
            runtime, parallel=settings.parallel, max_queue=settings.max_queue, rng=rng
        )

    return factory
