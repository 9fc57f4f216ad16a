"""Decentralized NATS auth, written by hand: nkeys, JWT claims, signatures, creds text (pure).

NATS manages large fleets with an operator that signs accounts and accounts that sign users.
Every device is one user with its own key and subject permissions, so the server itself stops
device A from using B's subjects. Nothing here touches files or sockets; callers pass entropy
and the clock.

    op, acct = new_key("operator"), new_key("account")
    user = new_key("user")
    claims = user_claims(user.public, name="dev-1", permissions=device_permissions("dev-1"),
                         now=now)
    jwt = sign_jwt(claims, acct)               # the account signs its users
    text = creds_text(jwt, user.seed)          # the .creds file the device connects with

(``nats-jwt`` 0.2.2 from PyPI writes limits the server does not read, so it is not used.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import nkeys

from cloud_hub.control.permissions import (
    ARTIFACT_BUCKETS,
    REGISTRY_BUCKET,
    Permissions,
    device_permissions,
    hub_permissions,
)
from shared.desired import CONFIG_BUCKET
from shared.subjects import INBOX_ROOT

KeyKind = Literal["operator", "account", "user"]
_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
#: Account limits that turn JetStream on with no caps (-1: unlimited), as the server reads them.
JETSTREAM_LIMITS = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "conn": -1}
_UNLIMITED |= {"leaf": -1, "wildcards": True}


@dataclass(frozen=True, repr=False)
class NKey:
    """An nkey pair: ``seed`` is the secret (never log it), ``public`` the name others see."""

    seed: bytes
    public: str

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data``."""
        pair = nkeys.from_seed(bytearray(self.seed))
        return bytes(pair.sign(data))

    def __repr__(self) -> str:  # a seed must not end up in a log or a traceback
        return f"NKey(public={self.public!r})"


def new_key(kind: KeyKind, *, entropy: Callable[[int], bytes] = os.urandom) -> NKey:
    """A fresh operator, account or user key pair."""
    seed = bytes(nkeys.encode_seed(entropy(32), _PREFIX[kind]))
    return key_from_seed(seed)


def key_from_seed(seed: bytes) -> NKey:
    """The key pair of an encoded seed (``SO…``, ``SA…``, ``SU…``); ValueError if it is none."""
    try:
        pair = nkeys.from_seed(bytearray(seed.strip()))
        return NKey(seed=seed.strip(), public=pair.public_key.decode())
    except Exception as exc:  # nkeys raises its own errors, binascii.Error, IndexError …
        raise ValueError(f"not an nkey seed ({type(exc).__name__})") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: Mapping[str, Any], signer: NKey) -> str:
    """Encode ``claims`` as a NATS JWT signed by ``signer`` (``iss`` is set to its key).

    ``jti`` is the base32 sha256 of the claims without it, as NATS tools compute theirs.
    """
    body = {**claims, "iss": signer.public, "jti": ""}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signature = signer.sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{_b64(signature)}"


def _base(subject: str, name: str, now: int, kind: str, nats: Mapping[str, Any]) -> dict[str, Any]:
    return {"sub": subject, "name": name, "iat": now, "nats": {"type": kind, "version": 2, **nats}}


def operator_claims(op: NKey, *, name: str, system_account: str, now: int) -> dict[str, Any]:
    """The operator's self-signed claims, naming the system account."""
    return _base(op.public, name, now, "operator", {"system_account": system_account})


def account_claims(
    public: str,
    *,
    name: str,
    now: int,
    jetstream: bool,
    revocations: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """An account's claims; ``revocations`` maps user keys to the time they were revoked."""
    limits: dict[str, Any] = dict(_UNLIMITED) | (JETSTREAM_LIMITS if jetstream else {})
    nats: dict[str, Any] = {"limits": limits, "default_permissions": {"pub": {}, "sub": {}}}
    if revocations:
        nats["revocations"] = dict(revocations)
    return _base(public, name, now, "account", nats)


def user_claims(
    public: str, *, name: str, permissions: Permissions | None, now: int
) -> dict[str, Any]:
    """A user's claims (sign them with its account's key); ``permissions`` None: no limits."""
    nats: dict[str, Any] = {"subs": -1, "data": -1, "payload": -1}
    if permissions is not None:
        nats["pub"] = {"allow": list(permissions.pub)}
        nats["sub"] = {"allow": list(permissions.sub)}
        if permissions.responses:
            nats["resp"] = {"max": 1, "ttl": 0}
    return _base(public, name, now, "user", nats)


def revoke(claims: Mapping[str, Any], user: str, *, at: int) -> dict[str, Any]:
    """``claims`` of an account with ``user`` revoked as of ``at`` (new ``iat``: a newer JWT)."""
    nats = dict(claims["nats"])
    nats["revocations"] = {**nats.get("revocations", {}), user: at}
    return {**claims, "iat": max(at, int(claims.get("iat", 0)) + 1), "nats": nats}


def creds_text(jwt: str, seed: bytes) -> str:
    """The ``.creds`` file: the user JWT and its seed, in the blocks NATS clients read."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def server_config(
    *, operator_jwt: str, system_account: str, resolver_dir: str, preload: Mapping[str, str]
) -> str:
    """A nats-server config include: operator, system account, full resolver, preloaded JWTs.

    The full resolver takes account updates pushed on ``$SYS.REQ.CLAIMS.UPDATE`` (revocations)
    without a restart; its directory keeps the newest JWT across restarts.
    """
    lines = [
        "# Written by `hubctl auth init`; include it from your nats-server config.",
        f"operator: {json.dumps(operator_jwt)}",
        f"system_account: {system_account}",
        f"resolver: {{ type: full, dir: {json.dumps(resolver_dir)}, allow_delete: false }}",
        "resolver_preload: {",
        *(f"  {pub}: {json.dumps(jwt)}" for pub, jwt in preload.items()),
        "}",
    ]
    return "\n".join(lines) + "\n"


__all__ = [
    "ARTIFACT_BUCKETS",
    "CONFIG_BUCKET",
    "INBOX_ROOT",
    "REGISTRY_BUCKET",
    "NKey",
    "Permissions",
    "account_claims",
    "creds_text",
    "device_permissions",
    "hub_permissions",
    "key_from_seed",
    "new_key",
    "operator_claims",
    "revoke",
    "server_config",
    "sign_jwt",
    "user_claims",
]
