"""Function tasks for the example pipelines (importable as ``textops`` from this folder)."""

from __future__ import annotations


def clean(text: str) -> str:
    """Trim and lower-case a text (the seed's preprocessing step)."""
    return text.strip().lower()


def word_count(text: str) -> int:
    """How many words a text has."""
    return len(text.split())
