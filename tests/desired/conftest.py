"""A real nats-server with JetStream that a test can stop and start again on the same port/store."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.embedded_nats import free_port, nats_server_binary, ports_file_args, wait_listening


class RestartableNats:
    """nats-server -js on a fixed port and store directory; ``restart()`` keeps both."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        ports = self.store / "ports"
        ports.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*args, "-sd", str(self.store), *ports_file_args(ports)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.proc, 10.0, ports)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture()
def js_nats(tmp_path: Path) -> Iterator[RestartableNats]:
    server = RestartableNats(tmp_path / "js")
    try:
        yield server
    finally:
        server.stop()
