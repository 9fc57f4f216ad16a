"""``edge-agent run --embedded-leaf`` for real: the agent starts its own NATS leaf node (linked
to a real hub-side server and hub), the Batch API works through it, a full leaf store is a 507
that leaves the batches already there intact, and the leaf stops when the agent exits."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import openai
import pytest

from tests.batches.site import Site, chat_line, edge_site, enroll, jsonl, start_agent, wait_status
from tests.fixtures.nats import free_port
from tests.fixtures.waiting import poll


def _accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _config(site: Site, tmp: Path, *, port: int, leaf_port: int) -> Path:
    path = tmp / "agent.toml"
    path.write_text(
        "\n".join(
            [
                'device_id = "dev-emb"',
                f"port = {port}",
                'log_level = "warning"',
                "[batches]",
                f'leaf_remote = "nats-leaf://127.0.0.1:{site.link.port}"',
                f"leaf_store_dir = '{tmp / 'leaf'}'",
                f"leaf_port = {leaf_port}",
                'leaf_max_file_store = "1MB"',
                f'hub_domain = "{site.hub_domain}"',
                # operator mode: the leaf links with the device's credentials
                *([f"leaf_credentials = '{enroll(site.auth, 'dev-emb')}'"] if site.auth else []),
            ]
        )
        + "\n"
    )
    return path


@pytest.mark.parametrize("mode", ["open", "auth"])
def test_embedded_leaf_serves_batches_refuses_when_full_and_stops_with_the_agent(
    mode: str, tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    with edge_site(tmp_path / "site", auth_device="dev-emb" if mode == "auth" else None) as site:
        port, leaf_port = free_port(), free_port()
        config = _config(site, tmp_path, port=port, leaf_port=leaf_port)
        agent = start_agent(config, port, tmp_path / "agent.log", "--embedded-leaf")
        try:
            assert _accepting(leaf_port), "the embedded leaf does not listen"
            assert (tmp_path / "leaf" / "leaf.log").exists()
            client = agent.client()
            f = client.files.create(
                file=("in.jsonl", jsonl([chat_line(i) for i in range(2)])), purpose="batch"
            )
            first = client.batches.create(
                input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            done = wait_status(client, first.id, {"completed"}, timeout=60)
            assert done.request_counts.completed == 2  # through the leaf to the hub and back
            site.link.down()
            waiting = client.batches.create(
                input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            # a file bigger than what is left of the leaf's 1 MB store
            with_room = [chat_line(i, "x" * 60_000) for i in range(25)]
            try:
                client.files.create(file=("big.jsonl", jsonl(with_room)), purpose="batch")
                raise AssertionError("a 1.5 MB upload into a 1 MB leaf store was accepted")
            except openai.APIStatusError as exc:
                assert exc.status_code == 507, exc
                assert exc.body["code"] == "leaf_store_full"  # type: ignore[index]
                assert "max_file_store" in exc.message and "existing batches are kept" in (
                    exc.message
                )
            assert client.batches.retrieve(waiting.id).status == "in_progress"
            site.link.up()
            kept = wait_status(client, waiting.id, {"completed"}, timeout=60)
            assert kept.request_counts.completed == 2
            again = client.files.content(done.output_file_id).text.splitlines()
            assert sorted(json.loads(x)["custom_id"] for x in again) == ["req-0", "req-1"]
            if site.auth:  # the agent's own link carries the leaf's credentials: not dev mode
                assert "no hub.credentials set" not in (tmp_path / "agent.log").read_text()
        finally:
            agent.proc.send_signal(signal.SIGTERM)
            agent.proc.wait(20)
        poll(lambda: not _accepting(leaf_port), 15, "the embedded leaf to stop with the agent")
