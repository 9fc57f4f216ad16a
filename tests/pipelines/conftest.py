"""Fixtures for the SDK tests: the session's all-in-one (``allinone``, tests/fixtures/plugin.py)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def agent_env(allinone: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """OPENAUTOGLM_BASE_URL points at the all-in-one for this test."""
    monkeypatch.setenv("OPENAUTOGLM_BASE_URL", allinone)
    return allinone
