"""GGUF models through llama-cpp-python.

One :class:`GgufRuntime` owns one llama.cpp context, which is not thread-safe: the
caller (the edge scheduler, the hub worker) must run one generation at a time on it.
"""

from __future__ import annotations

import codecs
import functools
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import (
    ContextOverflowError,
    DeadlineExceeded,
    InvalidInput,
    ModelLoadError,
    UnsupportedOperation,
)
from shared.runtimes.chat_prompt import chat_tokens
from shared.runtimes.grammar import gbnf_for
from shared.runtimes.stops import StopStringFilter
from shared.runtimes.types import (
    GenerationEnd,
    PreparedPrompt,
    SamplingParams,
    TokenPiece,
    TopLogprob,
)

ChatMessage = dict[str, Any]


class GgufRuntime:
    """A loaded GGUF model: chat templating, tokenizing, generation with logprobs, embeddings.

    rt = GgufRuntime.load(path, n_ctx=2048, n_threads=2)
    prompt = rt.prepare_chat([{"role": "user", "content": "Hi"}])
    for event in rt.generate(prompt, SamplingParams(temperature=0)): ...
    """

    def __init__(self, llm: Any, *, path: Path, n_threads: int, n_gpu_layers: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._llm = llm
        self.path = path
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.n_ctx: int = llm.n_ctx()
        self.n_vocab: int = llm.n_vocab()
        self._vocab = llm._model.vocab
        self._formatter = self._chat_formatter(llm)
        template = str(llm.metadata.get("tokenizer.chat_template") or "")
        #: Whether the chat template renders ``tools`` itself (else ``shared.tool_calls`` does).
        self.tool_template: bool = self._formatter is not None and "tools" in template
        self._embedder: Any | None = None
        self._embed_lock = threading.Lock()
        self._closed = False
        self._grammars: dict[str, Any] = {}

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
    ) -> GgufRuntime:
        """Load ``path`` with llama.cpp; failures become :class:`ModelLoadError`."""
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelLoadError(
                "llama-cpp-python is not installed; install the edge extra: pip install 'open-autoglm[edge]'"
            ) from exc
        threads = n_threads or os.cpu_count() or 1
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                n_batch=min(n_batch, n_ctx),
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path}: {exc}; is it a valid GGUF file?"
            ) from exc
        runtime = cls(llm, path=path, n_threads=llm.n_threads, n_gpu_layers=n_gpu_layers)
        _ = runtime.max_token_bytes  # a scan of the vocabulary: pay it while loading
        return runtime

    @staticmethod
    def _chat_formatter(llm: Any) -> Any | None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None

        def token_text(key: str) -> str:
            tid = llm.metadata.get(key)
            if tid is None:
                return ""
            return str(llm._model.token_get_text(int(tid)))

        return Jinja2ChatFormatter(
            template=template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            stop_token_ids=[llm.token_eos()],
        )

    @property
    def has_chat_template(self) -> bool:
        """Whether the GGUF metadata carries a chat template (base models often do not)."""
        return self._formatter is not None

    def prepare_chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PreparedPrompt:
        """Render messages with the model's own chat template and tokenize the result.

        Special tokens come only from the template: message contents are tokenised as plain
        text, so ``<|im_end|>`` in user text cannot close a turn (see ``chat_prompt``).
        ``tools`` (OpenAI ``function`` objects) go to a template that renders them
        (:attr:`tool_template`).
        """
        listed = [{"type": "function", "function": dict(f)} for f in tools] if tools else None
        formatter = self._formatter
        if formatter is None:
            raise UnsupportedOperation(
                f"{self.path.name} has no chat template in its GGUF metadata; "
                "use /v1/completions with a plain prompt instead"
            )

        def render(msgs: list[dict[str, Any]]) -> tuple[str, bool, tuple[str, ...]]:
            try:
                result = formatter(messages=msgs, tools=listed)
            except Exception as exc:  # jinja2 raises many types for bad message lists
                raise InvalidInput(
                    f"the chat template could not render these messages: {exc}"
                ) from exc
            stop = result.stop if isinstance(result.stop, list) else [result.stop]
            return (
                result.prompt,
                bool(result.added_special),
                tuple(s for s in stop if isinstance(s, str) and s),
            )

        tokens, stop = chat_tokens(
            render, self._tokenize, list(messages), control_texts=self.control_texts
        )
        return PreparedPrompt(tokens=self._never_empty(tokens), stop=stop)

    def prepare_text(self, prompt: str) -> PreparedPrompt:
        """Tokenize a plain completion prompt (BOS added as the model expects), as plain text."""
        return PreparedPrompt(tokens=self._never_empty(self._tokenize(prompt, True, False)))

    def _tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        if not text and not add_bos:
            return []
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise InvalidInput(
                f"the text holds a lone UTF-16 surrogate at offset {exc.start}; send valid Unicode"
            ) from None
        return list(self._llm.tokenize(data, add_bos=add_bos, special=special))

    def _never_empty(self, tokens: list[int]) -> list[int]:
        # llama.cpp asserts on an empty batch; a model without BOS still needs one token.
        if tokens:
            return tokens
        bos = self._llm.token_bos()
        return [bos if bos >= 0 else self._llm.token_eos()]

    @functools.cached_property
    def control_texts(self) -> frozenset[str]:
        """The text of every control token in the vocabulary (``<|im_end|>`` …)."""
        lib, vocab = self._lib, self._vocab
        return frozenset(
            self.token_text(t) for t in range(self.n_vocab) if lib.llama_vocab_is_control(vocab, t)
        )

    @functools.cached_property
    def max_token_bytes(self) -> int:
        """The most UTF-8 bytes one token decodes to: a prompt of N bytes needs ≥ N / this tokens."""
        detok = self._llm.detokenize
        return max(1, max(len(detok([t], special=True)) for t in range(self.n_vocab)))

    def surely_too_long(self, text_bytes: int) -> bool:
        """Whether ``text_bytes`` of prompt text cannot fit the context, without tokenising it."""
        return text_bytes // self.max_token_bytes >= self.n_ctx

    @functools.cached_property
    def control_token_ids(self) -> frozenset[int]:
        """Ids of the vocabulary's control tokens."""
        lib, vocab = self._lib, self._vocab
        return frozenset(t for t in range(self.n_vocab) if lib.llama_vocab_is_control(vocab, t))

    def check_fits(self, prompt: PreparedPrompt, max_tokens: int | None) -> None:
        """Raise :class:`ContextOverflowError` unless prompt + max_tokens (or 1 token) fit."""
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
        """Yield one :class:`TokenPiece` per sampled token, then one :class:`GenerationEnd`.

        Generation stops at an end-of-generation token, a stop string, ``max_tokens``, the
        end of the context, or when ``cancelled`` is set (checked between tokens).
        """
        llm = self._llm
        lib = self._lib
        budget = min(params.max_tokens, self.n_ctx - len(prompt.tokens))
        stops = StopStringFilter([*prompt.stop, *params.stop])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if params.seed is not None:
            llm.set_seed(params.seed)
        greedy = params.temperature <= 0
        n_out = 0
        finish: str = "length"
        grammar = None if params.grammar is None else self.grammar(params.grammar)
        tokens = llm.generate(
            prompt.tokens,
            temp=0.0 if greedy else params.temperature,
            top_p=params.top_p,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            reset=True,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if cancelled is not None and cancelled.is_set():
                    finish = "cancelled"
                    break
                if lib.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                n_out += 1
                logprob, top = self._logprobs(token, params) if params.logprobs else (None, ())
                raw = llm.detokenize([token])
                text = stops.feed(decoder.decode(raw))
                yield TokenPiece(
                    text=text, token_id=token, logprob=logprob, top_logprobs=top, raw=raw
                )
                if stops.stopped:
                    finish = "stop"
                    break
                if n_out >= budget:
                    finish = "length"
                    break
        finally:
            tokens.close()
        tail = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            yield TokenPiece(text=tail, token_id=-1)
        yield GenerationEnd(
            finish_reason=finish,  # type: ignore[arg-type]
            prompt_tokens=len(prompt.tokens),
            completion_tokens=n_out,
        )

    def grammar(self, source: str) -> Any:
        """The compiled ``LlamaGrammar`` of a grammar source; :class:`InvalidInput` if it has none.

        llama.cpp's own parser checks the GBNF here (a grammar it rejects would crash the
        sampler chain), once per source.
        """
        found = self._grammars.get(source)
        if found is not None:
            return found
        gbnf = gbnf_for(source)
        lib = self._lib
        probe = lib.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if not probe:
            raise InvalidInput("llama.cpp could not parse the grammar made from the JSON schema")
        lib.llama_sampler_free(probe)
        compiled = lib.LlamaGrammar.from_string(gbnf, verbose=False)
        if len(self._grammars) >= 64:
            self._grammars.pop(next(iter(self._grammars)))
        self._grammars[source] = compiled
        return compiled

    def checked_gbnf(self, source: str) -> str:
        """The GBNF text of a grammar source, checked by llama.cpp's parser (cached)."""
        self.grammar(source)
        return gbnf_for(source)

    def _logprobs(self, token: int, params: SamplingParams) -> tuple[float, tuple[TopLogprob, ...]]:
        # At yield time the context still holds the logits that produced `token`.
        ptr = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        peak = float(logits.max())
        log_z = peak + float(np.log(np.exp(logits - peak).sum()))
        logprob = float(logits[token]) - log_z
        if params.top_logprobs <= 0:
            return logprob, ()
        k = min(params.top_logprobs, self.n_vocab)
        best = np.argpartition(logits, -k)[-k:]
        best = best[np.argsort(-logits[best])]
        top = tuple(
            TopLogprob(token=self.token_text(int(t)), logprob=float(logits[t]) - log_z)
            for t in best
        )
        return logprob, top

    def token_text(self, token: int) -> str:
        """The text of a single token (special tokens spelled out)."""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")  # type: ignore[no-any-return]

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to, without BOS."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def embed(
        self, texts: Sequence[str], *, deadline: float | None = None
    ) -> tuple[list[list[float]], int]:
        """Mean-pooled, L2-normalised embeddings and the number of tokens read.

        ``deadline`` (``time.monotonic()``) is checked between texts: past it,
        :class:`DeadlineExceeded` is raised and the remaining texts are skipped.

        The embedding context is a second llama.cpp context on the same (mmapped) file,
        created on first use so chat-only deployments do not pay for it.
        """
        with self._embed_lock:
            if self._embedder is None:
                self._embedder = self._lib.Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_gpu_layers=self.n_gpu_layers,
                    embedding=True,
                    pooling_type=self._lib.LLAMA_POOLING_TYPE_MEAN,
                    verbose=False,
                )
            embedder = self._embedder
            used = 0
            vectors: list[list[float]] = []
            for i, text in enumerate(texts):
                if deadline is not None and time.monotonic() > deadline:
                    raise DeadlineExceeded(
                        f"embedding stopped after {len(vectors)} of {len(texts)} inputs: the "
                        "request's deadline passed; send fewer inputs or raise request_timeout_s"
                    )
                n = len(embedder.tokenize(text.encode("utf-8"), add_bos=True))
                if n == 0:  # llama.cpp cannot decode an empty batch
                    raise InvalidInput(
                        f"input {i} ({text[:20]!r}) has no tokens: it is empty or only characters "
                        "the tokenizer drops (control characters); send some text"
                    )
                if n > self.n_ctx:
                    raise ContextOverflowError(prompt_tokens=n, max_tokens=None, n_ctx=self.n_ctx)
                used += n
                vec = np.asarray(embedder.embed(text), dtype=np.float32)
                norm = float(np.linalg.norm(vec)) or 1.0
                vectors.append((vec / norm).tolist())
            return vectors, used

    def close(self) -> None:
        """Free the llama.cpp contexts (once; a second call does nothing)."""
        with self._embed_lock:
            if self._closed:
                return
            self._closed = True
            for llm in (self._llm, self._embedder):
                if llm is not None:
                    llm.close()
