"""``hubctl serve`` as a process: it stops when told, in every state, and says why."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud_hub.serving.connection import LinkLog
from tests.nats_server import free_port, nats_server

DRAIN_S = 10.0
HUB_TOML = '[[models]]\nname = "echo-test"\nbackend = "echo"\n'


class HubProcess:
    """A ``hubctl serve`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloud_hub.cli", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        with self._seen:
            found = self._seen.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                timeout,
            )
        assert found and any(text in line for line in self.lines), (
            f"no {text!r} in the hub's log:\n{self.output}"
        )

    def close(self) -> None:
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    @property
    def output(self) -> str:
        with self._seen:
            return "".join(self.lines)

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait (up to ``drain_timeout_s``) for the exit code."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=DRAIN_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"hubctl serve ignored {sig.name} for {DRAIN_S} s:\n{self.output}")
        return code


@contextmanager
def hub_process(tmp_path: Path, nats_url: str) -> Iterator[HubProcess]:
    config = tmp_path / "hub.toml"
    config.write_text(HUB_TOML)
    hub = HubProcess(
        [
            "--nats-url",
            nats_url,
            "--config",
            str(config),
            "--drain-timeout",
            str(DRAIN_S),
            "--log-level",
            "info",
        ]
    )
    try:
        yield hub
    finally:
        if hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()
        hub.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_a_hub_that_cannot_reach_nats(tmp_path: Path, sig: signal.Signals) -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    with hub_process(tmp_path, closed) as hub:
        hub.wait_for("cannot reach NATS")
        code = hub.stop(sig)
    assert code == 0, hub.output
    assert "stopped before NATS" in hub.output


def test_sigterm_stops_a_hub_whose_nats_went_away(tmp_path: Path) -> None:
    with nats_server() as nats, hub_process(tmp_path, nats.url) as hub:
        hub.wait_for("serving echo-test")
        nats.process.kill()
        nats.process.wait()
        hub.wait_for("lost")
        code = hub.stop(signal.SIGTERM)
    assert code == 0, hub.output
    assert "hub stopped" in hub.output


async def test_unreachable_nats_is_reported_once_then_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    link = LinkLog("nats://x:4222", period_s=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="cloud_hub.serving.connection"):
        for _ in range(30):  # a minute of failures, one every 2 s
            await link.error(OSError("connection refused"))
            now[0] += 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("cannot reach NATS at nats://x:4222")
    assert "still cannot reach" in lines[1]
