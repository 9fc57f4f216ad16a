"""LangChain's ChatOpenAI against the agent: ``with_structured_output`` and ``bind_tools`` work
(they returned None and no calls while the agent ignored response_format and tools)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tests.fixtures.agents import RunningAgent
from tests.fixtures.names import MODEL


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=12)
    age: int


class GetWeather(BaseModel):
    """Get the weather of a city."""

    city: str = Field(max_length=16)


def chat_model(agent: RunningAgent) -> object:
    import langchain_openai  # heavy: imported by the tests that use it, not at collection

    return langchain_openai.ChatOpenAI(
        base_url=agent.v1,
        api_key="unused",
        model=MODEL,
        max_retries=0,
        timeout=120,
        max_tokens=64,
        temperature=0.0,
    )


def test_with_structured_output_returns_the_pydantic_model(agent: RunningAgent) -> None:
    structured = chat_model(agent).with_structured_output(Person)  # type: ignore[attr-defined]
    person = structured.invoke("Describe a person.")
    assert isinstance(person, Person)
    assert len(person.name) <= 12


def test_bind_tools_returns_tool_calls(agent: RunningAgent) -> None:
    model = chat_model(agent).bind_tools([GetWeather], tool_choice="GetWeather")  # type: ignore[attr-defined]
    message = model.invoke("What is the weather in Oslo?")
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call["name"] == "GetWeather" and call["id"].startswith("call_")
        GetWeather.model_validate(call["args"])
