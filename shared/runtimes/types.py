"""Plain data passed between the HTTP layer, the scheduler and the model runtimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    grammar: str | None = None
    """Constrained decoding: ``"json_object"`` or a JSON schema's text (``shared.runtimes.grammar``)."""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One candidate token and its log-probability."""

    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """Text produced by one sampled token (may be empty while UTF-8 bytes are pending)."""

    text: str
    token_id: int
    logprob: float | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()
    raw: bytes | None = None
    """The token's own bytes (a part of a UTF-8 character, maybe); None when not known."""

    def own_text(self) -> str:
        """The token's own text: ``bytes:\\xe2\\x80`` for a part of a UTF-8 character (as
        OpenAI writes it), never the empty text a held-back part releases."""
        if self.raw is None:
            return self.text
        try:
            return self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in self.raw)


@dataclass(frozen=True, slots=True)
class Classification:
    """One classified row: the label, the class probabilities, the top probability."""

    label: str
    probabilities: dict[str, float]
    confidence: float


@dataclass(frozen=True, slots=True)
class GenerationEnd:
    """The last event of every generation (and the only event of a classification).

    ``classifications`` holds one result per input row for ``classify`` requests.
    """

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    classifications: tuple[Classification, ...] | None = None


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A tokenized prompt plus the stop strings its chat template adds."""

    tokens: list[int]
    stop: tuple[str, ...] = field(default_factory=tuple)
