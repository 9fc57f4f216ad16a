"""Real parts for the end-to-end routing tests: nats-server, hubs (thread or process), agents.

Most hubs here serve the ECHO back-end, a TEST STAND-IN that repeats the last user message
word by word (``echo_delay_s`` per word): it makes the hub's answer recognisable (it contains
the prompt's words) and lets a test slow the hub down, without a big model's cost. One test
uses the real GGUF back-end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import openai
from prometheus_client.parser import text_string_to_metric_families

from cloud_hub.serving import HubService
from cloud_hub.settings import HubModelSpec, HubSettings
from edge_agent.settings import EdgeSettings, load_settings
from shared.embedded_nats import EmbeddedNatsError, free_port, nats_server_binary
from tests.agent_server import RunningAgent
from tests.hub.conftest import serving_hub, wait_serving

LOCAL_MODEL = "smollm2-135m-instruct"
"""The agent's bundled model."""
CLOUD_MODEL = "glm-4-plus"
"""The router's default cloud model; the echo hubs serve it under this name."""
CLOUD = {"x-agl-tier": "cloud"}
"""Headers that force the cloud tier."""
PLAIN = "the quick brown fox jumps over the lazy dog"
"""A short prompt whose echo is easy to recognise."""


def poll(check: Callable[[], Any], timeout: float, what: str, *, every: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def echo_spec(name: str = CLOUD_MODEL, *, delay_s: float = 0.0) -> HubModelSpec:
    """A model served by the ECHO test stand-in (repeats the prompt, ``delay_s`` per word)."""
    return HubModelSpec(name=name, backend="echo", echo_delay_s=delay_s)


def hub_settings(url: str, *models: HubModelSpec, **extra: Any) -> HubSettings:
    """Hub settings on ``url``; the echo stand-in as ``glm-4-plus`` unless ``models`` are given."""
    return HubSettings(
        nats_url=url, models=list(models) or [echo_spec()], drain_timeout_s=1.0, **extra
    )


def wait_hub_serving(url: str, models: list[str], timeout: float = 10.0) -> None:
    """Block until NATS routes requests for ``models`` to a hub (see ``wait_serving``)."""
    asyncio.run(wait_serving(url, models, timeout))


@contextlib.contextmanager
def hub_in_thread(settings: HubSettings) -> Iterator[HubService]:
    """A real hub (its own NATS connection) on a background event loop; drained on exit."""
    started = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with serving_hub(settings) as hub:
            box["hub"] = hub
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="test-hub", daemon=True)
    thread.start()
    try:
        assert started.wait(30), "the hub did not start within 30 s"
        if "error" in box:
            raise RuntimeError(f"the hub failed to start: {box['error']!r}")
        yield box["hub"]
    finally:
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
            thread.join(15)
        assert not thread.is_alive(), "the hub did not drain within 15 s"


@dataclass
class HubProcess:
    """``python -m cloud_hub.cli serve`` in a child process (so a test can SIGKILL it)."""

    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye; the kernel closes its NATS socket."""
        self.process.kill()
        self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _toml_value(value: Any) -> str:
    return json.dumps(str(value) if isinstance(value, Path) else value)


def write_hub_toml(path: Path, settings: HubSettings) -> Path:
    """The ``--config`` file for ``settings``' models and scalar options (no TOML writer needed)."""
    lines = []
    for key in ("concurrency", "answer_unknown_models", "drain_timeout_s", "request_timeout_s"):
        value = getattr(settings, key)
        lines.append(f"{key} = {'true' if value is True else 'false' if value is False else value}")
    for spec in settings.models:
        lines.append("[[models]]")
        for key, value in spec.model_dump(exclude_defaults=True).items():
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def hub_process(settings: HubSettings, workdir: Path) -> Iterator[HubProcess]:
    """Run ``hubctl serve`` for ``settings`` as a child process; return once it serves."""
    config = write_hub_toml(workdir / "hub.toml", settings)
    log = workdir / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cloud_hub.cli",
                "serve",
                "--nats-url",
                settings.nats_url,
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    hub = HubProcess(proc, log)
    try:
        try:
            wait_hub_serving(settings.nats_url, [m.name for m in settings.models], timeout=30)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(
                f"the hub process did not serve; its log:\n{hub.output()}"
            ) from exc
        yield hub
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class MonitoredNats:
    """A real nats-server with its HTTP monitoring port (``/connz``) open."""

    port: int
    monitor_port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def connections(self, name: str) -> list[dict[str, Any]]:
        """The server's view of each client connection called ``name`` (in_msgs, subs …)."""
        data = httpx.get(f"http://127.0.0.1:{self.monitor_port}/connz", timeout=5).json()
        return [c for c in data.get("connections") or [] if c.get("name") == name]


