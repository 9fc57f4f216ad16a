"""The wire protocol, without any I/O."""

from __future__ import annotations

import pytest

from shared.errors import AglError
from shared.protocol import (
    ChatTurn,
    ChunkMessage,
    ChunkSequencer,
    EndMessage,
    ErrorMessage,
    InferRequest,
    InvalidSubjectToken,
    PayloadTooLargeError,
    ProtocolError,
    ResultMessage,
    StreamGapError,
    Usage,
    cancel_subject,
    check_payload_size,
    decode_reply,
    decode_request,
    encode,
    infer_subject,
    model_from_subject,
)


def request(**extra: object) -> InferRequest:
    fields: dict[str, object] = {
        "id": "r1",
        "device": "d1",
        "model": "glm-4-plus",
        "kind": "chat",
        "messages": [ChatTurn(role="user", content="Hi")],
    }
    fields.update(extra)
    return InferRequest.model_validate(fields)


def test_subjects_are_versioned() -> None:
    assert infer_subject("glm-4-plus") == "agl.v1.infer.glm-4-plus"
    assert cancel_subject("abc123") == "agl.v1.cancel.abc123"
    assert model_from_subject("agl.v1.infer.glm-4-plus") == "glm-4-plus"
    assert model_from_subject("other.subject") is None


@pytest.mark.parametrize("bad", ["a b", "a.b", "*", ">", "a>", ""])
def test_subject_tokens_refuse_wildcards_dots_and_spaces(bad: str) -> None:
    with pytest.raises(InvalidSubjectToken, match="subject token"):
        infer_subject(bad)
    with pytest.raises(InvalidSubjectToken):
        cancel_subject(bad)


def test_request_round_trips() -> None:
    req = request(stream=True, params={"max_tokens": 5, "stop": ["\n"], "seed": 7})
    data = encode(req)
    assert decode_request(data) == req
    assert b'"v":1' in data


def test_completion_needs_prompt_and_chat_needs_messages() -> None:
    with pytest.raises(ProtocolError, match="needs a non-empty `prompt`"):
        decode_request(b'{"v":1,"id":"r","device":"d","model":"m","kind":"completion"}')
    ok = decode_request(
        b'{"v":1,"id":"r","device":"d","model":"m","kind":"completion","prompt":"x"}'
    )
    assert ok.prompt == "x"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{nope", "not valid JSON"),
        (b'{"v": 1, "id": "\xff\xfe"}', "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"v": 9, "id": "r"}', "protocol version 9"),
        (
            b'{"v":1,"id":"r","device":"d","model":"m","kind":"chat","messages":[],"x":1}',
            "x: Extra",
        ),
        (b'{"v":1,"id":"a b","device":"d","model":"m","kind":"chat","messages":[]}', "id:"),
    ],
)
def test_bad_requests_say_what_is_wrong(data: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected) as info:
        decode_request(data)
    assert isinstance(info.value, AglError)


def test_replies_decode_by_type() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=2)
    msgs = [
        ResultMessage(id="r", model="m", text="hi", finish_reason="stop", usage=usage),
        ChunkMessage(id="r", seq=0, text="h"),
        EndMessage(id="r", seq=1, finish_reason="stop", usage=usage),
        ErrorMessage(id="r", code="busy", message="retry"),
    ]
    for msg in msgs:
        assert decode_reply(encode(msg)) == msg
    assert usage.total_tokens == 5


def test_unknown_reply_type_and_error_code_are_refused() -> None:
    with pytest.raises(ProtocolError, match="does not match"):
        decode_reply(b'{"v":1,"type":"bogus"}')
    with pytest.raises(ProtocolError):
        decode_reply(b'{"v":1,"type":"error","code":"nope","message":"x"}')


def test_payload_size_error_carries_fields() -> None:
    check_payload_size(b"x" * 10, 10)
    with pytest.raises(PayloadTooLargeError) as info:
        check_payload_size(b"x" * 11, 10)
    assert (info.value.size, info.value.max_payload) == (11, 10)
    assert "max_payload" in str(info.value)


def test_sequencer_passes_ordered_chunks_and_end() -> None:
    seq = ChunkSequencer()
    assert seq.feed(ChunkMessage(id="r", seq=0, text="a")) == "a"
    assert seq.feed(ChunkMessage(id="r", seq=1, text="b")) == "b"
    end = EndMessage(id="r", seq=2, finish_reason="stop")
    assert seq.feed(end) is end
    assert seq.ended and seq.chunks == 2


def test_sequencer_detects_a_gap() -> None:
    seq = ChunkSequencer()
    seq.feed(ChunkMessage(id="r", seq=0, text="a"))
    with pytest.raises(StreamGapError) as info:
        seq.feed(ChunkMessage(id="r", seq=2, text="c"))
    assert (info.value.expected, info.value.got) == (1, 2)


def test_sequencer_refuses_messages_after_the_end() -> None:
    seq = ChunkSequencer()
    seq.feed(EndMessage(id="r", seq=0, finish_reason="stop"))
    with pytest.raises(StreamGapError, match="after the stream's end"):
        seq.feed(ChunkMessage(id="r", seq=1, text="late"))
