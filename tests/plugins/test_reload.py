"""Hot reload: atomic swaps, bad plugins keep the old chain, no request dropped under load."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from shared.plugins import PluginIntegrityError, PluginWatcher
from tests.plugins.conftest import fixed, request


def _route(target: str) -> dict[str, str]:
    return {"action": "route", "target": target}


def test_changed_manifest_swaps_the_chain(plugin_dir: Path) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    assert watcher.chain.on_request(request("x")).route_target == "cloud"
    assert not watcher.check()  # nothing changed
    fixed(plugin_dir, "r", _route("edge"), priority=1)
    assert watcher.check() and watcher.generation == 1
    assert watcher.chain.on_request(request("x")).route_target == "edge"


def test_bad_new_plugin_keeps_the_old_chain(plugin_dir: Path) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    old = watcher.chain
    fixed(plugin_dir, "evil", _route("edge"), sha256=hashlib.sha256(b"other").hexdigest())
    assert not watcher.check()
    assert watcher.chain is old and isinstance(watcher.last_error, PluginIntegrityError)
    (plugin_dir / "evil.plugin.toml").unlink()
    assert watcher.check() and watcher.last_error is None


def test_reload_under_concurrent_load_drops_no_request(plugin_dir: Path) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    with PluginWatcher(plugin_dir, interval_s=0.02) as watcher:
        stop = threading.Event()
        seen: list[str | None] = []
        errors: list[BaseException] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    chain = watcher.chain
                    result = chain.on_request(request("x"))
                    assert not result.rejected, result
                    seen.append(result.route_target)
                except BaseException as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for i in range(12):
            target = "edge" if i % 2 else "cloud"
            fixed(plugin_dir, "r", _route(target), priority=i)  # a new manifest each time
            if i % 3 == 0:  # and now and then a broken plugin, which must be refused
                fixed(plugin_dir, "bad", _route("edge"), sha256="0" * 64)
                time.sleep(0.06)
                (plugin_dir / "bad.plugin.toml").unlink()
            time.sleep(0.06)
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(seen) > 100 and set(seen) == {"cloud", "edge"}
    assert watcher.generation >= 3
