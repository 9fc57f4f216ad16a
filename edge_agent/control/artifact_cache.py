"""The device's artifact cache: verified plugins and models by sha256, with a size limit (I/O).

    cache = ArtifactCache(Path("/var/lib/agl/artifacts"), max_bytes=2 << 30, trusted=["A…"])
    entry = await cache.fetch(js, kind="model", sha256=digest)   # a verified local file
    cache.evict(keep={digest, ...})        # drop unused entries, oldest use first, over the limit

Chunks are read one direct get at a time (``next_by_subj`` after the last sequence read) into
``.partial/<sha>.part``; the sequence reached is kept beside it, so a download cut by a
reconnect (or an agent restart) goes on where it stopped. Only a file whose sha256 and signature
check out is renamed into the cache; anything else is deleted and never activated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError
from nats.js.errors import NotFoundError
from nats.js.manager import JetStreamManager

from shared.artifacts import (
    BUCKETS,
    H_NAME,
    ArtifactIntegrityError,
    ArtifactMissingError,
    Kind,
    check_signature,
    manifest_of,
)
from shared.model_files import sha256_file

__all__ = ["ArtifactCache", "CachedArtifact"]

log = logging.getLogger(__name__)
_RETRYABLE = (TimeoutError, ConnectionClosedError, NoRespondersError, OSError)


@dataclass(frozen=True)
class CachedArtifact:
    """A verified artifact on disk (and, for a plugin, its manifest text)."""

    sha256: str
    path: Path
    name: str
    manifest_text: str


class ArtifactCache:
    """Verified artifacts under ``root``; at most ``max_bytes`` of entries no one uses."""

    def __init__(
        self, root: Path, *, max_bytes: int, trusted: list[str], retry_s: float = 0.5
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.trusted = list(trusted)
        self.retry_s = retry_s
        self.resumed = 0
        """Downloads continued after an interruption (for tests and figures)."""
        self.after_chunk: Callable[[int], Awaitable[None]] | None = None
        """Called with the chunk count after each chunk is on disk (a test's hook)."""
        (root / ".partial").mkdir(parents=True, exist_ok=True)

    def _final(self, sha: str) -> Path:
        return self.root / sha

    def cached(self, sha: str) -> CachedArtifact | None:
        """The verified entry for ``sha`` if present (marks it used now)."""
        path, meta = self._final(sha), self._final(sha).with_suffix(".json")
        if not (path.is_file() and meta.is_file()):
            return None
        os.utime(meta)
        info = json.loads(meta.read_text())
        return CachedArtifact(sha, path, info.get("name", ""), info.get("manifest", ""))

    async def fetch(
        self, jsm: JetStreamManager, *, kind: Kind, sha256: str, deadline_s: float = 600.0
    ) -> CachedArtifact:
        """The verified artifact, downloading it first when it is not cached.

        ``deadline_s`` (600 s): link errors (timeouts, no responders) are retried until this
        long after the download started; one after that gives it up. The partial file stays,
        so the next reconcile goes on from it.
        """
        hit = self.cached(sha256)
        if hit is not None:
            return hit
        stream = f"OBJ_{BUCKETS[kind]}"
        headers, nuid, digest = await self._meta(jsm, stream, kind, sha256)
        check_signature(headers, trusted=self.trusted, sha256=sha256)
        if digest != sha256:
            raise ArtifactIntegrityError(
                f"{kind} {sha256[:12]}: the store says its content is sha256 {digest[:12]}…, "
                "not the name it was asked by; it was replaced or tampered with: push it again "
                f"with `hubctl {kind}s push` and start the rollout again"
            )
        part = await self._download(jsm, stream, f"$O.{BUCKETS[kind]}.C.{nuid}", sha256, deadline_s)
        actual = await asyncio.to_thread(sha256_file, part)
        if actual != sha256:
            part.unlink(missing_ok=True)
            raise ArtifactIntegrityError(
                f"{kind} {sha256[:12]}: downloaded bytes have sha256 {actual[:12]}…; refused "
                "(the next reconcile downloads it again; if this repeats, push it again with "
                f"`hubctl {kind}s push` and start the rollout again)"
            )
        name, manifest = headers.get(H_NAME, ""), manifest_of(headers)
        self._final(sha256).with_suffix(".json").write_text(
            json.dumps({"name": name, "manifest": manifest, "kind": kind})
        )
        os.replace(part, self._final(sha256))
        part.with_suffix(".seq").unlink(missing_ok=True)
        return CachedArtifact(sha256, self._final(sha256), name, manifest)

    async def _meta(
        self, jsm: JetStreamManager, stream: str, kind: str, sha: str
    ) -> tuple[dict[str, str], str, str]:
        subject = (
            f"$O.{stream.removeprefix('OBJ_')}.M.{base64.urlsafe_b64encode(sha.encode()).decode()}"
        )
        try:
            msg = await jsm.get_msg(stream, subject=subject, direct=True)
        except NotFoundError:
            raise ArtifactMissingError(
                f"{kind} {sha[:12]}… is not in the object store {stream[4:]}; push it with "
                f"hubctl {kind}s push"
            ) from None
        info = json.loads(msg.data or b"{}")
        if info.get("deleted"):
            raise ArtifactMissingError(
                f"{kind} {sha[:12]}… was deleted from the store; push it again with "
                f"`hubctl {kind}s push` and start the rollout again"
            )
        raw = str(info.get("digest", "")).split("=", 1)[-1]
        digest = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex() if raw else ""
        return dict(info.get("headers") or {}), str(info.get("nuid", "")), digest

    async def _download(
        self, jsm: JetStreamManager, stream: str, subject: str, sha: str, deadline_s: float
    ) -> Path:
        part = self.root / ".partial" / f"{sha}.part"
        seq_file = part.with_suffix(".seq")
        # The sequence file names the chunk subject, so a re-pushed object starts over.
        state = json.loads(seq_file.read_text()) if seq_file.is_file() else {}
        if state.get("subject") != subject or not part.is_file():
            state = {"subject": subject, "seq": 0, "bytes": 0}
            part.write_bytes(b"")
        elif state["seq"]:
            self.resumed += 1
        with part.open("r+b") as out:
            out.truncate(state["bytes"])  # a chunk written but not recorded is read again
            out.seek(state["bytes"])
            give_up = time.monotonic() + deadline_s
            while True:
                try:
                    msg = await jsm.get_msg(
                        stream, seq=state["seq"] + 1, subject=subject, direct=True, next=True
                    )
                except NotFoundError:
                    break  # no chunk after the last one: done
                except _RETRYABLE as exc:
                    if time.monotonic() > give_up:
                        raise ArtifactIntegrityError(
                            f"download of {sha[:12]} did not finish in {deadline_s:g}s ({exc}); "
                            "the next reconcile goes on where it stopped: check the device's "
                            "link to the hub (`hubctl devices list`)"
                        ) from None
                    log.info(
                        "artifact %s: %s; resuming at chunk seq %d", sha[:12], exc, state["seq"]
                    )
                    self.resumed += 1
                    await asyncio.sleep(self.retry_s)
                    continue
                out.write(msg.data or b"")
                out.flush()
                state["seq"], state["bytes"] = msg.seq or state["seq"] + 1, out.tell()
                seq_file.write_text(json.dumps(state))
                if self.after_chunk is not None:
                    await self.after_chunk(state["seq"])
        return part

    def evict(self, *, keep: set[str]) -> list[str]:
        """Drop entries not in ``keep``, least recently used first, until under ``max_bytes``."""
        entries = []
        for meta in self.root.glob("*.json"):
            path = meta.with_suffix("")
            if path.is_file():
                entries.append((meta.stat().st_mtime, path.stat().st_size, path.name, path))
        total = sum(e[1] for e in entries)
        dropped = []
        for _, size, sha, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if sha in keep:
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            total -= size
            dropped.append(sha)
        return dropped
