"""Hot reload: watch a plugin directory and swap the chain atomically when it changes.

    watcher = PluginWatcher(Path("wasm_plugins"))   # loads now; raises PluginError if bad
    watcher.start()                                 # polls every 0.5 s in a daemon thread
    chain = watcher.chain                           # take it once per request, use it throughout
    ...
    watcher.stop()

Swapping is one attribute assignment, so a request that already took ``watcher.chain``
finishes on the old chain and no request waits or is dropped. A directory that does not
load (bad manifest, digest mismatch, module that does not link) leaves the old chain in
place; the error is logged once and kept in ``last_error`` until a good reload.
Write a new module before its manifest (or rename files into place): a manifest whose
module is not there yet is refused and retried at the next change.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType

from shared.plugins.chain import PluginChain
from shared.plugins.errors import PluginError
from shared.plugins.manifest import MANIFEST_SUFFIX

__all__ = ["PluginWatcher", "directory_fingerprint"]

log = logging.getLogger("shared.plugins")

Fingerprint = tuple[tuple[str, int, int], ...]


def directory_fingerprint(directory: Path) -> Fingerprint:
    """(name, mtime_ns, size) of every manifest and module in ``directory``; changes on edits."""
    entries = []
    try:
        paths = list(directory.iterdir())
    except OSError:
        return ()
    for path in paths:
        if not (path.name.endswith(MANIFEST_SUFFIX) or path.suffix == ".wasm"):
            continue
        try:
            st = path.stat()
        except OSError:  # removed between listing and stat: the next poll sees it
            continue
        entries.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(entries))


class PluginWatcher:
    """Holds the current ``PluginChain`` for a directory and reloads it when files change."""

    def __init__(self, directory: Path, *, interval_s: float = 0.5) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self._fingerprint = directory_fingerprint(directory)
        self._chain = PluginChain.from_directory(directory)
        self.last_error: PluginError | None = None
        """The error of the last failed reload, None after a good one."""
        self.generation = 0
        """How many times the chain was swapped."""
        self._lock = threading.Lock()  # one reload at a time; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def chain(self) -> PluginChain:
        """The current chain; take it once per request."""
        return self._chain

    def check(self) -> bool:
        """Reload if the directory changed since the last look; True when the chain was swapped."""
        with self._lock:
            now = directory_fingerprint(self.directory)
            if now == self._fingerprint:
                return False
            self._fingerprint = now
            return self._reload_locked()

    def reload(self) -> bool:
        """Reload now, changed or not; True when the chain was swapped."""
        with self._lock:
            self._fingerprint = directory_fingerprint(self.directory)
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        try:
            chain = PluginChain.from_directory(self.directory, previous=self._chain)
        except PluginError as exc:
            self.last_error = exc
            log.error(
                "plugin reload of %s refused, keeping the current chain: %s", self.directory, exc
            )
            return False
        self._chain = chain
        self.last_error = None
        self.generation += 1
        log.info("plugins reloaded from %s: %s", self.directory, ", ".join(chain.names()) or "none")
        return True

    def start(self) -> None:
        """Start polling in a daemon thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="plugin-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; the chain stays as is
                log.exception("plugin watcher: unexpected error while reloading %s", self.directory)

    def __enter__(self) -> PluginWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
