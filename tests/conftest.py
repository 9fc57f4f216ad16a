"""Fixtures shared by the whole suite: a real agent with the bundled model."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.agent_server import RunningAgent, run_agent

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def agent() -> Iterator[RunningAgent]:
    """One agent for the read-only API tests (default settings, n_ctx 512)."""
    with run_agent() as running:
        yield running


@pytest.fixture()
def client(agent: RunningAgent) -> Iterator[openai.OpenAI]:
    """The official OpenAI client pointed at the shared agent (closed after the test)."""
    with openai.OpenAI(base_url=agent.v1, api_key="unused", max_retries=0, timeout=60) as c:
        yield c
