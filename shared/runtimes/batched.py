"""Continuous batching: one llama.cpp context decodes up to ``parallel`` sequences per step.

    decoder = BatchedDecoder(runtime, parallel=4)
    decoder.submit(DecodeJob(prompt, params, post=on_event, done=on_done))
    ...
    decoder.close()

The process's compute thread (:mod:`shared.runtimes.compute_thread`) owns the context and steps
every decoder of the process in turn: one thread runs all llama.cpp compute. Each step decodes
one token of every generating sequence in one ``llama_batch`` (one ``llama_decode``), then one
chunk of a prompt still being read (prefill) in a second (see ``_step`` for why apart); every
sequence with fresh logits samples its next token with its own sampler chain
(:mod:`shared.runtimes.sampling`). A request joins at the next step when a slot is free,
otherwise it waits in FIFO order. Each slot is one KV sequence holding ``n_ctx`` tokens (the
runtime's context size), so a prompt that fits :meth:`GgufRuntime.check_fits` fits a slot. A
long prompt is read ``prefill_chunk`` tokens per step while others generate, so it never stalls
their streams for long. A prompt that starts like a sequence already in the cache (the same
system prompt) copies those cells instead of recomputing them (:mod:`shared.runtimes.slots`).

A failure of one sequence's sampler (a grammar that allows no token …) ends that request with
the error; the others go on. With one sequence the step does what ``Llama.generate`` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

from shared.errors import AglError, ContextOverflowError, SamplingError
from shared.runtimes.compute_thread import ComputeThread, compute_thread
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.sampling import SequenceSampler, logprobs_of
from shared.runtimes.slots import (
    MIN_COPY_TOKENS,
    DecodeJob,
    Running,
    Slot,
    finish_reason_of,
    plan_reuse,
)
from shared.runtimes.stops import StopStringFilter
from shared.runtimes.types import (
    FinishReason,
    GenerationEnd,
    SamplingParams,
    TokenPiece,
    TopLogprob,
)

__all__ = ["BatchedDecoder", "DecodeJob", "DecoderObserver", "SamplerFactory"]

log = logging.getLogger(__name__)

#: Seconds between sweeps of the queue for jobs whose caller went away.
_SWEEP_S = 0.05


class DecoderObserver(Protocol):
    """Where the decoder reports its figures (metrics); called on the decode thread."""

    def step(
        self, *, sequences: int, prefill_tokens: int, decode_tokens: int, seconds: float
    ) -> None:
        """One ``llama_decode``: sequences sampled, prompt and generated tokens read."""

    def admitted(self, *, queue_wait_s: float, busy: int) -> None:
        """A request got a slot after waiting ``queue_wait_s``; ``busy`` slots are in use."""

    def released(self, *, busy: int) -> None:
        """A request left its slot."""


class SamplerFactory(Protocol):
    """Makes a sequence's sampler (a seam: tests can stand in a failing one)."""

    def __call__(self, runtime: GgufRuntime, params: SamplingParams) -> Any: ...


def default_sampler(runtime: GgufRuntime, params: SamplingParams) -> SequenceSampler:
    """The real sampler: llama.cpp's chain, plus the request's grammar if it has one."""
    gbnf = None if params.grammar is None else runtime.checked_gbnf(params.grammar)
    lib = runtime._lib
    return SequenceSampler.create(lib, runtime._vocab, runtime.n_vocab, params, gbnf=gbnf)