@contextlib.contextmanager
def monitored_nats() -> Iterator[MonitoredNats]:
    """nats-server on loopback with monitoring, so a test can see what each client sent."""
    port, monitor = free_port(), free_port()
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise EmbeddedNatsError(f"nats-server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{monitor}/varz", timeout=1).is_success
            return False

        poll(up, 10, "nats-server's monitoring port")
        yield MonitoredNats(port, monitor, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _service_stats(url: str, wait_s: float, expect: int | None) -> dict[str, int]:
    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$SRV.STATS.agl-hub", b"", reply=inbox)
        counts: dict[str, int] = {}
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                msg = await sub.next_msg(timeout=wait_s)
                stats = json.loads(msg.data)
                counts[stats["id"]] = sum(e["num_requests"] for e in stats["endpoints"])
                if expect is not None and len(counts) >= expect:
                    break
        return counts
    finally:
        await nc.close()


def hub_request_counts(
    url: str, *, expect: int | None = None, wait_s: float = 1.0
) -> dict[str, int]:
    """Requests each live ``agl-hub`` worker has taken, by its micro-service id ($SRV.STATS).

    Gathers replies until ``expect`` workers answered, or none did for ``wait_s``.
    """
    return asyncio.run(_service_stats(url, wait_s, expect))


def edge_settings(**overrides: Any) -> EdgeSettings:
    """Agent settings: the bundled model, n_ctx 512 and one thread (robust on a busy 2-core box)."""
    return load_settings(None, n_ctx=512, n_threads=1, **overrides)


def wait_uplink(agent: RunningAgent, timeout: float = 10.0) -> None:
    """Wait until the agent's NATS link to the hub is up (it connects in the background)."""
    poll(
        lambda: agent.state.uplink is not None and agent.state.uplink.connected,
        timeout,
        "the agent's uplink to connect",
    )


def route(headers: httpx.Headers | Any) -> tuple[str, str]:
    """``(x-agl-tier, x-agl-reason)`` of a response."""
    return headers.get("x-agl-tier"), headers.get("x-agl-reason")


@contextlib.contextmanager
def oai(agent: RunningAgent, timeout: float = 30.0) -> Iterator[openai.OpenAI]:
    """The official OpenAI client for ``agent`` (no retries: a failure must show)."""
    client = openai.OpenAI(base_url=agent.v1, api_key="unused", max_retries=0, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def chat(
    client: openai.OpenAI,
    text: str,
    *,
    model: str = LOCAL_MODEL,
    headers: dict[str, str] | None = None,
    max_tokens: int = 8,
    **extra: Any,
) -> tuple[tuple[str, str], Any]:
    """One non-streamed chat request: ``((tier, reason), ChatCompletion)``."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        extra_headers=headers,
        **extra,
    )
    return route(raw.headers), raw.parse()


def stream_chat(
    client: openai.OpenAI,
    text: str,
    *,
    model: str = LOCAL_MODEL,
    headers: dict[str, str] | None = None,
    max_tokens: int = 8,
    **extra: Any,
) -> tuple[tuple[str, str], str, Any]:
    """One streamed chat request read to the end: ``((tier, reason), text, usage)``."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        **extra,
    )
    parts, usage = [], None
    with raw.parse() as stream:
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
    return route(raw.headers), "".join(parts), usage


def long_prompt(words: int) -> str:
    """``words`` distinct-ish words; roughly one token or more each for SmolLM2."""
    return " ".join(f"w{i}" for i in range(words))


def metric(agent: RunningAgent, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Samples of ``name`` on ``/metrics``, keyed by the values of ``labels``."""
    text = httpx.get(f"{agent.url}/metrics", timeout=10).text
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


def route_decisions(agent: RunningAgent) -> dict[tuple[str, ...], float]:
    """``agl_route_decisions_total`` by (tier, reason)."""
    return metric(agent, "agl_route_decisions_total", "tier", "reason")
