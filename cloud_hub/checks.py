"""A dry run of the hub's configuration: what ``hubctl serve --check`` verifies.

    problems, notes = check_hub(settings)   # [] when every model can be started

It reads no more than a file header per model (the start of a GGUF or ONNX file), so it is
quick even for large models, and it never connects to NATS or to an upstream.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloud_hub.settings import HubModelSpec, HubSettings
from shared.errors import AglError
from shared.model_files import bundled_model_path

__all__ = ["check_hub"]

_GGUF_MAGIC = b"GGUF"


def _check_file(spec: HubModelSpec) -> tuple[str | None, str]:
    path: Path | None = spec.path
    if path is None:  # gguf without a path: the bundled model
        try:
            path = bundled_model_path()
        except AglError as exc:
            return f"model {spec.name!r}: {exc}", ""
    path = path.expanduser()
    if not path.is_file():
        return f"model {spec.name!r}: file {path} does not exist (check `path`)", ""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        return f"model {spec.name!r}: cannot read {path}: {exc.strerror}", ""
    if spec.backend == "gguf" and head != _GGUF_MAGIC:
        return f"model {spec.name!r}: {path} is not a GGUF file (it does not start with GGUF)", ""
    size = path.stat().st_size
    return None, f"model {spec.name!r}: {spec.backend} {path} ({size / 1e6:.1f} MB)"


def check_hub(settings: HubSettings) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` about the models of ``settings``; no problems means it can start."""
    problems: list[str] = []
    notes: list[str] = []
    if not settings.models:
        problems.append("no models configured; add a [[models]] table to the --config file")
    for spec in settings.models:
        if spec.backend in ("gguf", "onnx"):
            problem, note = _check_file(spec)
            if problem:
                problems.append(problem)
            else:
                notes.append(note)
        elif spec.backend == "openai":
            if spec.api_key_env and not os.environ.get(spec.api_key_env):
                problems.append(
                    f"model {spec.name!r}: environment variable {spec.api_key_env} is empty; "
                    "export the upstream API key there"
                )
            else:
                notes.append(f"model {spec.name!r}: openai upstream {spec.base_url}")
        else:
            notes.append(f"model {spec.name!r}: echo (a test stand-in, never for production)")
    return problems, notes
