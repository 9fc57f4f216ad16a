"""Listing a KV bucket's keys from the server's own subject counts (``cloud_hub.control.kv_keys``)."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import KeyValueConfig

from cloud_hub.control.fleet import DeviceEntry
from cloud_hub.control.kv_keys import BucketReadError, bucket_keys, page_keys
from cloud_hub.control.registry import Registry, RegistryError
from shared.embedded_nats import embedded_nats


async def test_keys_are_listed_sorted_and_an_empty_bucket_has_none() -> None:
    with embedded_nats() as server:
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="b", history=3))
            assert await bucket_keys(nc, "b") == []
            for key in ("dev-3", "dev-1", "dev-2", "dev-1"):  # dev-1 twice: history, one key
                await kv.put(key, b"{}")
            assert await bucket_keys(nc, "b") == ["dev-1", "dev-2", "dev-3"]
        finally:
            await nc.close()


async def test_a_deleted_key_is_listed_but_the_registry_leaves_it_out() -> None:
    with embedded_nats() as server:
        nc = await nats.connect(server.url)
        try:
            registry = await Registry.open(nc)
            for device in ("dev-a", "dev-b", "dev-c"):
                await registry.put(DeviceEntry(device=device, site="lab"))
            kv = await nc.jetstream().key_value("agl_devices")
            await kv.delete("dev-b")
            assert await bucket_keys(nc, "agl_devices") == ["dev-a", "dev-b", "dev-c"]
            assert [e.device for e in await registry.entries()] == ["dev-a", "dev-c"]
        finally:
            await nc.close()


async def test_a_missing_bucket_or_no_jetstream_is_a_clear_error() -> None:
    with embedded_nats() as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(BucketReadError, match="keys of KV nope: stream not found"):
                await bucket_keys(nc, "nope")
            # A registry whose bucket went away says so in its own words.
            registry = await Registry.open(nc)
            await nc.jetstream().delete_key_value("agl_devices")
            with pytest.raises(RegistryError, match="keys of KV agl_devices: stream not found"):
                await registry.entries()
        finally:
            await nc.close()
    with embedded_nats(jetstream=False) as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(BucketReadError, match="keys of KV agl_devices"):
                await bucket_keys(nc, "agl_devices", timeout=2)
        finally:
            await nc.close()


def test_a_page_gives_its_keys_and_the_total_and_refuses_an_error_answer() -> None:
    page = {
        "total": 5,
        "offset": 3,
        "state": {"subjects": {"$KV.b.dev-4": 2, "$KV.b.dev-5": 1, "$KV.other.x": 1}},
    }
    assert page_keys(page, "b") == (["dev-4", "dev-5"], 5)
    assert page_keys({"total": 0, "state": {"messages": 0}}, "b") == ([], 0)
    with pytest.raises(BucketReadError, match="stream not found"):
        page_keys({"error": {"code": 404, "description": "stream not found"}}, "b")
