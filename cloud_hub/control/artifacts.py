"""Push and list signed artifacts in the object stores ``agl_plugins`` / ``agl_models`` (I/O).

    signer = signing_key(Path("auth"))                 # DIR/signing.nk, made on first use
    info = await push_artifact(js, kind="model", name="smol", path=gguf, signer=signer,
                               progress=bar.update)    # chunked; bytes sent so far
    rows = await list_artifacts(js, "model")

The object name is the content's sha256; the headers carry the kind, the name, the signer and
the signature (``shared.artifacts``).
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from cloud_hub.control.auth import NKey, key_from_seed, new_key
from cloud_hub.control.keystore import write_private
from cloud_hub.errors import HubError
from shared.artifacts import (
    BUCKETS,
    CHUNK_BYTES,
    H_KIND,
    H_NAME,
    H_SIGNER,
    H_VERSION,
    Kind,
    artifact_headers,
    manifest_digest,
    signed_text,
)
from shared.model_files import sha256_file

__all__ = ["ArtifactRow", "PushError", "list_artifacts", "push_artifact", "signing_key"]

SIGNING_KEY_FILE = "signing.nk"


class PushError(HubError):
    """An artifact cannot be pushed: unreadable file, bad manifest, digest mismatch."""


def signing_key(auth_dir: Path) -> NKey:
    """The artifact signing key in ``auth_dir`` (an account nkey), created 0600 when missing."""
    path = auth_dir / SIGNING_KEY_FILE
    if path.is_file():
        try:
            return key_from_seed(path.read_bytes())
        except ValueError as exc:
            raise PushError(f"{path}: {exc}; delete it to make a new signing key") from None
    key = new_key("account")
    write_private(path, key.seed.decode())
    return key


class _Counting(io.RawIOBase):
    """A file reader that reports how many bytes went out (for a progress bar)."""

    def __init__(self, f: io.BufferedReader, progress: Callable[[int], None]) -> None:
        self._f, self._progress = f, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self._progress(n)
        return n


async def open_store(js: JetStreamContext, kind: Kind) -> ObjectStore:
    """The kind's object store; created (file storage) when missing."""
    bucket = BUCKETS[kind]
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(bucket)


def plugin_manifest(path: Path, wasm_sha: str) -> tuple[str, str, str]:
    """(name, version, text) of a plugin manifest whose sha256 must be the module's."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PushError(f"manifest {path}: {exc}") from None
    name, pinned = data.get("name"), str(data.get("sha256", "")).lower()
    if not isinstance(name, str) or not name:
        raise PushError(f'manifest {path} has no name; add name = "..."')
    if pinned != wasm_sha:
        raise PushError(
            f"manifest {path} pins sha256 {pinned or '(none)'}, but the module's is {wasm_sha}; "
            "update the manifest's sha256"
        )
    return name, str(data.get("version", "")), text


async def push_artifact(
    js: JetStreamContext,
    *,
    kind: Kind,
    path: Path,
    signer: NKey,
    name: str | None = None,
    manifest: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> ArtifactRow:
    """Sign and upload ``path`` under its sha256; a stored identical object is kept."""
    if not path.is_file():
        raise PushError(f"{path} is not a file")
    sha = sha256_file(path)
    version, manifest_text = "", ""
    if manifest is not None:
        name, version, manifest_text = plugin_manifest(manifest, sha)
    if not name:
        raise PushError(f"give the {kind} a name (--id for a model, a manifest for a plugin)")
    text = signed_text(
        kind=kind, name=name, sha256=sha, manifest_sha256=manifest_digest(manifest_text)
    )
    headers = artifact_headers(
        kind=kind, name=name, signer=signer.public, signature=signer.sign(text),
        manifest_text=manifest_text, version=version,
    )  # fmt: skip
    store = await open_store(js, kind)
    meta = ObjectMeta(
        name=sha,
        description=f"{kind} {name}",
        headers=headers,
        options=ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
    )
    with path.open("rb") as f:
        info = await store.put(sha, _Counting(f, progress), meta=meta)  # type: ignore[arg-type]
    return ArtifactRow(kind=kind, name=name, sha256=sha, size=info.size or 0,
                       version=version, signer=signer.public, chunks=info.chunks or 0)  # fmt: skip


@dataclass(frozen=True)
class ArtifactRow:
    """One stored artifact as ``hubctl plugins|models list`` shows it."""

    kind: str
    name: str
    sha256: str
    size: int
    version: str
    signer: str
    chunks: int

    def as_json(self) -> dict[str, Any]:
        """The row as JSON data."""
        return dict(self.__dict__)


async def list_artifacts(js: JetStreamContext, kind: Kind) -> list[ArtifactRow]:
    """Every stored artifact of ``kind`` (none when the store does not exist yet)."""
    try:
        store = await js.object_store(BUCKETS[kind])
    except (BucketNotFoundError, NotFoundError):
        return []
    try:
        infos = await store.list()
    except NotFoundError:  # nats-py: an empty store
        return []
    rows = []
    for info in infos:
        h = info.headers or {}
        rows.append(
            ArtifactRow(
                kind=h.get(H_KIND, kind),
                name=h.get(H_NAME, "?"),
                sha256=info.name,
                size=info.size or 0,
                version=h.get(H_VERSION, ""),
                signer=h.get(H_SIGNER, ""),
                chunks=info.chunks or 0,
            )
        )
    return sorted(rows, key=lambda r: (r.name, r.sha256))
