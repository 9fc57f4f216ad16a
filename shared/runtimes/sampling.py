"""Per-sequence token sampling on llama.cpp's sampler chains, for the batched decoder.

    sampler = SequenceSampler.create(lib, vocab, n_vocab, params, grammar_gbnf=None)
    token = sampler.sample(ctx, idx)      # idx: the sequence's row in the last decoded batch
    sampler.close()

The chain is the one ``llama_cpp.Llama.generate`` builds (penalties, then greedy, or top-k 40,
typical 1.0, top-p, min-p 0.05, temperature and a seeded draw), so a sequence samples the same
tokens batched as it would alone. A grammar is *not* in the chain: like llama.cpp's common
sampler, the chain picks a token, the grammar checks that one token, and only a rejected token
makes the grammar filter the whole vocabulary before the chain picks again. Most tokens of a
constrained answer are accepted at the first try, so a grammar costs little.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import SamplingError
from shared.runtimes.types import SamplingParams, TopLogprob

__all__ = ["SequenceSampler", "logprobs_of"]

#: ``Llama``'s defaults, so batched sampling matches ``Llama.generate``.
TOP_K = 40
MIN_P = 0.05
TYPICAL_P = 1.0
PENALTY_LAST_N = 64

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


def _chain(lib: Any, n_vocab: int, params: SamplingParams) -> Any:
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lib.llama_sampler_chain_add
    if params.frequency_penalty or params.presence_penalty:
        add(
            chain,
            lib.llama_sampler_init_penalties(  # called as ``Llama`` calls it
                n_vocab, PENALTY_LAST_N, 1.0, params.frequency_penalty, params.presence_penalty
            ),
        )
    if params.temperature <= 0:
        add(chain, lib.llama_sampler_init_greedy())
        return chain
    seed = lib.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
    add(chain, lib.llama_sampler_init_top_k(TOP_K))
    add(chain, lib.llama_sampler_init_typical(TYPICAL_P, 1))
    add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
    add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
    add(chain, lib.llama_sampler_init_temp(params.temperature))
    add(chain, lib.llama_sampler_init_dist(seed))
    return chain


@dataclass(slots=True)
class SequenceSampler:
    """The sampler of one sequence: its chain and, for constrained decoding, its grammar."""

    lib: Any
    chain: Any
    grammar: Any | None
    n_vocab: int
    _ids: np.ndarray | None = None
    _cands: np.ndarray | None = None
    _arr: Any = None
    _one: Any = None
    _one_arr: Any = None

    @classmethod
    def create(
        cls, lib: Any, vocab: Any, n_vocab: int, params: SamplingParams, *, gbnf: str | None
    ) -> SequenceSampler:
        """A fresh chain for ``params``; ``gbnf`` (already checked) adds a grammar."""
        grammar = None
        if gbnf is not None:
            grammar = lib.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
            if not grammar:
                raise SamplingError("llama.cpp could not compile the request's grammar")
        sampler = cls(lib, _chain(lib, n_vocab, params), grammar, n_vocab)
        if grammar is not None:
            sampler._prepare_arrays()
        return sampler

    def _prepare_arrays(self) -> None:
        lib = self.lib
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._cands = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
        self._cands["id"] = self._ids
        self._arr = lib.llama_token_data_array(
            data=self._cands.ctypes.data_as(lib.llama_token_data_p),
            size=self.n_vocab,
            selected=-1,
            sorted=False,
        )
        self._one = (lib.llama_token_data * 1)()
        self._one_arr = lib.llama_token_data_array(
            data=ctypes.cast(self._one, lib.llama_token_data_p), size=1, selected=-1, sorted=False
        )

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token from row ``idx`` of the last decode; the samplers accept it."""
        if self.grammar is None:
            return int(self.lib.llama_sampler_sample(self.chain, ctx, idx))
        return self._sample_constrained(ctx, idx)

    def _sample_constrained(self, ctx: Any, idx: int) -> int:
        lib, cands = self.lib, self._cands
        assert cands is not None
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, idx), shape=(self.n_vocab,))
        token = self._apply(self.chain, logits)
        # Does the grammar accept the chain's pick? One candidate to check, not the vocabulary.
        one = self._one[0]
        one.id, one.logit, one.p = token, 1.0, 0.0
        self._one_arr.size, self._one_arr.selected, self._one_arr.sorted = 1, -1, False
        lib.llama_sampler_apply(self.grammar, ctypes.byref(self._one_arr))
        if not np.isfinite(self._one[0].logit):
            # Rejected: the grammar filters the whole vocabulary, then the chain picks again.
            self._fill(logits)
            lib.llama_sampler_apply(self.grammar, ctypes.byref(self._arr))
            if not np.isfinite(cands["logit"]).any():
                raise SamplingError("the grammar allows no next token; the schema cannot be met")
            lib.llama_sampler_apply(self.chain, ctypes.byref(self._arr))
            token = self._selected()
        lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain, token)
        return token

    def _apply(self, sampler: Any, logits: np.ndarray) -> int:
        self._fill(logits)
        self.lib.llama_sampler_apply(sampler, ctypes.byref(self._arr))
        return self._selected()

    def _fill(self, logits: np.ndarray) -> None:
        """Every token as a candidate with its logit (samplers reorder and cut the array)."""
        cands = self._cands
        assert cands is not None
        cands["id"] = self._ids
        cands["logit"] = logits
        cands["p"] = 0.0
        arr = self._arr
        arr.data = self._cands.ctypes.data_as(self.lib.llama_token_data_p)  # type: ignore[union-attr]
        arr.size, arr.selected, arr.sorted = self.n_vocab, -1, False

    def _selected(self) -> int:
        arr = self._arr
        if arr.selected < 0 or arr.selected >= arr.size:
            raise SamplingError("the sampler chain selected no token")
        token = int(arr.data[arr.selected].id)
        if not np.isfinite(arr.data[arr.selected].logit):
            raise SamplingError("the grammar allows no next token; the schema cannot be met")
        return token

    def close(self) -> None:
        """Free the llama.cpp samplers (once)."""
        if self.chain is not None:
            self.lib.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar is not None:
            self.lib.llama_sampler_free(self.grammar)
            self.grammar = None


def logprobs_of(
    lib: Any, ctx: Any, idx: int, n_vocab: int, token: int, top_n: int, text_of: Any
) -> tuple[float, tuple[TopLogprob, ...]]:
    """The log-probability of ``token`` and the ``top_n`` best, from row ``idx``'s raw logits."""
    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, idx), shape=(n_vocab,))
    peak = float(logits.max())
    log_z = peak + float(np.log(np.exp(logits - peak).sum()))
    logprob = float(logits[token]) - log_z
    if top_n <= 0:
        return logprob, ()
    k = min(top_n, n_vocab)
    best = np.argpartition(logits, -k)[-k:]
    best = best[np.argsort(-logits[best])]
    return logprob, tuple(
        TopLogprob(token=text_of(int(t)), logprob=float(logits[t]) - log_z) for t in best
    )
