"""The compute thread: engines stepped in turn, calls between steps, a failing engine detached."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from shared.runtimes.compute_thread import ComputeThread, compute_thread, run_compute


class StepCounter:
    """An engine with ``steps`` steps of work; records the thread of each step."""

    def __init__(self, steps: int, *, boom_at: int | None = None) -> None:
        self.left = steps
        self.boom_at = boom_at
        self.threads: set[int] = set()
        self.failed: BaseException | None = None
        self.finished = threading.Event()

    def has_work(self) -> bool:
        return self.left > 0

    def work(self) -> None:
        self.threads.add(threading.get_ident())
        if self.boom_at is not None and self.left == self.boom_at:
            raise RuntimeError("step bug")
        self.left -= 1
        if self.left == 0:
            self.finished.set()

    def fail(self, error: BaseException) -> None:
        self.failed = error
        self.left = 0
        self.finished.set()


def test_engines_and_calls_all_run_on_the_one_thread() -> None:
    worker = ComputeThread(name="test-compute")
    first, second = StepCounter(50), StepCounter(50)
    worker.attach(first)
    worker.attach(second)
    called_on = worker.call(threading.get_ident).result(timeout=10)
    assert first.finished.wait(10) and second.finished.wait(10)
    assert first.threads == second.threads == {called_on}
    assert called_on != threading.get_ident()
    # Work attached later is picked up (the thread waits for it, it does not poll).
    late = StepCounter(3)
    worker.attach(late)
    worker.wake()
    assert late.finished.wait(10) and late.threads == {called_on}


def test_a_call_returns_its_value_or_raises_its_error_and_a_cancelled_one_never_runs() -> None:
    worker = ComputeThread(name="test-compute")
    assert worker.call(lambda a, b=0: a + b, 2, b=3).result(timeout=10) == 5
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0).result(timeout=10)
    # Block the thread, queue a call, cancel it before its turn: it must not run.
    gate, ran = threading.Event(), threading.Event()
    blocker = worker.call(gate.wait, 10)
    queued: Future[None] = worker.call(ran.set)
    assert queued.cancel()
    gate.set()
    assert blocker.result(timeout=10) is True
    worker.call(lambda: None).result(timeout=10)  # everything queued before has had its turn
    assert not ran.is_set()


def test_a_call_made_on_the_thread_runs_at_once() -> None:
    worker = ComputeThread(name="test-compute")
    nested = worker.call(lambda: worker.call(threading.get_ident).result(timeout=0))
    assert nested.result(timeout=10) == worker.call(threading.get_ident).result(timeout=10)


def test_an_engine_whose_step_raises_is_failed_and_detached_and_the_others_go_on() -> None:
    worker = ComputeThread(name="test-compute")
    broken, healthy = StepCounter(10, boom_at=5), StepCounter(40)
    worker.attach(broken)
    worker.attach(healthy)
    assert broken.finished.wait(10) and healthy.finished.wait(10)
    assert isinstance(broken.failed, RuntimeError) and str(broken.failed) == "step bug"
    assert healthy.failed is None and healthy.left == 0
    broken.left = 5  # work again, but detached: never stepped
    worker.call(lambda: None).result(timeout=10)
    assert broken.left == 5


async def test_the_process_thread_is_one_and_awaitable() -> None:
    assert compute_thread() is compute_thread()
    ident = await run_compute(threading.get_ident)
    assert ident == compute_thread().call(threading.get_ident).result(timeout=10)
    assert ident != threading.get_ident()
