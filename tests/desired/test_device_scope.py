"""Operator mode: a device reads the artifacts and its own desired-state key, and no other key.

A real nats-server with JWT auth (``hubctl auth init``), the hub's credentials for pushing, each
device's own credentials (``hubctl devices enroll``) for reading.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from cloud_hub.control.artifacts import push_artifact, signing_key
from cloud_hub.control.policy import materialize, open_config, set_layer
from edge_agent.control.artifact_cache import ArtifactCache
from edge_agent.control.watcher import DesiredWatcher
from shared.desired import decode_record, layer_key
from shared.subjects import inbox_prefix
from tests.fleet.conftest import OperatorNats
from tests.fleet.conftest import op_nats as op_nats  # the fixture

WASM = Path(__file__).resolve().parents[2] / "wasm_plugins"


async def _device(server: OperatorNats, name: str, errors: list[str]) -> Client:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        server.url, user_credentials=str(server.enroll(name)), inbox_prefix=inbox_prefix(name),
        error_cb=on_error, allow_reconnect=False,
    )  # fmt: skip


def test_a_device_reads_artifacts_and_its_own_key_only(
    op_nats: OperatorNats, tmp_path: Path
) -> None:
    async def main() -> None:
        hub = await nats.connect(op_nats.url, user_credentials=str(op_nats.hub_creds))
        errors: list[str] = []
        dev = await _device(op_nats, "dev-a", errors)
        try:
            signer = signing_key(tmp_path / "auth")
            row = await push_artifact(
                hub.jetstream(), kind="plugin", path=WASM / "pii_redact.wasm", signer=signer,
                manifest=WASM / "pii_redact.plugin.toml",
            )  # fmt: skip
            kv = await open_config(hub)
            for device in ("dev-a", "dev-b"):
                await set_layer(kv, layer_key(device=device), {"router": {"load_slo_s": 3.0}})
                await materialize(kv, device, None)

            cache = ArtifactCache(tmp_path / "cache", max_bytes=1 << 24, trusted=[signer.public])
            got = await cache.fetch(dev.jetstream(), kind="plugin", sha256=row.sha256)
            assert got.path.read_bytes() == (WASM / "pii_redact.wasm").read_bytes()

            js = dev.jetstream(timeout=2)
            own = await js.get_msg("KV_agl_config", subject="$KV.agl_config.dev-a", direct=True)
            assert decode_record(own.data or b"").state == {"router": {"load_slo_s": 3.0}}
            seen: list[bytes] = []

            async def on_msg(msg: nats.aio.msg.Msg) -> None:
                seen.append(msg.data)

            watcher = DesiredWatcher(device="dev-a", connection=lambda: dev, applier=None)  # type: ignore[arg-type]
            watcher._on_msg = on_msg  # type: ignore[method-assign]
            await watcher._watch(dev)  # the watch the agent makes
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.05)
            assert seen and decode_record(seen[0]).revision

            with pytest.raises(Exception):  # noqa: B017  (a timeout: the server drops the request)
                await js.get_msg("KV_agl_config", subject="$KV.agl_config.dev-b", direct=True)
            with pytest.raises(Exception):  # noqa: B017
                await js.get_msg("KV_agl_config", subject="$KV.agl_config.layer.fleet", direct=True)
            await asyncio.sleep(0.2)
            assert any("permissions violation" in e and "dev-b" in e for e in errors), errors
        finally:
            await dev.close()
            await hub.close()

    asyncio.run(main())
