"""The agent's batched scheduler over HTTP: concurrent streams, admission, a too-long prompt,
a client that goes away mid-stream. Real agent, real model, the official ``openai`` client."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import SamplingParams, TokenPiece
from tests.fixtures.agents import run_agent
from tests.fixtures.calls import metric
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Count from one to five.",
    "What is a cat?",
]


def _chat(question: str, **extra: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "temperature": 0,
        **extra,
    }


def test_concurrent_streams_all_complete_with_their_own_text() -> None:
    with run_agent(parallel=4) as agent:
        runtime = agent.state.registry.models[MODEL].runtime
        assert isinstance(runtime, GgufRuntime)
        greedy = SamplingParams(max_tokens=16, temperature=0)
        expected = [  # decoded alone, on the runtime's own context
            "".join(
                e.text
                for e in runtime.generate(
                    runtime.prepare_chat([{"role": "user", "content": q}]), greedy
                )
                if isinstance(e, TokenPiece)
            )
            for q in QUESTIONS
        ]
        client = openai.OpenAI(base_url=agent.v1, api_key="x", max_retries=0)

        def stream(question: str) -> tuple[str, str | None, int]:
            text, finish, used = "", None, 0
            for chunk in client.chat.completions.create(  # type: ignore[call-overload]
                **_chat(question, stream=True, stream_options={"include_usage": True})
            ):
                if chunk.usage is not None:
                    used = chunk.usage.completion_tokens
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            return text, finish, used

        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            first = list(pool.map(stream, QUESTIONS))  # four streams, four slots, together
        assert [t for t, _, _ in first] == expected
        # Twice as many streams as slots: half wait, all finish. (Their prompts are cached now,
        # and a cached prompt's last token is re-read alone, which may round differently.)
        with ThreadPoolExecutor(len(QUESTIONS) * 2) as pool:
            second = list(pool.map(stream, QUESTIONS * 2))
        assert all(t and f == "length" and n == 16 for t, f, n in second)
        assert agent.state.queue_depths() == {MODEL: 0}
        status = httpx.get(f"{agent.url}/status").json()
        card = next(m for m in status["models"] if m["id"] == MODEL)
        assert card["slots"] == 4


def test_64_requests_on_4_slots_queue_then_get_503_and_none_hangs() -> None:
    async def flood(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post(
                            "/chat/completions", json=_chat(QUESTIONS[i % 4], max_tokens=24)
                        )
                        for i in range(64)
                    )
                )
            )

    with run_agent(parallel=4, max_queue=4) as agent:
        responses = asyncio.run(flood(agent.v1))
        ok = [r for r in responses if r.status_code == 200]
        busy = [r for r in responses if r.status_code == 503]
        assert len(ok) + len(busy) == 64
        assert len(ok) >= 8  # 4 decoding + 4 waiting were admitted at least
        assert busy, "past 4 slots + max_queue 4 the agent must refuse"
        for r in busy:
            assert r.json()["error"]["code"] == "queue_full"
            assert int(r.headers["retry-after"]) >= 1
        for r in ok:
            assert r.json()["choices"][0]["message"]["content"]
            assert r.json()["usage"]["completion_tokens"] == 24
        assert agent.state.queue_depths() == {MODEL: 0}


def test_a_prompt_longer_than_a_slot_is_a_400_with_token_counts() -> None:
    with run_agent(parallel=4) as agent:
        resp = httpx.post(
            f"{agent.v1}/chat/completions", json=_chat("word " * 700, max_tokens=8), timeout=60
        )
        assert resp.status_code == 400
        message = resp.json()["error"]["message"]
        assert "the prompt has" in message and "512 tokens" in message
        # the slots still serve
        ok = httpx.post(f"{agent.v1}/chat/completions", json=_chat(QUESTIONS[0]), timeout=120)
        assert ok.status_code == 200


def test_a_client_that_goes_away_frees_its_slot_for_the_others() -> None:
    with run_agent(parallel=2, max_queue=0) as agent:
        client = openai.OpenAI(base_url=agent.v1, api_key="x", max_retries=0)
        # A counting prompt runs to max_tokens (400 tokens: seconds, even on a busy box).
        long = {"model": MODEL, "prompt": COUNTING, "max_tokens": 400, "stream": True}
        with httpx.stream("POST", f"{agent.v1}/completions", json=long, timeout=60) as resp:
            next(line for line in resp.iter_lines() if '"text"' in line)
        # the stream was closed mid-answer: its slot is released at the next decode step, and
        # the generation counts as cancelled by the disconnect (not as finished)
        poll(lambda: agent.state.queue_depths() == {MODEL: 0}, 30, "the slot to be freed")
        assert metric(agent, "agl_generations_cancelled_total", "model") == {(MODEL,): 1}

        def ask(question: str) -> tuple[str | None, int]:
            answer = client.chat.completions.create(**_chat(question))  # type: ignore[call-overload]
            assert answer.usage is not None
            return answer.choices[0].message.content, answer.usage.completion_tokens

        with ThreadPoolExecutor(2) as pool:  # both slots free again (max_queue 0: no 503)
            answers = list(pool.map(ask, QUESTIONS[1:3]))
        assert all(text and used == 16 for text, used in answers)
