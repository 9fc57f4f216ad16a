"""Signed artifacts in the JetStream object stores ``agl_plugins`` and ``agl_models`` (pure).

An artifact is stored under its sha256 (hex) as the object name. Its object headers say what it
is and who signed it; the signature (an nkey's ed25519) covers the kind, the name, the content
digest and, for a plugin, the digest of its manifest, so none of them can be swapped alone:

    text = signed_text(kind="plugin", name="pii_redact", sha256=digest, manifest_sha256=m)
    headers = artifact_headers(..., signature=signer.sign(text), signer=signer.public)
    check_signature(headers, trusted=["A…"], sha256=digest)    # ArtifactError when wrong
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from typing import Literal

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from shared.errors import AglError

__all__ = [
    "BUCKETS",
    "CHUNK_BYTES",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "artifact_headers",
    "check_signature",
    "signed_text",
]

Kind = Literal["plugin", "model"]
BUCKETS: dict[str, str] = {"plugin": "agl_plugins", "model": "agl_models"}
#: Object-store chunk size: a 98 MB model is about 190 messages, each well under max_payload.
CHUNK_BYTES = 512 * 1024

H_KIND, H_NAME, H_SIGNER, H_SIGNATURE = "Agl-Kind", "Agl-Name", "Agl-Signer", "Agl-Signature"
H_MANIFEST, H_VERSION = "Agl-Manifest", "Agl-Version"


class ArtifactError(AglError):
    """An artifact cannot be used: missing, unsigned, signed by an unknown key, or altered."""


class ArtifactMissingError(ArtifactError):
    """The object store has no artifact with that digest."""


class ArtifactIntegrityError(ArtifactError):
    """The artifact's bytes or signature do not match what it claims."""


def signed_text(*, kind: str, name: str, sha256: str, manifest_sha256: str = "") -> bytes:
    """The bytes a signature covers."""
    return f"agl-artifact-v1\n{kind}\n{name}\n{sha256}\n{manifest_sha256}".encode()


def manifest_digest(manifest_text: str) -> str:
    """sha256 of a manifest's text ("" for none)."""
    return hashlib.sha256(manifest_text.encode()).hexdigest() if manifest_text else ""


def artifact_headers(
    *,
    kind: Kind,
    name: str,
    signer: str,
    signature: bytes,
    manifest_text: str = "",
    version: str = "",
) -> dict[str, str]:
    """Object headers of an artifact (values are plain strings, the manifest base64)."""
    headers = {
        H_KIND: kind,
        H_NAME: name,
        H_SIGNER: signer,
        H_SIGNATURE: base64.b64encode(signature).decode(),
    }
    if manifest_text:
        headers[H_MANIFEST] = base64.b64encode(manifest_text.encode()).decode()
    if version:
        headers[H_VERSION] = version
    return headers


def manifest_of(headers: Mapping[str, str]) -> str:
    """The manifest text an artifact carries ("" for a model)."""
    raw = headers.get(H_MANIFEST, "")
    try:
        return base64.b64decode(raw).decode() if raw else ""
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ArtifactIntegrityError(
            f"artifact manifest header is not base64 text: {exc}"
        ) from None


def _verify(public: str, data: bytes, sig_b64: str) -> bool:
    """Ed25519 check of an nkey public key (base32: prefix byte, 32 key bytes, crc16)."""
    try:
        raw = base64.b32decode(public + "=" * (-len(public) % 8))
        if len(raw) != 35 or not nkeys.valid_public_prefix_byte(raw[0]):
            return False
        VerifyKey(raw[1:33]).verify(data, base64.b64decode(sig_b64))
        return True
    except (binascii.Error, ValueError, BadSignatureError):
        return False


def check_signature(headers: Mapping[str, str], *, trusted: Iterable[str], sha256: str) -> str:
    """Verify the signature over ``sha256`` and the headers; return the signer's public key.

    :class:`ArtifactIntegrityError` when it is missing, by a key not in ``trusted``, or wrong.
    """
    signer, sig = headers.get(H_SIGNER, ""), headers.get(H_SIGNATURE, "")
    if not signer or not sig:
        raise ArtifactIntegrityError(f"artifact {sha256[:12]} is not signed; push it with hubctl")
    keys = set(trusted)
    if signer not in keys:
        raise ArtifactIntegrityError(
            f"artifact {sha256[:12]} is signed by {signer}, which this device does not trust; "
            "add the hub's signing key to desired.trusted_signers (the full key: `signer` in "
            "`hubctl plugins list --json`, or `signed by …` in what `hubctl plugins push` prints)"
        )
    text = signed_text(
        kind=headers.get(H_KIND, ""),
        name=headers.get(H_NAME, ""),
        sha256=sha256,
        manifest_sha256=manifest_digest(manifest_of(headers)),
    )
    ok = _verify(signer, text, sig)
    if not ok:
        raise ArtifactIntegrityError(
            f"artifact {sha256[:12]}: the signature does not match its content and headers "
            "(altered after signing); push it again"
        )
    return signer
