"""The pure parts of the Batch API: JSONL lines, the multipart upload, leaf configs, wire names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.batches.jsonl import InputFileError, parse_input
from edge_agent.batches.multipart import FormError, parse_form
from shared.batch_wire import BatchWireError, device_of, line_subject, lines_filter
from shared.embedded_nats import EmbeddedNatsError
from shared.leaf import HubSideConfig, LeafConfig, render_hub_config, render_leaf_config

CHAT = "/v1/chat/completions"


def _line(cid: str, url: str = CHAT) -> bytes:
    return json.dumps(
        {"custom_id": cid, "method": "POST", "url": url, "body": {"model": "m"}}
    ).encode()


def test_each_malformed_line_is_its_own_error_and_the_rest_run() -> None:
    data = b"\n".join(
        [_line("a"), b"{oops", b"[1]", _line("b", "/v1/completions"), b"", _line("c")]
    )
    parsed = parse_input(data, endpoint=CHAT, max_lines=10)
    assert [(i, c) for i, c, _ in parsed.requests] == [(0, "a"), (4, "c")]
    assert [(e.index, e.code) for e in parsed.errors] == [
        (1, "invalid_json"),
        (2, "invalid_request"),
        (3, "mismatched_url"),
    ]
    assert parsed.total == 5


def test_whole_file_errors_name_the_fix() -> None:
    with pytest.raises(InputFileError, match="no request lines"):
        parse_input(b"\n\n", endpoint=CHAT, max_lines=10)
    with pytest.raises(InputFileError, match="max_lines_per_batch"):
        parse_input(b"\n".join([_line(str(i)) for i in range(3)]), endpoint=CHAT, max_lines=2)
    with pytest.raises(InputFileError, match="more than once"):
        parse_input(_line("a") + b"\n" + _line("a"), endpoint=CHAT, max_lines=10)
    with pytest.raises(InputFileError, match="not supported in batches"):
        parse_input(_line("a"), endpoint="/v1/embeddings", max_lines=10)


def test_multipart_upload_is_read_with_the_standard_library() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        b'Content-Type: application/octet-stream\r\n\r\n{"a": 1}\n\r\n--XyZ--\r\n'
    )
    fields, files = parse_form(body, "multipart/form-data; boundary=XyZ")
    assert fields == {"purpose": "batch"}
    assert files == {"file": ("in.jsonl", b'{"a": 1}\n')}
    with pytest.raises(FormError, match="multipart/form-data"):
        parse_form(b"{}", "application/json")


def test_leaf_config_refuses_bad_values() -> None:
    ok = LeafConfig(domain="site1", store_dir="/data", remote_urls=["nats-leaf://hub:7422"])
    text = render_leaf_config(ok)
    assert "domain: site1" in text and '"nats-leaf://hub:7422"' in text
    assert "credentials:" not in text
    with pytest.raises(EmbeddedNatsError, match="JetStream domain"):
        render_leaf_config(
            LeafConfig(domain="a.b", store_dir="/d", remote_urls=["nats-leaf://h:1"])
        )
    with pytest.raises(EmbeddedNatsError, match="nats-leaf://host:7422"):
        render_leaf_config(LeafConfig(domain="s", store_dir="/d", remote_urls=['x" }']))
    with pytest.raises(EmbeddedNatsError, match="at least one"):
        render_leaf_config(LeafConfig(domain="s", store_dir="/d", remote_urls=[]))


def test_hub_side_config_inlines_the_auth_include_or_names_the_fix(tmp_path: Path) -> None:
    include = tmp_path / "nats-auth.conf"
    include.write_text("operator: x\nsystem_account: y\n")
    text = render_hub_config(HubSideConfig(store_dir="/d", auth_include=include))
    assert "(hubctl auth init)\noperator: x\nsystem_account: y\n" in text and "no_advertise" in text
    assert "operator" not in render_hub_config(HubSideConfig(store_dir="/d"))
    with pytest.raises(EmbeddedNatsError, match="hubctl auth init --dir DIR"):
        render_hub_config(HubSideConfig(store_dir="/d", auth_include=tmp_path / "missing.conf"))


def test_batch_subjects_are_device_scoped() -> None:
    assert line_subject("dev-1", "batch_1") == "agl.v1.dev.dev-1.batch.line.batch_1"
    assert lines_filter("dev-1", local=True) == "agl.v1.dev.dev-1.batch.local.>"
    assert device_of("agl.v1.dev.dev-1.batch.hello") == "dev-1"
    with pytest.raises(BatchWireError):
        device_of("agl.v1.infer.x")
