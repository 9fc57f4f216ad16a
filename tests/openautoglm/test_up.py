"""`open-autoglm up` (`make run`) does what the README says: one local and one cloud answer
through the agent it starts. Ctrl-C and a clean exit are checked when the session's all-in-one
stops (the ``allinone`` fixture fails the run on any other exit code).
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.fixtures.calls import route
from tests.fixtures.names import CLOUD_MODEL, MODEL
from tests.fixtures.waiting import poll

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


def test_a_batch_goes_from_the_leaf_to_the_hub_and_back(allinone: str) -> None:
    """The all-in-one's leaf layout: lines wait in the leaf's JetStream, the hub's worker pulls
    them across the link (device credentials) and the output file comes back through the agent."""
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": CLOUD_MODEL,
                "messages": [{"role": "user", "content": f"Say {word}."}],
                "max_tokens": 4,
            },
        }
        for i, word in enumerate(["yes", "no"])
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    with openai.OpenAI(base_url=allinone, api_key="unused", max_retries=0, timeout=60) as client:
        f = client.files.create(file=("in.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = poll(
            lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
            300,
            f"batch {batch.id} to complete",
            every=0.5,
        )
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 0)
        assert done.output_file_id is not None
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in out) == ["q0", "q1"]
    for x in out:
        assert x["response"]["status_code"] == 200
        assert x["response"]["body"]["model"] == CLOUD_MODEL
        assert x["response"]["body"]["choices"][0]["message"]["content"]
        assert x["agl"] == {"tier": "cloud", "reason": "default"}
