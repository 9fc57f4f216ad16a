"""Hot reload: atomic swaps, bad plugins keep the old chain, no request dropped under load."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from shared.plugins import (
    PluginChain,
    PluginIntegrityError,
    PluginManifestError,
    PluginWatcher,
)
from tests.fixtures.waiting import poll
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


# Six client threads keep both cores busy while the watcher compiles each new chain: the waits are
# generous bounds on conditions (a stuck watcher still fails), not speed checks.
SWAP_WAIT_S = 60


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
                # A breath between calls: six threads calling back to back could keep the
                # watcher from its reload for a minute on a box the rest of the suite loads.
                stop.wait(0.001)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            start = watcher.generation
            _swap_twelve_times(plugin_dir, watcher, seen, errors)
        finally:  # the clients stop even when a wait fails, so a failure never hangs the run
            stop.set()
            for t in threads:
                t.join()
    assert not errors, errors[0]
    assert set(seen) == {"cloud", "edge"} and None not in seen
    # 12 good manifests and 4 removals of the broken one: each is a swap (a write caught
    # half-way may add one); the 4 broken ones never are
    assert watcher.generation - start >= 12 + 4


def _swap_twelve_times(
    plugin_dir: Path, watcher: PluginWatcher, seen: list[str | None], errors: list[BaseException]
) -> None:
    """Twelve new manifests (and four refused broken plugins) while the clients run."""

    def refused() -> bool:  # not a half-written manifest: the written one, for its digest
        return isinstance(watcher.last_error, PluginIntegrityError)

    def swapped(since: int, what: str) -> None:
        try:
            poll(lambda: watcher.generation > since or errors, SWAP_WAIT_S, what)
        except AssertionError as exc:
            files = sorted(p.name for p in plugin_dir.iterdir())
            thread = watcher._thread
            frame = sys._current_frames().get(thread.ident or 0) if thread is not None else None
            where = "".join(traceback.format_stack(frame)) if frame is not None else "no thread"
            raise AssertionError(
                f"{exc}; generation {watcher.generation} (waited for > {since}), "
                f"last error {watcher.last_error!r}, files {files}; the watcher is at:\n{where}"
            ) from None

    for i in range(12):
        target = "edge" if i % 2 else "cloud"
        mark, gen = len(seen), watcher.generation
        fixed(plugin_dir, "r", _route(target), priority=i)  # a new manifest each time
        swapped(gen, f"manifest {i} to be loaded")
        # the clients move over to the new chain while they run
        poll(
            lambda t=target, m=mark: t in seen[m:] or errors,
            SWAP_WAIT_S,
            f"clients to see {target}",
        )
        if i % 3 == 0:  # and now and then a broken plugin, which must be refused
            gen = watcher.generation
            fixed(plugin_dir, "bad", _route("edge"), sha256="0" * 64)
            poll(refused, SWAP_WAIT_S, "the broken plugin refused")
            assert watcher.chain.names() == ["r"]  # the good chain stays
            (plugin_dir / "bad.plugin.toml").unlink()
            swapped(gen, "a good chain once the broken one is gone")


def test_a_manifest_made_and_removed_while_it_was_read_is_looked_at_again(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing before and after a read is the same (A, B, A), yet the read saw B: an empty
    manifest a writer had just created. The refusal is read again before the watcher rests."""
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    shutil.copyfile(plugin_dir / "r.wasm", plugin_dir / "bad.wasm")  # a change: a new module
    real = PluginChain.from_directory

    def read_while_a_writer_works(directory: Path, **kwargs: Any) -> PluginChain:
        manifest = directory / "bad.plugin.toml"
        manifest.write_text("")  # created, not written yet ...
        try:
            return real(directory, **kwargs)
        finally:
            manifest.unlink()  # ... and removed again before the read ends

    monkeypatch.setattr(PluginChain, "from_directory", read_while_a_writer_works)
    assert not watcher.check()
    assert isinstance(watcher.last_error, PluginManifestError)
    monkeypatch.undo()
    assert watcher.check()  # the confirming read finds the directory good
    assert watcher.last_error is None and watcher.chain.names() == ["r"]
    assert not watcher.check()  # and then it rests


def test_a_refusal_is_confirmed_once_then_the_watcher_rests(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    fixed(plugin_dir, "bad", _route("edge"), sha256="0" * 64)
    with caplog.at_level(logging.ERROR, logger="shared.plugins"):
        assert not watcher.check()  # refused
        assert not watcher.check()  # read once more: refused alike, not logged again
        assert not watcher.check()  # nothing changed: not read
    assert isinstance(watcher.last_error, PluginIntegrityError)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_deleting_and_recreating_the_directory_empty_unloads_the_plugins(
    plugin_dir: Path,
) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    assert watcher.chain.names() == ["r"]
    shutil.rmtree(plugin_dir)
    assert not watcher.check()  # gone: the current chain stays, the error is kept
    assert watcher.last_error is not None and watcher.chain.names() == ["r"]
    plugin_dir.mkdir()
    assert watcher.check() and watcher.chain.names() == []
    assert watcher.last_error is None


def test_replacing_the_directory_is_noticed_even_with_identical_listings(
    plugin_dir: Path, tmp_path: Path
) -> None:
    watcher = PluginWatcher(plugin_dir)  # empty
    other = tmp_path / "other"
    other.mkdir()
    fixed(other, "r", _route("edge"))
    shutil.rmtree(plugin_dir)
    other.rename(plugin_dir)  # a whole new directory swapped in between two polls
    assert watcher.check() and watcher.chain.names() == ["r"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["evil.wasm", "evil.plugin.toml"])
def test_a_fifo_in_the_directory_does_not_hang_the_watcher(plugin_dir: Path, name: str) -> None:
    fixed(plugin_dir, "r", _route("cloud"))
    watcher = PluginWatcher(plugin_dir)
    if name.endswith(".wasm"):
        fixed(plugin_dir, "evil", _route("edge"))
        (plugin_dir / name).unlink()
    os.mkfifo(plugin_dir / name)
    done = threading.Event()
    swapped: list[bool] = []

    def poll() -> None:
        swapped.append(watcher.check())
        done.set()

    threading.Thread(target=poll, daemon=True).start()
    assert done.wait(5), "the watcher hangs on a FIFO"
    assert swapped == [False] and watcher.chain.names() == ["r"]
    assert "not a regular file" in str(watcher.last_error)


def test_a_module_that_is_too_large_is_refused(plugin_dir: Path) -> None:
    fixed(plugin_dir, "big", _route("edge"))
    with (plugin_dir / "big.wasm").open("r+b") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: cheap to make, refused before it is read
    with pytest.raises(PluginManifestError, match="larger than"):
        PluginWatcher(plugin_dir)