class BatchedDecoder:
    """``parallel`` slots on one llama.cpp context, decoded together (see the module docs)."""

    def __init__(
        self,
        runtime: GgufRuntime,
        *,
        parallel: int = 4,
        n_batch: int = 512,
        prefill_chunk: int = 256,
        observer: DecoderObserver | None = None,
        sampler_factory: SamplerFactory = default_sampler,
        worker: ComputeThread | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        lib = runtime._lib
        self._lib, self._rt = lib, runtime
        self.parallel = parallel
        self.n_batch = max(n_batch, parallel)
        self.prefill_chunk = max(1, prefill_chunk)
        self.observer = observer
        """Where figures go (None: nowhere); may be set while the decoder runs."""
        self._make_sampler = sampler_factory
        self._ctx = self._new_context(runtime, parallel)
        self.n_ctx_seq = int(lib.llama_n_ctx_seq(self._ctx))
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self._slots = [Slot(i) for i in range(parallel)]
        self._pending: deque[DecodeJob] = deque()
        self._lock = threading.Lock()
        self._closing = False
        """No more requests (closed, or a step failed)."""
        self._closed = False
        self._next_sweep = 0.0
        """When the queue is next swept for cancelled jobs (``time.monotonic()``)."""
        self._pieces: dict[int, bytes] = {}
        """Each token's bytes, decoded once: at most n_vocab entries (a few MB for 150k tokens)."""
        self._copied: set[int] = set()
        """Slots whose copied cells arrive at the next decode (no copy source until then)."""
        # A copy moves a whole sequence's cells: worth it when it saves a real prefill.
        self._min_copy = max(MIN_COPY_TOKENS, self.n_ctx_seq // 64)
        self._worker = worker or compute_thread()
        self._worker.attach(self)

    def _new_context(self, runtime: GgufRuntime, parallel: int) -> Any:
        lib = self._lib
        # The runtime's own parameters (flash attention, RoPE …): the same numbers as alone.
        p = lib.llama_context_params.from_buffer_copy(runtime._llm.context_params)
        p.n_ctx = runtime.n_ctx * parallel
        p.n_batch = p.n_ubatch = self.n_batch
        p.n_seq_max = parallel
        p.n_threads = p.n_threads_batch = runtime.n_threads
        p.kv_unified = False  # each sequence its own n_ctx cells: a slot is a full context
        ctx = lib.llama_init_from_model(runtime._llm._model.model, p)
        if not ctx:
            raise AglError(
                f"llama.cpp could not create a context of {parallel} x {runtime.n_ctx} tokens; "
                "lower parallel or n_ctx"
            )
        return ctx

    # -- the caller's side --------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Slots generating now."""
        return sum(1 for s in self._slots if s.busy)

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._pending)

    def submit(self, job: DecodeJob) -> None:
        """Queue ``job``; it joins the batch at the next step once a slot is free."""
        with self._lock:
            if self._closing:
                raise AglError("the decoder is shut down")
            self._pending.append(job)
        self._worker.wake()

    def close(self) -> None:
        """End every request and free the context, on the compute thread.

        Waits for the step in progress (one ``llama_decode``, however slow the machine): the
        caller frees the model next, which must never happen under a running decode.
        """
        with self._lock:
            if self._closed:
                return  # closed already (or being closed): the context is freed once
            self._closed = self._closing = True
        self._worker.call(self._free).result()

    # -- on the compute thread ----------------------------------------------------------

    def has_work(self) -> bool:
        """Requests wait or sequences run (the compute thread steps it then)."""
        return bool(self._pending) or any(s.busy for s in self._slots)

    def work(self) -> None:
        """Admit what fits, then one step of every running sequence."""
        self._admit()
        if any(s.busy for s in self._slots):
            self._step()

    def fail(self, error: BaseException) -> None:
        """A step raised: end every request with it; the decoder takes no more."""
        with self._lock:
            self._closing = True
        self._shutdown(AglError(f"the decoder failed ({error}); the model must be reloaded"))

    def _free(self) -> None:
        self._worker.detach(self)
        self._shutdown(AglError("the model is shutting down"))
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._ctx)

    def _shutdown(self, error: AglError) -> None:
        with self._lock:
            left, self._pending = list(self._pending), deque()
        for slot in self._slots:
            if slot.run is not None:
                self._end(slot, error=error)
        for job in left:
            job.post(error)
            job.done()

    def _admit(self) -> None:
        if not self._pending:
            return
        if time.monotonic() >= self._next_sweep:
            self._drop_cancelled()
        while self._pending:
            free = [s for s in self._slots if not s.busy]
            with self._lock:
                if not free or not self._pending:
                    return
                job = self._pending.popleft()
            self._start(job, free)

    def _drop_cancelled(self) -> None:
        """End queued jobs whose caller went away, so they stop holding a place in the queue.

        A pass over the whole queue (``max_queue`` may be thousands): at most every
        ``_SWEEP_S``, not at every step; a job that reaches a slot is checked there anyway.
        """
        self._next_sweep = time.monotonic() + _SWEEP_S
        with self._lock:
            kept: deque[DecodeJob] = deque()
            gone: list[DecodeJob] = []
            for job in self._pending:
                (gone if job.cancelled.is_set() else kept).append(job)
            self._pending = kept
        for job in gone:
            self._cancelled(job)

    @staticmethod
    def _cancelled(job: DecodeJob) -> None:
        """End a job that never got (or never used) a slot."""
        job.post(GenerationEnd("cancelled", len(job.prompt.tokens), 0))
        job.done()

    def _start(self, job: DecodeJob, free: list[Slot]) -> None:
        tokens = job.prompt.tokens
        if job.cancelled.is_set():
            self._cancelled(job)
            return
        try:
            if len(tokens) + 1 > self.n_ctx_seq:
                raise ContextOverflowError(
                    prompt_tokens=len(tokens), max_tokens=None, n_ctx=self.n_ctx_seq
                )
            sampler = self._make_sampler(self._rt, job.params)
        except Exception as exc:
            job.post(
                exc if isinstance(exc, AglError) else SamplingError(f"sampler setup failed: {exc}")
            )
            job.done()
            return
        dst, src, n = plan_reuse(
            tokens, free, self._slots, min_copy=self._min_copy, not_from=self._copied
        )
        lib, mem = self._lib, self._mem
        if src is not None:
            lib.llama_memory_seq_rm(mem, dst.seq_id, -1, -1)
            lib.llama_memory_seq_cp(mem, src.seq_id, dst.seq_id, -1, -1)  # whole sequences only
            self._copied.add(dst.seq_id)
            dst.cached = src.cached[:n]
        else:
            dst.cached = dst.cached[:n]
        lib.llama_memory_seq_rm(mem, dst.seq_id, n, -1)
        budget = min(job.params.max_tokens, self.n_ctx_seq - len(tokens))
        stops = StopStringFilter([*job.prompt.stop, *job.params.stop])
        dst.run = Running(job, sampler, list(tokens[n:]), max(budget, 0), stops)
        if self.observer is not None:
            wait = time.monotonic() - job.queued_at
            self.observer.admitted(queue_wait_s=wait, busy=self.busy)

    def _step(self) -> None:
        """One decode of every generating sequence, then one prefill chunk of one prompt.

        The two are separate ``llama_decode`` calls: llama.cpp splits a multi-sequence batch
        into equal per-sequence parts, so a prompt read next to other sequences would be cut
        differently than alone and its numbers (and greedy text) could differ. Apart, a prompt is
        read in ``prefill_chunk`` pieces whether others run or not.
        """
        b = self._batch
        outputs: list[tuple[int, Slot]] = []
        n = 0
        filling: Slot | None = None
        for slot in self._slots:
            run = slot.run
            if run is None:
                continue
            if run.job.cancelled.is_set():
                self._end(slot, finish="cancelled")
            elif run.pending:
                filling = filling or slot
            else:  # generating: its last token, one row
                b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0], b.logits[n] = (
                    run.last,
                    len(slot.cached),
                    1,
                    slot.seq_id,
                    1,
                )
                slot.cached.append(run.last)
                outputs.append((n, slot))
                n += 1
        if n:
            self._decode(n, outputs, prefill=0)
        if filling is not None and filling.run is not None:
            self._prefill(filling)

    def _prefill(self, slot: Slot) -> None:
        run = slot.run
        assert run is not None
        b = self._batch
        take = min(len(run.pending), self.prefill_chunk, self.n_batch)
        chunk, run.pending = run.pending[:take], run.pending[take:]
        pos = len(slot.cached)
        seq = slot.seq_id
        for i, tok in enumerate(chunk):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = (
                tok,
                pos + i,
                1,
                seq,
                0,
            )
        slot.cached.extend(chunk)
        outputs: list[tuple[int, Slot]] = []
        if not run.pending:
            b.logits[take - 1] = 1
            outputs.append((take - 1, slot))
        self._decode(take, outputs, prefill=take)

    def _decode(self, n: int, outputs: list[tuple[int, Slot]], *, prefill: int) -> None:
        self._batch.n_tokens = n
        started = time.perf_counter()
        rc = self._lib.llama_decode(self._ctx, self._batch)
        self._copied.clear()  # pending copies are carried out before a decode computes
        if rc != 0:
            self._fail_all(rc)
            return
        for idx, slot in outputs:
            self._sampled(idx, slot)
        if self.observer is not None:
            self.observer.step(
                sequences=len(outputs),
                prefill_tokens=prefill,
                decode_tokens=n - prefill,
                seconds=time.perf_counter() - started,
            )

    def _sampled(self, idx: int, slot: Slot) -> None:
        run = slot.run
        assert run is not None
        rt, lib = self._rt, self._lib
        params = run.job.params
        try:
            token = run.sampler.sample(self._ctx, idx)
            if lib.llama_vocab_is_eog(rt._vocab, token):
                self._end(slot, finish="stop")
                return
            run.n_out += 1
            run.last = token
            logprob: float | None = None
            top: tuple[TopLogprob, ...] = ()
            if params.logprobs:
                logprob, top = logprobs_of(
                    lib, self._ctx, idx, rt.n_vocab, token, params.top_logprobs, rt.token_text
                )
            raw = self._piece(token)
            text = run.stops.feed(run.decoder.decode(raw))
            run.job.post(
                TokenPiece(text=text, token_id=token, logprob=logprob, top_logprobs=top, raw=raw)
            )
        except Exception as exc:  # this sequence's failure only
            log.warning("sequence %d failed: %s", slot.seq_id, exc)
            err = exc if isinstance(exc, AglError) else SamplingError(f"sampling failed: {exc}")
            self._end(slot, error=err, drop_cache=True)
            return
        finish = finish_reason_of(run)
        if finish is not None:
            self._end(slot, finish=finish)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = bytes(self._rt._llm.detokenize([token]))
        return piece

    def _fail_all(self, rc: int) -> None:
        err = AglError(
            f"llama_decode failed (code {rc}); the batch's requests were ended: retry the request, "
            "and if it repeats lower parallel or n_ctx (code 1: no room left in the KV cache)"
        )
        for slot in self._slots:
            if slot.run is not None:
                self._end(slot, error=err, drop_cache=True)

    def _end(
        self,
        slot: Slot,
        *,
        finish: FinishReason = "stop",
        error: BaseException | None = None,
        drop_cache: bool = False,
    ) -> None:
        run = slot.run
        assert run is not None
        slot.run = None
        job = run.job
        run.sampler.close()
        if error is not None or drop_cache:
            # A failed sequence's cells are freed; the others stay as a prefix cache (what was
            # read, prompt and answer) until the slot's next request trims them.
            self._lib.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            slot.cached = []
        try:
            if error is not None:
                job.post(error)
            else:
                tail = run.stops.feed(run.decoder.decode(b"", final=True)) + run.stops.flush()
                if tail:
                    job.post(TokenPiece(text=tail, token_id=-1))
                job.post(GenerationEnd(finish, len(job.prompt.tokens), run.n_out))
        finally:
            job.done()
            if self.observer is not None:
                self.observer.released(busy=self.busy)
