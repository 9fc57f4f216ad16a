"""A real edge site for the batch tests: hub-side nats-server, a link we can cut, a leaf node,
a hub (ECHO back-end, a TEST STAND-IN that repeats the prompt; ``tests.fixtures.hubs``) and
agents as processes (``edge-agent run``, so that a test can SIGKILL one).

    with edge_site(tmp_path) as site:        # auth_device="dev-1": operator mode, see below
        with agent_process(site, tmp_path, device="dev-1") as agent:
            site.link.down()          # the leaf's remote connection is cut and refused
            ...
            site.link.up()            # the leaf reconnects by itself (reconnect: 1s)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from cloud_hub.control.keystore import KeyStore
from cloud_hub.serving import HubService
from shared.leaf import (
    HubSideConfig,
    LeafConfig,
    render_hub_config,
    render_leaf_config,
    running_nats_config,
)
from tests.fixtures.hubs import echo_spec, hub_in_thread, hub_settings
from tests.fixtures.names import ECHO
from tests.fixtures.nats import NatsServer, free_port
from tests.fixtures.waiting import poll

CLOUD_MODEL = ECHO
"""The hub serves the ECHO stand-in under the router's default cloud model name."""


class LinkProxy:
    """A TCP relay between the leaf and the hub side's leafnode port that can be cut."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.is_up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            writer.close()
            return
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, w2}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))

    def down(self) -> None:
        """Cut every connection and refuse new ones."""

        def cut() -> None:
            self.is_up = False
            for w in list(self._writers):
                w.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(cut)
        time.sleep(0.2)

    def up(self) -> None:
        """Accept connections again."""
        self._loop.call_soon_threadsafe(setattr, self, "is_up", True)

    def close(self) -> None:
        self.down()

        async def shut() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@dataclass
class Site:
    hub_nats: NatsServer
    leaf: NatsServer
    link: LinkProxy
    domain: str
    hub: HubService
    hub_domain: str = "hub"
    extra: dict[str, Any] = field(default_factory=dict)
    auth: KeyStore | None = None
    """Operator mode: the keys; the leaf links with ``auth_device``'s credentials."""


@contextlib.contextmanager
def edge_site(
    tmp: Path,
    *,
    domain: str = "site1",
    hub_domain: str = "hub",
    leaf_max_file_store: str = "1GB",
    echo_delay_s: float = 0.0,
    auth_device: str | None = None,
) -> Iterator[Site]:
    """Hub-side NATS (domain ``hub_domain``, leafnode port), a cuttable link, a leaf (domain
    ``domain``), a hub (its ``jetstream_domain`` = ``hub_domain``).

    ``auth_device``: the hub side runs in operator mode (a fresh ``hubctl auth init``), the hub
    connects with its own credentials and the leaf (open on loopback, as on a device) links
    with ``auth_device``'s: only that device's traffic crosses the link."""
    hp, hl, lp = free_port(), free_port(), free_port()
    keys = leaf_creds = None
    if auth_device is not None:
        keys = KeyStore(tmp / "auth")
        keys.root.mkdir(parents=True, exist_ok=True)
        keys.init(now=int(time.time()))
        leaf_creds = enroll(keys, auth_device)
    hub_conf = render_hub_config(
        HubSideConfig(
            store_dir=tmp / "hub-js",
            listen=f"127.0.0.1:{hp}",
            leaf_listen=f"127.0.0.1:{hl}",
            domain=hub_domain,
            auth_include=keys.server_include if keys else None,
        )
    )
    with running_nats_config(hub_conf, port=hp, log_file=tmp / "hub-nats.log") as hub_nats:
        link = LinkProxy(hl)
        leaf_conf = render_leaf_config(
            LeafConfig(
                domain=domain,
                store_dir=tmp / "leaf-js",
                remote_urls=[f"nats-leaf://127.0.0.1:{link.port}"],
                listen=f"127.0.0.1:{lp}",
                max_file_store=leaf_max_file_store,
                credentials=leaf_creds,
            )
        )
        try:
            with (
                running_nats_config(leaf_conf, port=lp, log_file=tmp / "leaf.log") as leaf,
                hub_in_thread(
                    hub_settings(
                        hub_nats.url,
                        echo_spec(CLOUD_MODEL, delay_s=echo_delay_s),
                        jetstream_domain=hub_domain,
                        credentials=keys.hub_creds if keys else None,
                    )
                ) as hub,
            ):
                yield Site(
                    hub_nats=hub_nats,
                    leaf=leaf,
                    link=link,
                    domain=domain,
                    hub=hub,
                    hub_domain=hub_domain,
                    auth=keys,
                )
        finally:
            link.close()


def enroll(keys: KeyStore, device: str) -> Path:
    """``hubctl devices enroll device``: its .creds file (once per device)."""
    creds = keys.root / f"{device}.creds"
    if not creds.exists():
        keys.enroll(device, site="test", labels={}, out=keys.root, now=int(time.time()))
    return creds


@dataclass
class AgentProcess:
    url: str
    proc: subprocess.Popen[bytes]
    config: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="test", max_retries=0, timeout=60)


def write_agent_config(site: Site, tmp: Path, *, device: str, port: int, **batches: Any) -> Path:
    lines = [
        f'device_id = "{device}"',
        f"port = {port}",
        'log_level = "warning"',
        "[hub]",
        f'nats_url = "{site.leaf.url}"',
        "[batches]",
        f'leaf_domain = "{site.domain}"',
        f'hub_domain = "{site.hub_domain}"',
        *(f"{k} = {v!r}" for k, v in batches.items()),
    ]
    path = tmp / f"{device}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_agent(config: Path, port: int, log: Path, *flags: str) -> AgentProcess:
    """``edge-agent run --config config *flags``, once its Batch API answers."""
    exe = Path(sys.executable).parent / "edge-agent"
    env = {**os.environ, "AGL_TELEMETRY__JSON_LOGS": "false"}
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(exe), "run", "--config", str(config), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the agent exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{url}/v1/batches", timeout=2)
            if r.status_code == 200:
                return AgentProcess(url=url, proc=proc, config=config)
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the agent's Batch API did not come up: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def agent_process(site: Site, tmp: Path, *, device: str, **batches: Any) -> Iterator[AgentProcess]:
    """``edge-agent run`` on the site's leaf (a real process, so that a test can SIGKILL it)."""
    port = free_port()
    config = write_agent_config(site, tmp, device=device, port=port, **batches)
    agent = start_agent(config, port, tmp / f"{device}.log")
    box = {"agent": agent}
    try:
        yield agent
    finally:
        current = box["agent"]
        if current.proc.poll() is None:
            current.proc.send_signal(signal.SIGTERM)
            try:
                current.proc.wait(20)
            except subprocess.TimeoutExpired:
                current.proc.kill()
                current.proc.wait()


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    import json

    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def chat_line(i: int, text: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "model": CLOUD_MODEL,
        "messages": [{"role": "user", "content": text or f"line {i} says hello"}],
        "max_tokens": 16,
    }
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**body, **extra},
    }


def wait_status(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float) -> Any:
    """The batch once its status is one of ``statuses`` (bounded by ``timeout``)."""
    seen: list[Any] = []

    def check() -> Any:
        batch = client.batches.retrieve(batch_id)
        seen[:] = [batch]
        return batch if batch.status in statuses else None

    try:
        return poll(check, timeout, f"batch {batch_id} to be {sorted(statuses)}", every=0.1)
    except AssertionError as exc:
        last = seen[0] if seen else None
        state = f"{last.status} {last.request_counts}" if last else "unknown"
        raise AssertionError(f"{exc}; it is {state}") from None
