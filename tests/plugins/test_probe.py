"""The memory probe the host adds to modules: same behaviour, one more export that measures memory."""

from __future__ import annotations

import threading
from pathlib import Path

import extism  # type: ignore[import-untyped]
import pytest
from extism_sys import lib as extism_lib  # type: ignore[import-untyped]

from shared.plugins import HostLimits, PluginChain
from shared.plugins._probe import PROBE_EXPORT, with_memory_probe
from tests.plugins.conftest import HOSTILE, SAMPLES, fixed, request

INPUT = (
    b'{"messages":[{"role":"user","content":"mail a@b.com, prove it"}],"model":"m","metadata":{}}'
)


@pytest.mark.parametrize(
    "module",
    [SAMPLES / "pii_redact.wasm", SAMPLES / "prompt_guard.wasm", SAMPLES / "topic_router.wasm"],
    ids=lambda p: p.stem,
)
def test_probed_module_answers_the_same_and_reports_its_pages(module: Path) -> None:
    wasm = module.read_bytes()
    probed = with_memory_probe(wasm)
    assert probed is not None and probed != wasm
    plain = extism.Plugin(wasm, functions=[])
    measured = extism.Plugin(probed, functions=[])
    assert measured.call("on_request", INPUT) == plain.call("on_request", INPUT)
    pages = extism_lib.extism_plugin_call(measured.plugin, PROBE_EXPORT.encode(), b"", 0)
    assert 1 <= pages <= 64


@pytest.mark.parametrize("garbage", [b"", b"\0asm", b"not wasm at all", b"\0asm\x01\0\0\0\x01\xff"])
def test_what_cannot_be_probed_is_left_alone(garbage: bytes) -> None:
    assert with_memory_probe(garbage) is None


def test_a_module_without_memory_is_not_probed() -> None:
    # (module (func (result i32) i32.const 0) (export "on_request" (func 0))): no memory at all
    wasm = bytes.fromhex(
        "0061736d01000000"  # magic, version
        "010501600001 7f"  # type: () -> i32
        "0302 0100"  # function 0 has type 0
        "070e 01 0a6f6e5f72657175657374 0000"  # export "on_request" = function 0
        "0a06 01 04 00 4100 0b"  # code: i32.const 0
    )
    assert extism.Plugin(wasm, functions=[]).function_exists("on_request")  # a valid module
    assert with_memory_probe(wasm) is None


def test_pool_size_one_serialises_concurrent_calls(plugin_dir: Path) -> None:
    fixed(plugin_dir, "p", {"action": "route", "target": "edge"})
    chain = PluginChain.from_directory(plugin_dir, limits=HostLimits(pool_size=1))
    results: list[str | None] = []

    def client() -> None:
        for _ in range(50):
            results.append(chain.on_request(request("x")).route_target)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["edge"] * 200
    stats = chain.plugins[0].module.stats()
    assert stats.pool_size == 1 and stats.idle == 1 and stats.dropped == 0


def test_a_module_exporting_the_reserved_name_is_refused(plugin_dir: Path) -> None:
    from shared.plugins import PluginLoadError
    from tests.plugins.conftest import write_plugin

    wasm = (HOSTILE / "grow.wasm").read_bytes()
    probed = with_memory_probe(wasm)
    assert probed is not None
    module = plugin_dir / "sneaky_src.wasm"
    module.write_bytes(probed)
    write_plugin(plugin_dir, "sneaky", module, memory_pages=512, memory_recycle_pages=8)
    module.unlink()
    with pytest.raises(PluginLoadError, match=PROBE_EXPORT):
        PluginChain.from_directory(plugin_dir)
