"""Signed artifacts through a real JetStream object store: push, list, verified download."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import nats
import pytest
from nats.js.api import ObjectMeta, ObjectMetaOptions

from cloud_hub.control.artifacts import PushError, list_artifacts, push_artifact, signing_key
from cloud_hub.control.auth import new_key
from edge_agent.control.artifact_cache import ArtifactCache
from shared.artifacts import ArtifactIntegrityError, ArtifactMissingError

from .conftest import RestartableNats

WASM = Path(__file__).resolve().parents[2] / "wasm_plugins"


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_pushed_plugin_is_listed_and_arrives_verified(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    async def main() -> None:
        nc = await nats.connect(js_nats.url)
        js = nc.jetstream()
        signer = signing_key(tmp_path / "auth")
        assert (tmp_path / "auth" / "signing.nk").stat().st_mode & 0o777 == 0o600
        sent: list[int] = []
        row = await push_artifact(
            js, kind="plugin", path=WASM / "prompt_guard.wasm", signer=signer,
            manifest=WASM / "prompt_guard.plugin.toml", progress=sent.append,
        )  # fmt: skip
        data = (WASM / "prompt_guard.wasm").read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest() and row.name == "prompt_guard"
        assert sum(sent) == len(data)
        rows = await list_artifacts(js, "plugin")
        assert [(r.name, r.sha256, r.size, r.signer) for r in rows] == [
            ("prompt_guard", row.sha256, len(data), signer.public)
        ]
        assert await list_artifacts(js, "model") == []
        cache = ArtifactCache(tmp_path / "cache", max_bytes=10 << 20, trusted=[signer.public])
        got = await cache.fetch(js, kind="plugin", sha256=row.sha256)
        assert got.path.read_bytes() == data and got.name == "prompt_guard"
        assert got.manifest_text == (WASM / "prompt_guard.plugin.toml").read_text()
        assert cache.cached(row.sha256) == got
        await nc.close()

    _run(main())


def test_a_manifest_that_pins_another_digest_is_refused(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    async def main() -> None:
        nc = await nats.connect(js_nats.url)
        with pytest.raises(PushError, match="update the manifest's sha256"):
            await push_artifact(
                nc.jetstream(), kind="plugin", path=WASM / "pii_redact.wasm",
                signer=signing_key(tmp_path), manifest=WASM / "prompt_guard.plugin.toml",
            )  # fmt: skip
        await nc.close()

    _run(main())


def test_tampered_missing_and_untrusted_artifacts_are_refused(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    async def main() -> None:
        nc = await nats.connect(js_nats.url)
        js = nc.jetstream()
        signer = signing_key(tmp_path / "auth")
        blob = tmp_path / "model.bin"
        blob.write_bytes(b"weights" * 100_000)
        row = await push_artifact(js, kind="model", path=blob, signer=signer, name="tiny")
        cache = ArtifactCache(tmp_path / "cache", max_bytes=10 << 20, trusted=[signer.public])

        with pytest.raises(ArtifactMissingError, match="is not in the object store agl_models"):
            await cache.fetch(js, kind="model", sha256="0" * 64)
        stranger = ArtifactCache(
            tmp_path / "c2", max_bytes=1 << 20, trusted=[new_key("account").public]
        )
        with pytest.raises(ArtifactIntegrityError, match="does not trust"):
            await stranger.fetch(js, kind="model", sha256=row.sha256)

        store = await js.object_store("agl_models")
        info = await store.get_info(row.sha256)
        # Other bytes under the same name, with the genuine signed headers: the digest gives it away.
        meta = ObjectMeta(
            name=row.sha256, headers=info.headers, options=ObjectMetaOptions(max_chunk_size=4096)
        )
        await store.put(row.sha256, b"evil" * 1000, meta=meta)
        with pytest.raises(ArtifactIntegrityError, match="tampered with"):
            await cache.fetch(js, kind="model", sha256=row.sha256)
        # The right bytes, but a header changed after signing.
        headers = dict(info.headers or {}) | {"Agl-Name": "other"}
        await store.put(
            row.sha256, blob.read_bytes(), meta=ObjectMeta(name=row.sha256, headers=headers)
        )
        with pytest.raises(ArtifactIntegrityError, match="signature does not match"):
            await cache.fetch(js, kind="model", sha256=row.sha256)
        assert cache.cached(row.sha256) is None and list((tmp_path / "cache").glob("*.json")) == []
        await nc.close()

    _run(main())


def test_a_download_cut_by_a_nats_restart_finishes_verified(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: 20 chunks

    async def main() -> None:
        hub = await nats.connect(js_nats.url)
        signer = signing_key(tmp_path / "auth")
        row = await push_artifact(hub.jetstream(), kind="model", path=blob, signer=signer, name="m")
        await hub.close()
        dev = await nats.connect(js_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            cache = ArtifactCache(
                tmp_path / "cache", max_bytes=1 << 30, trusted=[signer.public], retry_s=0.2
            )
            chunks: list[int] = []

            async def restart_once(n: int) -> None:
                chunks.append(n)
                if len(chunks) == 3:
                    await asyncio.to_thread(js_nats.restart)

            cache.after_chunk = restart_once
            got = await asyncio.wait_for(
                cache.fetch(dev.jetstream(), kind="model", sha256=row.sha256), 120
            )
            assert len(chunks) == 20  # the restart came after chunk 3 of 20
            assert hashlib.sha256(got.path.read_bytes()).hexdigest() == row.sha256
        finally:
            await dev.close()

    _run(main())


def test_an_interrupted_download_is_never_activated_and_resumes_later(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(bytes(range(256)) * 40_000)

    class LinkLost(Exception):
        pass

    async def main() -> None:
        nc = await nats.connect(js_nats.url)
        try:
            signer = signing_key(tmp_path / "auth")
            row = await push_artifact(
                nc.jetstream(), kind="model", path=blob, signer=signer, name="m"
            )
            cache = ArtifactCache(tmp_path / "cache", max_bytes=1 << 30, trusted=[signer.public])

            async def cut(n: int) -> None:
                if n == 5:
                    raise LinkLost

            cache.after_chunk = cut
            with pytest.raises(LinkLost):
                await cache.fetch(nc.jetstream(), kind="model", sha256=row.sha256)
            assert cache.cached(row.sha256) is None  # a part file, never an entry
            again = ArtifactCache(tmp_path / "cache", max_bytes=1 << 30, trusted=[signer.public])
            sizes: list[int] = []

            async def watch(n: int) -> None:
                sizes.append(n)

            again.after_chunk = watch
            got = await again.fetch(nc.jetstream(), kind="model", sha256=row.sha256)
            assert again.resumed == 1 and len(sizes) == 15  # chunks 6..20 only
            assert got.path.read_bytes() == blob.read_bytes()
        finally:
            await nc.close()

    _run(main())


def test_the_cache_drops_unused_entries_oldest_first(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=250, trusted=[])
    import json
    import os
    import time

    for i, sha in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        (tmp_path / sha).write_bytes(b"x" * 100)
        (tmp_path / f"{sha}.json").write_text(json.dumps({"name": sha[0]}))
        os.utime(tmp_path / f"{sha}.json", (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.evict(keep={"a" * 64}) == ["b" * 64]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        f"{'a' * 64}.json",
        f"{'c' * 64}.json",
    ]
