"""The batched decoder on the real bundled model: equality with decoding alone, cancellation in
prefill and in decode, a failing sampler, a prompt too long for a slot, grammar, logprobs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.errors import AglError, ContextOverflowError, SamplingError
from shared.model_files import bundled_model_path
from shared.runtimes.batched import BatchedDecoder, default_sampler
from shared.runtimes.compute_thread import compute_thread
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.grammar import schema_source
from shared.runtimes.slots import DecodeJob
from shared.runtimes.types import GenerationEnd, SamplingParams, TokenPiece

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about cats.",
    "Count from one to ten.",
    "Tell me about the sea.",
]
GREEDY = SamplingParams(max_tokens=24, temperature=0)


@pytest.fixture(scope="module")
def runtime() -> Iterator[GgufRuntime]:
    rt = GgufRuntime.load(bundled_model_path(), n_ctx=512, n_threads=1)
    yield rt
    rt.close()


@dataclass
class Outcome:
    """What one job received, filled on the decode thread."""

    pieces: list[TokenPiece] = field(default_factory=list)
    end: GenerationEnd | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def post(self, item: object) -> None:
        if isinstance(item, TokenPiece):
            self.pieces.append(item)
        elif isinstance(item, GenerationEnd):
            self.end = item
        else:
            assert isinstance(item, BaseException)
            self.error = item

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    def wait(self) -> Outcome:
        assert self.done.wait(300), "the job never ended"
        return self


def submit(
    decoder: BatchedDecoder,
    runtime: GgufRuntime,
    question: str,
    params: SamplingParams = GREEDY,
    *,
    on_piece: Callable[[Outcome], None] | None = None,
) -> tuple[Outcome, DecodeJob]:
    out = Outcome()

    def post(item: object) -> None:
        out.post(item)
        if on_piece is not None and isinstance(item, TokenPiece):
            on_piece(out)

    prompt = runtime.prepare_chat([{"role": "user", "content": question}])
    job = DecodeJob(prompt, params, post, out.done.set)
    decoder.submit(job)
    return out, job


def alone(runtime: GgufRuntime, question: str, params: SamplingParams = GREEDY) -> Outcome:
    decoder = BatchedDecoder(runtime, parallel=4)
    try:
        return submit(decoder, runtime, question, params)[0].wait()
    finally:
        decoder.close()


def test_greedy_text_is_the_same_batched_as_alone(runtime: GgufRuntime) -> None:
    expected = [alone(runtime, q).text for q in QUESTIONS]
    decoder = BatchedDecoder(runtime, parallel=4)
    try:
        outs = [submit(decoder, runtime, q)[0] for q in QUESTIONS]
        got = [o.wait().text for o in outs]
    finally:
        decoder.close()
    assert got == expected
    assert all(o.end is not None and o.end.finish_reason == "length" for o in outs)
    assert all(o.end is not None and o.end.completion_tokens == 24 for o in outs)


def test_alone_matches_the_runtimes_own_generate(runtime: GgufRuntime) -> None:
    prompt = runtime.prepare_chat([{"role": "user", "content": QUESTIONS[1]}])
    reference = "".join(
        e.text for e in runtime.generate(prompt, GREEDY) if isinstance(e, TokenPiece)
    )
    assert alone(runtime, QUESTIONS[1]).text == reference


def test_more_requests_than_slots_wait_their_turn(runtime: GgufRuntime) -> None:
    decoder = BatchedDecoder(runtime, parallel=2)
    try:
        outs = [submit(decoder, runtime, q)[0] for q in QUESTIONS * 2]
        texts = [o.wait().text for o in outs]
        assert decoder.busy == 0 and decoder.waiting == 0
    finally:
        decoder.close()
    assert texts[:4] == texts[4:]  # the same question gives the same answer, cache or not


class CancelInPrefill:
    """An observer that cancels a job at the first step that reads part of a prompt."""

    def __init__(self) -> None:
        self.job: DecodeJob | None = None
        self.prefill_steps = 0

    def step(
        self, *, sequences: int, prefill_tokens: int, decode_tokens: int, seconds: float
    ) -> None:
        if prefill_tokens and self.job is not None:
            self.prefill_steps += 1
            self.job.cancelled.set()

    def admitted(self, *, queue_wait_s: float, busy: int) -> None: ...

    def released(self, *, busy: int) -> None: ...


def test_cancel_during_prefill_frees_the_slot_and_others_go_on(runtime: GgufRuntime) -> None:
    expected = alone(runtime, QUESTIONS[0], SamplingParams(max_tokens=40, temperature=0)).text
    watcher = CancelInPrefill()
    decoder = BatchedDecoder(runtime, parallel=2, prefill_chunk=8, observer=watcher)
    try:
        started = threading.Event()
        first, _ = submit(
            decoder,
            runtime,
            QUESTIONS[0],
            SamplingParams(max_tokens=40, temperature=0),
            on_piece=lambda o: started.set(),
        )
        assert started.wait(120)
        long_question = "Summarise this. " + "The sea is wide and deep. " * 30
        watcher.job = None
        out, job = submit(decoder, runtime, long_question)
        watcher.job = job
        out.wait()
        assert first.wait().text == expected
        assert decoder.busy == 0
    finally:
        decoder.close()
    assert out.end is not None and out.end.finish_reason == "cancelled"
    assert out.end.completion_tokens == 0 and out.pieces == []
    assert watcher.prefill_steps >= 1


def test_cancel_during_decode_frees_the_slot_and_others_go_on(runtime: GgufRuntime) -> None:
    expected = [alone(runtime, q).text for q in QUESTIONS[1:]]
    decoder = BatchedDecoder(runtime, parallel=4)
    try:
        victim: list[DecodeJob] = []

        def cancel_after_three(out: Outcome) -> None:
            if len(out.pieces) == 3:
                victim[0].cancelled.set()

        cancelled, job = submit(
            decoder,
            runtime,
            QUESTIONS[0],
            SamplingParams(max_tokens=200, temperature=0),
            on_piece=cancel_after_three,
        )
        victim.append(job)
        others = [submit(decoder, runtime, q)[0] for q in QUESTIONS[1:]]
        assert [o.wait().text for o in others] == expected
        cancelled.wait()
        assert decoder.busy == 0
    finally:
        decoder.close()
    assert cancelled.end is not None and cancelled.end.finish_reason == "cancelled"
    assert cancelled.end.completion_tokens == 3


@dataclass
class SamplerThatFailsAtToken3:
    """Stands in for a sampler that breaks mid-answer (a corrupt grammar state, a llama.cpp error)."""

    inner: Any
    n: int = 0

    def sample(self, ctx: Any, idx: int) -> int:
        self.n += 1
        if self.n == 3:
            raise RuntimeError("sampler state corrupted")
        return int(self.inner.sample(ctx, idx))

    def close(self) -> None:
        self.inner.close()


def test_a_failing_sampler_fails_only_its_request(runtime: GgufRuntime) -> None:
    expected = [alone(runtime, q).text for q in QUESTIONS[1:]]

    def factory(rt: GgufRuntime, params: SamplingParams) -> Any:
        real = default_sampler(rt, params)
        return SamplerThatFailsAtToken3(real) if params.seed == 13 else real

    decoder = BatchedDecoder(runtime, parallel=4, sampler_factory=factory)
    try:
        bad, _ = submit(decoder, runtime, QUESTIONS[0], SamplingParams(temperature=0, seed=13))
        good = [submit(decoder, runtime, q)[0] for q in QUESTIONS[1:]]
        assert [o.wait().text for o in good] == expected
        bad.wait()
        assert decoder.busy == 0
    finally:
        decoder.close()
    assert isinstance(bad.error, SamplingError)
    assert "sampler state corrupted" in str(bad.error)
    assert bad.end is None and len(bad.pieces) == 2


def test_a_prompt_longer_than_a_slot_is_refused_with_token_counts(runtime: GgufRuntime) -> None:
    decoder = BatchedDecoder(runtime, parallel=2)
    try:
        out, _ = submit(decoder, runtime, "word " * 600)
        out.wait()
        ok, _ = submit(decoder, runtime, QUESTIONS[0])
        assert ok.wait().end is not None
    finally:
        decoder.close()
    assert isinstance(out.error, ContextOverflowError)
    assert out.error.n_ctx == 512 and out.error.prompt_tokens > 512
    assert f"the prompt has {out.error.prompt_tokens} tokens" in str(out.error)


def test_grammar_logprobs_and_stop_strings_per_sequence(runtime: GgufRuntime) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    decoder = BatchedDecoder(runtime, parallel=4)
    try:
        constrained, _ = submit(
            decoder,
            runtime,
            QUESTIONS[0],
            SamplingParams(max_tokens=64, temperature=0, grammar=schema_source(schema)),
        )
        scored, _ = submit(
            decoder,
            runtime,
            QUESTIONS[0],
            SamplingParams(max_tokens=5, temperature=0, logprobs=True, top_logprobs=3),
        )
        stopped, _ = submit(
            decoder,
            runtime,
            QUESTIONS[2],
            SamplingParams(max_tokens=64, temperature=0, stop=("3",)),
        )
        sampled, _ = submit(
            decoder, runtime, QUESTIONS[3], SamplingParams(max_tokens=16, temperature=0.9, seed=7)
        )
        for o in (constrained, scored, stopped, sampled):
            o.wait()
    finally:
        decoder.close()
    import json

    assert isinstance(json.loads(constrained.text)["city"], str)
    assert scored.pieces and all(p.logprob is not None for p in scored.pieces)
    assert all(len(p.top_logprobs) == 3 for p in scored.pieces)
    first = scored.pieces[0]
    assert first.logprob == pytest.approx(first.top_logprobs[0].logprob)  # greedy took the best
    assert "3" not in stopped.text and stopped.end is not None
    assert stopped.end.finish_reason == "stop"
    assert sampled.end is not None and sampled.end.completion_tokens == 16
    again = alone(runtime, QUESTIONS[3], SamplingParams(max_tokens=16, temperature=0.9, seed=7))
    assert again.text == sampled.text  # a seed gives the same draw, batched or alone


def test_shared_prefix_is_copied_not_recomputed(runtime: GgufRuntime) -> None:
    counted: list[int] = []

    class CountPrefill:
        def step(
            self, *, sequences: int, prefill_tokens: int, decode_tokens: int, seconds: float
        ) -> None:
            counted.append(prefill_tokens)

        def admitted(self, *, queue_wait_s: float, busy: int) -> None: ...

        def released(self, *, busy: int) -> None: ...

    system = {"role": "system", "content": "You are a terse assistant. " * 8}
    decoder = BatchedDecoder(runtime, parallel=2, observer=CountPrefill())
    done: queue.Queue[object] = queue.Queue()
    try:
        first = runtime.prepare_chat([system, {"role": "user", "content": QUESTIONS[0]}])
        second = runtime.prepare_chat([system, {"role": "user", "content": QUESTIONS[1]}])
        decoder.submit(DecodeJob(first, GREEDY, lambda _: None, lambda: done.put(1)))
        done.get(timeout=300)
        read_first = sum(counted)
        counted.clear()
        # the first slot is free again, so take it out of play with a long-running job
        blocker = DecodeJob(
            first, SamplingParams(max_tokens=400, temperature=0), lambda _: None, lambda: None
        )
        decoder.submit(blocker)
        decoder.submit(DecodeJob(second, GREEDY, lambda _: None, lambda: done.put(2)))
        done.get(timeout=300)
        blocker.cancelled.set()
    finally:
        decoder.close()
    assert read_first == len(first.tokens)
    shared = next(
        i for i, (a, b) in enumerate(zip(first.tokens, second.tokens, strict=False)) if a != b
    )
    assert sum(counted) <= len(second.tokens) - shared + 1  # the blocker re-read one token


def test_all_layers_on_the_gpu_setting_decodes_on_a_cpu_build() -> None:
    """``n_gpu_layers = -1`` (the hub's default) loads and batches; on a CPU build it is a no-op."""
    rt = GgufRuntime.load(bundled_model_path(), n_ctx=256, n_threads=1, n_gpu_layers=-1)
    decoder = BatchedDecoder(rt, parallel=2)
    try:
        outs = [
            submit(decoder, rt, q, SamplingParams(max_tokens=4, temperature=0))[0]
            for q in QUESTIONS[:2]
        ]
        ends = [o.wait().end for o in outs]
    finally:
        decoder.close()
        rt.close()
    assert all(e is not None and e.completion_tokens == 4 for e in ends)


def test_a_queued_request_cancelled_before_its_turn_ends_without_a_slot(
    runtime: GgufRuntime,
) -> None:
    decoder = BatchedDecoder(runtime, parallel=1)
    try:
        started = threading.Event()
        blocker, blocker_job = submit(
            decoder,
            runtime,
            QUESTIONS[3],
            SamplingParams(max_tokens=400, temperature=0),
            on_piece=lambda o: started.set(),
        )
        assert started.wait(120)
        queued, job = submit(decoder, runtime, QUESTIONS[0])
        job.cancelled.set()
        queued.wait()
        assert decoder.waiting == 0
        blocker_job.cancelled.set()
        blocker.wait()
    finally:
        decoder.close()
    assert queued.end is not None and queued.end.finish_reason == "cancelled"
    assert queued.end.completion_tokens == 0 and queued.pieces == []


@dataclass
class SamplerThatNotesItsThread:
    """The real sampler, noting the thread each token is sampled on (a spy, nothing faked)."""

    inner: Any
    threads: set[int]

    def sample(self, ctx: Any, idx: int) -> int:
        self.threads.add(threading.get_ident())
        return int(self.inner.sample(ctx, idx))

    def close(self) -> None:
        self.inner.close()


def test_two_models_and_embeddings_compute_on_the_process_s_one_thread(
    runtime: GgufRuntime,
) -> None:
    # A second thread running llama.cpp (OpenMP) would slow every model of the process ~3x.
    threads: set[int] = set()

    def noting(rt: GgufRuntime, params: SamplingParams) -> Any:
        return SamplerThatNotesItsThread(default_sampler(rt, params), threads)

    expected = [alone(runtime, q).text for q in QUESTIONS[:2]]
    other = GgufRuntime.load(bundled_model_path(), n_ctx=512, n_threads=1)
    first = BatchedDecoder(runtime, parallel=2, sampler_factory=noting)
    second = BatchedDecoder(other, parallel=2, sampler_factory=noting)
    try:
        outs = [
            submit(decoder, rt, q)[0]
            for decoder, rt in ((first, runtime), (second, other))
            for q in QUESTIONS[:2]
        ]
        vectors, used = compute_thread().call(other.embed, ["hello", "world"]).result(timeout=120)
        assert [o.wait().text for o in outs] == expected * 2  # both models, same answers
        assert len(vectors) == 2 and used > 0
    finally:
        first.close()
        second.close()
        other.close()
    assert threads == {compute_thread().call(threading.get_ident).result(timeout=10)}


class ObserverThatBreaksAtStep3:
    """Stands in for a bug outside the sampler that raises mid-step (a metrics back-end error)."""

    def __init__(self) -> None:
        self.steps = 0

    def step(
        self, *, sequences: int, prefill_tokens: int, decode_tokens: int, seconds: float
    ) -> None:
        self.steps += 1
        if self.steps == 3:
            raise RuntimeError("metrics back-end broke")

    def admitted(self, *, queue_wait_s: float, busy: int) -> None: ...

    def released(self, *, busy: int) -> None: ...


def test_a_step_that_raises_ends_that_decoder_s_requests_and_the_other_decoder_goes_on(
    runtime: GgufRuntime,
) -> None:
    expected = alone(runtime, QUESTIONS[1]).text
    broken = BatchedDecoder(runtime, parallel=2, observer=ObserverThatBreaksAtStep3())
    healthy = BatchedDecoder(runtime, parallel=2)
    try:
        lost, _ = submit(broken, runtime, QUESTIONS[0])
        kept, _ = submit(healthy, runtime, QUESTIONS[1])
        lost.wait()
        assert kept.wait().text == expected
        with pytest.raises(AglError, match="the decoder is shut down"):
            submit(broken, runtime, QUESTIONS[2])
    finally:
        broken.close()  # still frees its context
        healthy.close()
    assert isinstance(lost.error, AglError) and lost.end is None
    assert "the decoder failed (metrics back-end broke)" in str(lost.error)
