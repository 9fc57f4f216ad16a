"""The batched decoder's figures for one model: the decoder calls this observer each step.

observer = BatchObserver(instruments, "smollm2")
decoder = BatchedDecoder(runtime, parallel=4, observer=observer)
"""

from __future__ import annotations

from shared.telemetry.instruments import Instruments

__all__ = ["BatchObserver"]


class BatchObserver:
    """Records ``agl.batch.*`` for one model (a ``shared.runtimes.batched.DecoderObserver``)."""

    def __init__(self, instruments: Instruments, model: str) -> None:
        self._busy = instruments.batch_slots_busy.labels(model)
        self._size = instruments.batch_size.labels(model)
        self._prefill = instruments.batch_tokens.labels(model, "prefill")
        self._decode = instruments.batch_tokens.labels(model, "decode")
        self._wait = instruments.batch_queue_wait.labels(model)
        self._busy.set(0)

    def step(
        self, *, sequences: int, prefill_tokens: int, decode_tokens: int, seconds: float
    ) -> None:
        """One decode step: its batch size and the tokens it read."""
        if sequences:
            self._size.observe(sequences)
        if prefill_tokens:
            self._prefill.inc(prefill_tokens)
        if decode_tokens:
            self._decode.inc(decode_tokens)

    def admitted(self, *, queue_wait_s: float, busy: int) -> None:
        """A generation got a slot."""
        self._wait.observe(queue_wait_s)
        self._busy.set(busy)

    def released(self, *, busy: int) -> None:
        """A generation left its slot."""
        self._busy.set(busy)
