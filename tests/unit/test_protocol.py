"""The wire protocol, without any I/O."""

from __future__ import annotations

import pytest

from shared.errors import AglError
from shared.protocol import (
    LOGPROB_FLOOR,
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
    WireLogprob,
    cancel_subject,
    check_payload_size,
    decode_reply,
    decode_request,
    encode,
    infer_subject,
    model_from_subject,
    sampling_params,
    token_pieces,
    wire_logprobs,
    wire_params,
)
from shared.runtimes.types import SamplingParams, TokenPiece, TopLogprob


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


def test_unknown_fields_are_ignored_so_mixed_versions_can_run() -> None:
    data = b'{"v":1,"id":"r","device":"d","model":"m","kind":"chat","new_field":{"x":1},'
    data += b'"messages":[{"role":"user","content":"Hi","mood":"calm"}],"params":{"later":1}}'
    req = decode_request(data)
    assert (req.id, req.messages[0].content if req.messages else None) == ("r", "Hi")
    reply = decode_reply(b'{"v":1,"type":"chunk","id":"r","seq":0,"text":"a","extra":[1]}')
    assert reply.type == "chunk"


def test_subjects_are_versioned() -> None:
    assert infer_subject("dev-1", "glm-4-plus") == "agl.v1.dev.dev-1.infer.glm-4-plus"
    assert cancel_subject("dev-1", "abc123") == "agl.v1.dev.dev-1.cancel.abc123"
    assert model_from_subject("agl.v1.dev.dev-1.infer.glm-4-plus") == "glm-4-plus"
    assert model_from_subject("agl.v1.dev.dev-1.cancel.abc123") is None
    assert model_from_subject("other.subject") is None


@pytest.mark.parametrize("bad", ["a b", "a.b", "*", ">", "a>", ""])
def test_subject_tokens_refuse_wildcards_dots_and_spaces(bad: str) -> None:
    with pytest.raises(InvalidSubjectToken, match="subject token"):
        infer_subject("dev-1", bad)
    with pytest.raises(InvalidSubjectToken):
        cancel_subject("dev-1", bad)


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


# --- sampling ↔ wire params, token pieces ↔ wire logprobs -------------------------------------


def test_wire_params_round_trip_every_field() -> None:
    params = SamplingParams(
        max_tokens=12,
        temperature=0.3,
        top_p=0.5,
        stop=("\n", "END"),
        seed=7,
        logprobs=True,
        top_logprobs=3,
    )
    wire = wire_params(params)
    assert wire.stop == ["\n", "END"] and wire.logprobs and wire.top_logprobs == 3
    assert sampling_params(wire) == params


def test_wire_params_out_of_range_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="top_logprobs"):
        wire_params(SamplingParams(top_logprobs=99))


def test_wire_logprobs_is_none_without_logprobs() -> None:
    assert wire_logprobs([TokenPiece("Hi", 5), TokenPiece(" there", 6)]) is None
    assert wire_logprobs([]) is None


def test_wire_logprobs_clamps_minus_infinity_so_json_can_carry_it() -> None:
    top = (TopLogprob("a", -0.1), TopLogprob("b", float("-inf")))
    entries = wire_logprobs([TokenPiece("a", 1, logprob=float("-inf"), top_logprobs=top)])
    assert entries is not None
    assert entries[0].logprob == LOGPROB_FLOOR
    assert [t.logprob for t in entries[0].top_logprobs] == [-0.1, LOGPROB_FLOOR]
    msg = ChunkMessage(id="r", seq=0, text="a", logprobs=entries)
    assert decode_reply(encode(msg)) == msg


def test_logprob_less_text_joins_the_neighbouring_token() -> None:
    pieces = [
        TokenPiece("<", 0),  # text released before any token (no logprob)
        TokenPiece("Hel", 1, logprob=-0.5),
        TokenPiece("", 2, logprob=-0.25),  # a token whose text is still held back
        TokenPiece("lo", 3, logprob=-1.0),
        TokenPiece("!", -1),  # the held-back tail flushed at the end
    ]
    entries = wire_logprobs(pieces)
    assert entries is not None
    assert [(e.token, e.logprob) for e in entries] == [("<Hel", -0.5), ("", -0.25), ("lo!", -1.0)]
    assert "".join(e.token for e in entries) == "".join(p.text for p in pieces)


def test_token_pieces_rebuild_one_piece_per_entry() -> None:
    entries = wire_logprobs(
        [TokenPiece("Hi", 9, logprob=-0.1, top_logprobs=(TopLogprob("Hi", -0.1),))]
    )
    pieces = token_pieces("Hi", entries)
    assert pieces == [TokenPiece("Hi", 0, logprob=-0.1, top_logprobs=(TopLogprob("Hi", -0.1),))]


@pytest.mark.parametrize(
    ("text", "tokens", "expected_ids"),
    [
        ("Hi there", None, [-1]),  # no logprobs: one piece, not a token
        ("", None, []),
        ("Hi there", ["Hi", " there"], [0, 0]),
        ("Hi there!", ["Hi", " there"], [0, 0, -1]),  # uncovered tail
        ("Bye", ["Hi"], [-1]),  # entries that do not describe the text are dropped
    ],
)
def test_token_pieces_always_join_to_the_text(
    text: str, tokens: list[str] | None, expected_ids: list[int]
) -> None:
    entries = None if tokens is None else [WireLogprob(token=t, logprob=-1.0) for t in tokens]
    pieces = token_pieces(text, entries)
    assert "".join(p.text for p in pieces) == text
    assert [p.token_id for p in pieces] == expected_ids


def test_result_and_chunk_without_logprobs_omit_nothing_old_peers_need() -> None:
    # An old peer's message (no logprobs field) still decodes, with logprobs None.
    chunk = decode_reply(b'{"v":1,"type":"chunk","id":"r","seq":0,"text":"x"}')
    assert isinstance(chunk, ChunkMessage) and chunk.logprobs is None
    result = decode_reply(b'{"v":1,"type":"result","id":"r","model":"m","finish_reason":"stop"}')
    assert isinstance(result, ResultMessage) and result.logprobs is None


def test_deeply_nested_messages_are_a_protocol_error_not_a_crash() -> None:
    from shared.protocol import ProtocolError, decode_reply, decode_request

    for raw in (
        b'{"id":"a","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ):
        for decode in (decode_request, decode_reply):
            try:
                decode(raw)
            except ProtocolError as exc:
                assert "nested too deeply" in str(exc)
            else:
                raise AssertionError("accepted a message nested 100k deep")
