"""Errors raised by the ``shared`` package.

Every message says what went wrong and what to do about it. Lower libraries'
exceptions (llama_cpp, onnxruntime) are translated into these at our boundary.

    AglError
    ├── ConfigError            a setting or config file is invalid
    ├── ModelNotFoundError     a model file or the bundled model package is missing
    ├── ModelLoadError         the runtime could not load a model file
    ├── ModelIntegrityError    a model file's sha256 does not match the pinned digest
    ├── UnsupportedOperation   a model cannot do what was asked (chat on a classifier …)
    ├── DeadlineExceeded       a model call ran out of its request's time
    ├── SamplingError          one sequence's sampler failed (a grammar that allows no token …)
    └── InvalidInput           inputs a model cannot take (prompt too long, bad shapes …)
        └── ContextOverflowError   the prompt plus max_tokens do not fit the context window
"""

from __future__ import annotations


class AglError(Exception):
    """Base class for every error the project raises on purpose."""


class ConfigError(AglError):
    """A setting, flag or config file holds a value that is not allowed."""


class ModelNotFoundError(AglError):
    """A model file, or the package that bundles it, is not installed."""


class ModelLoadError(AglError):
    """A runtime failed to load a model file that exists."""


class ModelIntegrityError(AglError):
    """A model file's digest differs from the one pinned in the config."""

    def __init__(self, path: str, *, expected: str, actual: str) -> None:
        super().__init__(
            f"model file {path} has sha256 {actual}, but the config pins {expected}; "
            "re-download the file or update the pinned digest"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class UnsupportedOperation(AglError):
    """The model exists but cannot serve this kind of request."""


class DeadlineExceeded(AglError):
    """A model call did not finish before the request's deadline; the rest of it was skipped."""


class SamplingError(AglError):
    """Sampling one sequence failed; that request fails, the others in its batch go on."""


class InvalidInput(AglError):
    """The request's inputs cannot be fed to the model as they are."""


class ContextOverflowError(InvalidInput):
    """The prompt (plus the requested completion) does not fit the model's context."""

    def __init__(self, *, prompt_tokens: int, max_tokens: int | None, n_ctx: int) -> None:
        if max_tokens:
            detail = (
                f"the prompt has {prompt_tokens} tokens and max_tokens asks for {max_tokens} more, "
                f"but this model's context holds {n_ctx} tokens; shorten the prompt or lower max_tokens"
            )
        else:
            detail = (
                f"the prompt has {prompt_tokens} tokens, but this model's context holds {n_ctx} tokens "
                "and leaves no room for a completion; shorten the prompt"
            )
        super().__init__(detail)
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
