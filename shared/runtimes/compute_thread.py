"""The one thread of a process that runs llama.cpp compute.

    worker = compute_thread()                 # the process's own, started on first use
    worker.attach(decoder)                    # an Engine: stepped while it has work
    vectors = worker.call(fn, *args).result() # fn on this thread, between two steps
    vectors = await run_compute(fn, *args)    # the same from asyncio

llama-cpp-python's wheels build ggml with OpenMP. libgomp keeps a team of worker threads for
every thread that has run a parallel region, for as long as that thread lives. Once a process
holds more such workers than it has CPUs, libgomp stops spinning at barriers and sleeps at each
one, and ggml meets a barrier after every node of the graph. Measured on 2 cores: one
``/v1/embeddings`` call from a pool thread cut the decoder's single stream from about 94 to 33
tokens/s, until that thread ended. So every decode step and every embedding of a process runs
here: the decoders of all its models (main, extra, the hub's) take turns, one step each, and
other compute (an embedding) runs between two steps.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

__all__ = ["ComputeThread", "Engine", "compute_thread", "run_compute"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Engine(Protocol):
    """Something stepped on the compute thread (a ``BatchedDecoder``)."""

    def has_work(self) -> bool:
        """Whether :meth:`work` has something to do (read under the thread's lock)."""
        ...

    def work(self) -> None:
        """One step: admit waiting requests, decode one token of each running sequence."""
        ...

    def fail(self, error: BaseException) -> None:
        """End every request after :meth:`work` raised; the thread detaches the engine."""
        ...


class ComputeThread:
    """Steps its engines in turn and runs calls between steps, all on one thread."""

    def __init__(self, name: str = "agl-compute") -> None:
        self._cv = threading.Condition()
        self._engines: list[Engine] = []
        self._calls: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def on_thread(self) -> bool:
        """Whether the caller is this compute thread."""
        return threading.current_thread() is self._thread

    def attach(self, engine: Engine) -> None:
        """Step ``engine`` from now on, whenever it has work."""
        with self._cv:
            self._engines.append(engine)
            self._cv.notify()

    def detach(self, engine: Engine) -> None:
        """Stop stepping ``engine`` (call on this thread, or with no step of it running)."""
        with self._cv:
            if engine in self._engines:
                self._engines.remove(engine)

    def wake(self) -> None:
        """An engine has new work (a request was queued)."""
        with self._cv:
            self._cv.notify()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on this thread between two steps; its result's Future.

        On this thread already, it runs at once. A Future cancelled before its turn never runs.
        """
        future: Future[T] = Future()
        if self.on_thread:
            _run(future, lambda: fn(*args, **kwargs))
            return future
        with self._cv:
            self._calls.append((future, lambda: fn(*args, **kwargs)))
            self._cv.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._calls and not any(e.has_work() for e in self._engines):
                    self._cv.wait()
                call = self._calls.popleft() if self._calls else None
            if call is not None:
                _run(*call)  # first: it may close (detach) an engine
            with self._cv:
                engines = list(self._engines)
            for engine in engines:
                if not engine.has_work():
                    continue
                try:
                    engine.work()
                except Exception as exc:  # a bug in a step must not stop the other models
                    log.exception("a decoder step failed; its requests are ended")
                    self.detach(engine)
                    engine.fail(exc)


def _run(future: Future[T], fn: Callable[[], T]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)


_process_thread: ComputeThread | None = None
_process_lock = threading.Lock()


def compute_thread() -> ComputeThread:
    """The process's compute thread (created on first use, lives as long as the process)."""
    global _process_thread
    with _process_lock:
        if _process_thread is None:
            _process_thread = ComputeThread()
        return _process_thread


async def run_compute(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Await ``fn(*args, **kwargs)`` run on the process's compute thread."""
    return await asyncio.wrap_future(compute_thread().call(fn, *args, **kwargs))
