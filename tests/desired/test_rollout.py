"""Staged rollout end to end: real hub (heartbeat intake), real agents, real .wasm, real hubctl.

A plugin that fails closed on every request goes to the first wave only: the canary's 5xx rate
breaches the bound, the controller rolls it back, and the later waves never receive it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import nats
import pytest
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.control.artifacts import signing_key
from cloud_hub.control.registry import Registry
from tests.fixtures.agents import RunningAgent, edge
from tests.fixtures.hubs import hub_in_thread, hub_settings
from tests.fixtures.names import LOCAL_MODEL
from tests.fixtures.waiting import poll

from .conftest import RestartableNats

WASM = Path(__file__).resolve().parents[2] / "wasm_plugins"
DEVICES = ["dev-1", "dev-2", "dev-3"]


def _hubctl(server: RestartableNats, tmp: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(hubctl, [*args, "--nats-url", server.url, "--dir", str(tmp / "auth")])
    return out.exit_code, out.output


def _failing_plugin(tmp: Path) -> tuple[Path, Path]:
    """fixed_verdict.wasm answering a verdict that is not one: every call fails, fail = closed."""
    module = WASM / "tests" / "fixed_verdict.wasm"
    sha = hashlib.sha256(module.read_bytes()).hexdigest()
    manifest = tmp / "always_fail.plugin.toml"
    manifest.write_text(
        f'name = "always_fail"\nversion = "0.0.1"\nsha256 = "{sha}"\nhooks = ["on_request"]\n'
        'fail = "closed"\n[config]\nverdict = "not a verdict"\n'
    )
    return module, manifest


class Load:
    """Requests to every agent, round robin, until stopped; status codes per agent."""

    def __init__(self, agents: list[RunningAgent]) -> None:
        self.agents = agents
        self.codes: dict[str, Counter[int]] = {
            a.state.settings.device_id: Counter() for a in agents
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {
            "model": LOCAL_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        }
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                for agent in self.agents:
                    code = client.post(f"{agent.v1}/chat/completions", json=body).status_code
                    self.codes[agent.state.settings.device_id][code] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


@pytest.fixture()
def fleet(js_nats: RestartableNats, tmp_path: Path) -> Iterator[list[RunningAgent]]:
    signer = signing_key(tmp_path / "auth").public
    settings = hub_settings(js_nats.url, heartbeat_min_interval_s=0.1, heartbeat_burst=100)
    with ExitStack() as stack:
        stack.enter_context(hub_in_thread(settings))
        agents = [
            stack.enter_context(
                edge(
                    js_nats.url, device_id=name, hub={"heartbeat_s": 0.5},
                    desired={"reconcile_s": 0.5, "cache_dir": str(tmp_path / name), "trusted_signers": [signer]},
                )
            )
            for name in DEVICES
        ]  # fmt: skip
        poll(lambda: len(_registered(js_nats)) == 3, 30, "three devices in the registry")
        yield agents


def _registered(server: RestartableNats) -> list[str]:
    async def main() -> list[str]:
        nc = await nats.connect(server.url)
        try:
            return [e.device for e in await (await Registry.open(nc)).entries() if e.heartbeat]
        finally:
            await nc.close()

    return asyncio.run(main())


def _kv_history(server: RestartableNats, device: str) -> list[str]:
    """Every record ever written to the device's key (the bucket keeps 5 per key)."""

    async def main() -> list[str]:
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().key_value("agl_config")
            try:
                return [e.value.decode() for e in await kv.history(device) if e.value]
            except Exception:  # no key written: nothing was ever sent there
                return []
        finally:
            await nc.close()

    return asyncio.run(main())


def test_a_fail_closed_plugin_is_rolled_back_after_its_first_wave(
    js_nats: RestartableNats, tmp_path: Path, fleet: list[RunningAgent]
) -> None:
    module, manifest = _failing_plugin(tmp_path)
    code, out = _hubctl(
        js_nats, tmp_path, "plugins", "push", str(module), "--manifest", str(manifest)
    )
    assert code == 0, out
    ref = re.findall(r"\S+@[0-9a-f]{64}", out)[-1]
    with Load(fleet) as load:
        code, out = _hubctl(
            js_nats, tmp_path, "rollout", "start", "--plugin", ref,
            "--waves", "30%,60%,100%", "--window", "3s", "--max-error-rate", "0.02", "--json",
        )  # fmt: skip
    assert code == 0, out
    state = json.loads(out)
    assert state["status"] == "rolled_back" and state["wave"] == 0
    assert "error rate" in state["reason"] or "could not apply" in state["reason"]
    canary = state["devices"][0]
    assert load.codes[canary][503] > 0  # the canary did get the plugin and failed closed
    for device in state["devices"][1:]:
        assert load.codes[device][503] == 0
        assert all("always_fail" not in rec for rec in _kv_history(js_nats, device))
    by_id = {a.state.settings.device_id: a for a in fleet}
    # Back to its local settings: no plugins directory, so no chain at all.
    poll(lambda: by_id[canary].state.plugins is None, 30, "the canary's rollback")
    code, audit = _hubctl(js_nats, tmp_path, "audit", "--json")
    events = [json.loads(line)["event"] for line in audit.splitlines()]
    assert events[0] == "rollout.start" and "rollout.rollback" in events
    code, status = _hubctl(js_nats, tmp_path, "rollout", "status", "--json")
    assert json.loads(status)["status"] == "rolled_back"


def test_a_second_rollout_on_one_target_is_refused(
    js_nats: RestartableNats, tmp_path: Path, fleet: list[RunningAgent]
) -> None:
    policy = tmp_path / "slo.toml"
    policy.write_text("[router]\nload_slo_s = 20.0\n")
    args = [
        "rollout",
        "start",
        "--policy",
        str(policy),
        "--waves",
        "50%,100%",
        "--window",
        "60s",
        "--detach",
    ]
    code, out = _hubctl(js_nats, tmp_path, *args)
    assert code == 0 and "running" in out, out
    code, out = _hubctl(js_nats, tmp_path, *args)
    assert code == 1 and "is running on fleet; wait for it, or `hubctl rollout abort" in out
    code, out = _hubctl(js_nats, tmp_path, "rollout", "pause")
    assert code == 0 and "paused" in out
    code, out = _hubctl(js_nats, tmp_path, "rollout", "abort", "--json")
    assert code == 0 and json.loads(out)["status"] == "aborted"
    code, out = _hubctl(js_nats, tmp_path, "rollout", "start", "--plugin", "x@abc")
    assert code == 2 and "write NAME@SHA256" in out
