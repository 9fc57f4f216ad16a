"""`open-autoglm up` (`make run`) does what the README says: one local and one cloud answer
through the agent it starts. Ctrl-C and a clean exit are checked when the session's all-in-one
stops (the ``allinone`` fixture fails the run on any other exit code).
"""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.fixtures.calls import route
from tests.fixtures.names import CLOUD_MODEL, MODEL

pytestmark = pytest.mark.timeout(420)


def test_one_local_and_one_cloud_answer(allinone: str) -> None:
    with openai.OpenAI(base_url=allinone, api_key="unused", max_retries=0, timeout=400) as client:
        # the demo routing may escalate an unsure local answer; the tier header pins it
        local = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is 2+2?"}],
            max_tokens=8,
            extra_headers={"x-agl-tier": "edge"},
        )
        assert route(local.headers) == ("edge", "policy")
        assert local.parse().choices[0].message.content
        # the README's second curl: the hub's model goes to the hub (its stand-in SmolLM2)
        cloud = client.chat.completions.with_raw_response.create(
            model=CLOUD_MODEL,
            messages=[{"role": "user", "content": "Explain NATS in one line."}],
            max_tokens=8,
        )
        assert route(cloud.headers) == ("cloud", "policy")
        answer = cloud.parse()
        assert answer.model == CLOUD_MODEL and answer.choices[0].message.content
    models = httpx.get(f"{allinone}/models", timeout=30).json()["data"]
    assert {m["id"]: m["tier"] for m in models}[CLOUD_MODEL] == "cloud"
