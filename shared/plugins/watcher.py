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

The fingerprint covers the directory itself (device and inode, so a directory deleted and
made again, or swapped in by a rename, counts as a change even when its listing looks the
same) and each plugin file's inode, size and times. It only ``stat``s; files are read by
``PluginChain.from_directory``, which reads only regular files of bounded size and never
blocks on a FIFO or device named like a plugin file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType

from shared.plugins.chain import PluginChain
from shared.plugins.errors import PluginError
from shared.plugins.limits import HostLimits
from shared.plugins.manifest import MANIFEST_SUFFIX

__all__ = ["PluginWatcher", "directory_fingerprint"]

log = logging.getLogger("shared.plugins")

Fingerprint = tuple[object, ...]

_MISSING: Fingerprint = ("missing",)
_UNSETTLED: Fingerprint = ("changed while it was read",)
"""Matches no directory: the next poll reloads (the last attempt read a directory in motion)."""


def directory_fingerprint(directory: Path) -> Fingerprint:
    """The directory's identity plus (name, inode, size, mtime, ctime) of each plugin file.

    A directory that cannot be listed fingerprints as missing, which differs from any
    directory that exists (even an empty one), so re-creating it is a change.
    """
    try:
        dir_stat = directory.stat()
        paths = list(directory.iterdir())
    except OSError:
        return _MISSING
    entries = []
    for path in paths:
        if not (path.name.endswith(MANIFEST_SUFFIX) or path.suffix == ".wasm"):
            continue
        try:
            st = path.stat()  # follows symlinks: a swapped link target is a change
        except OSError:  # removed between listing and stat: the next poll sees it
            continue
        entries.append(
            (
                path.name,
                st.st_dev,
                st.st_ino,
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
            )
        )
    return (dir_stat.st_dev, dir_stat.st_ino, *sorted(entries))


class PluginWatcher:
    """Holds the current ``PluginChain`` for a directory and reloads it when files change."""

    def __init__(
        self, directory: Path, *, interval_s: float = 0.5, limits: HostLimits | None = None
    ) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.limits = limits or HostLimits()
        self._fingerprint = directory_fingerprint(directory)
        self._chain = PluginChain.from_directory(directory, limits=self.limits)
        self.last_error: PluginError | None = None
        """The error of the last failed reload, None after a good one."""
        self.generation = 0
        """How many times the chain was swapped."""
        self._refused_once = False
        """The last attempt was refused on a directory that held still; one more look confirms it."""
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
            return self._reload_at_locked(now)

    def reload(self) -> bool:
        """Reload now, changed or not; True when the chain was swapped."""
        with self._lock:
            return self._reload_at_locked(directory_fingerprint(self.directory))

    def _reload_at_locked(self, before: Fingerprint) -> bool:
        """Reload, remembering ``before`` only once the attempt is known to match it.

        A file written (or removed) during the read means the attempt saw neither state: the next
        poll must look again, or a broken plugin removed right after its refusal would leave the
        watcher blind to the good directory that is back. The same listing before and after the
        read does not prove that either: a manifest created and removed again while it was read
        (A, B, A) leaves no trace in it. So a refusal is confirmed by one more read at the next
        poll before the watcher rests on it; a load that succeeded needs no second look.
        """
        swapped = self._reload_locked()
        after = directory_fingerprint(self.directory)
        if after != before:
            self._fingerprint, self._refused_once = _UNSETTLED, False
        elif swapped or self._refused_once:
            self._fingerprint, self._refused_once = before, not swapped
        else:
            self._fingerprint, self._refused_once = _UNSETTLED, True
        return swapped

    def _reload_locked(self) -> bool:
        try:
            chain = PluginChain.from_directory(
                self.directory, previous=self._chain, limits=self.limits
            )
        except PluginError as exc:
            if str(exc) != str(self.last_error):  # a confirming read that fails alike is quiet
                log.error(
                    "plugin reload of %s refused, keeping the current chain: %s",
                    self.directory,
                    exc,
                )
            self.last_error = exc
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
