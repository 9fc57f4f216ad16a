"""NATS credentials and TLS on the client side: check a .creds file, build connect options.

    creds = read_creds(Path("dev-1.creds"))      # CredentialsError naming the file if malformed
    creds.allows_publish("agl.v1.dev.dev-1.hb")  # True
    options = connect_options(credentials=path, tls_ca=None, tls_cert=None, tls_key=None)
    nc = await nats.connect(url, **options)

:func:`auth_failure` and :func:`denied_subject` read nats-py's errors (which lowercase the
server's text) so that callers can say which credential or subject failed.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import AglError

_JWT_BLOCK = re.compile(
    r"-----BEGIN NATS USER JWT-----\s*\n\s*(\S+)\s*\n\s*------END NATS USER JWT"
)
_SEED_BLOCK = re.compile(
    r"-----BEGIN USER NKEY SEED-----\s*\n\s*(\S+)\s*\n\s*------END USER NKEY SEED"
)
_DENIED = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)"?')


class CredentialsError(AglError):
    """A .creds file (or a TLS file) is missing, unreadable or malformed."""


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a NATS JWT, without checking its signature; ValueError if it is none."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three dot-separated parts")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"a JWT part is not base64url JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("alg") != "ed25519-nkey":
        raise ValueError("the JWT header is not a NATS one (alg ed25519-nkey)")
    if not isinstance(claims, dict) or not isinstance(claims.get("nats"), dict):
        raise ValueError("the JWT claims have no `nats` section")
    return claims


def _subject_matches(pattern: str, subject: str) -> bool:
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


@dataclass(frozen=True)
class Credentials:
    """What a .creds file says: the user's name, key and allowed subjects (``None``: any)."""

    path: Path
    name: str
    user: str
    pub_allow: tuple[str, ...] | None
    sub_allow: tuple[str, ...] | None

    def allows_publish(self, subject: str) -> bool:
        """Whether the credentials' publish permissions cover ``subject``."""
        allow = self.pub_allow
        return allow is None or any(_subject_matches(p, subject) for p in allow)


def read_creds(path: Path) -> Credentials:
    """Read and check a .creds file (JWT block + seed block); :class:`CredentialsError` if not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise CredentialsError(
            f"cannot read the NATS credentials file {path}: {reason}; "
            "point hub.credentials at the .creds file from `hubctl devices enroll`"
        ) from None
    jwt, seed = _JWT_BLOCK.search(text), _SEED_BLOCK.search(text)
    problem = None
    claims: dict[str, Any] = {}
    if jwt is None or seed is None:
        problem = "it has no " + ("user JWT block" if jwt is None else "user nkey seed block")
    elif not seed.group(1).startswith("SU"):
        problem = "its seed is not a user seed (SU…)"
    else:
        try:
            claims = decode_jwt(jwt.group(1))
        except ValueError as exc:
            problem = f"its JWT is broken: {exc}"
    if problem is None and claims["nats"].get("type") != "user":
        problem = f"its JWT is a {claims['nats'].get('type')!r} JWT, not a user JWT"
    if problem is not None:
        raise CredentialsError(
            f"the NATS credentials file {path} is malformed: {problem}; "
            "re-create it with `hubctl devices enroll DEVICE_ID`"
        )
    nats = claims["nats"]
    pub, sub = nats.get("pub", {}).get("allow"), nats.get("sub", {}).get("allow")
    return Credentials(
        path=path,
        name=str(claims.get("name", "")),
        user=str(claims.get("sub", "")),
        pub_allow=tuple(pub) if pub else None,
        sub_allow=tuple(sub) if sub else None,
    )


def tls_context(*, ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A client TLS context from a CA bundle and an optional client cert/key; None if no TLS."""
    if ca is None and cert is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialsError(
            f"cannot load the TLS files (ca {ca}, cert {cert}, key {key}): {exc}"
        ) from None
    return ctx


def connect_options(
    *,
    credentials: Path | None,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``: user credentials and TLS, each when set."""
    options: dict[str, Any] = {}
    if credentials is not None:
        read_creds(credentials)  # fail here, naming the file, not deep inside nats-py
        options["user_credentials"] = str(credentials)
    ctx = tls_context(ca=tls_ca, cert=tls_cert, key=tls_key)
    if ctx is not None:
        options["tls"] = ctx
    return options


def auth_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the server refused the credentials (bad, expired or revoked)."""
    text = str(exc).lower()
    return (
        "authorization violation" in text
        or "authentication" in text
        or ("user authentication" in text)
    )


def denied_subject(exc: BaseException) -> tuple[str, str] | None:
    """``(publish|subscription, subject)`` if ``exc`` is a permissions violation, else None."""
    found = _DENIED.search(str(exc).lower())
    return (found.group(1), found.group(2)) if found else None
