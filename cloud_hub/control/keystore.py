"""The auth directory of ``hubctl auth init``: keys, JWTs, creds and enrolled devices (file I/O).

    DIR/operator.nk  account.nk  system.nk       seeds (mode 0600)
    DIR/operator.jwt account.jwt system.jwt      the JWTs the server trusts
    DIR/hub.creds    system.creds                the hub's user, the system user (0600)
    DIR/nats-auth.conf                           include this from nats-server's config
    DIR/jwt/                                     the full resolver's store
    DIR/devices/<id>.json                        one record per enrolled device (no secrets)

    store = KeyStore(Path("/etc/agl/auth"))
    store.init(now=int(time.time()))
    store.enroll("dev-1", site="berlin", labels={"line": "3"}, out=Path("."), now=...)
    account_jwt = store.revoke("dev-1", now=...)   # then push it (``push.push_account``)

Secrets are written with mode 0600 from the first byte and are never logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub.control import auth
from cloud_hub.errors import HubError
from shared.nats_auth import decode_jwt
from shared.subjects import InvalidSubjectToken, check_device_id

ACCOUNT_NAME = "AGL"
SYSTEM_NAME = "SYS"


class AuthStoreError(HubError):
    """The auth directory is missing, incomplete, or would be overwritten."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600 before any byte is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class DeviceRecord:
    """An enrolled device as the auth directory keeps it (public data only)."""

    device: str
    user: str
    site: str | None
    labels: dict[str, str]
    enrolled_at: int
    revoked_at: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as JSON data."""
        return dict(self.__dict__)


class KeyStore:
    """One auth directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / name

    @property
    def hub_creds(self) -> Path:
        """The hub's user credentials."""
        return self._path("hub.creds")

    @property
    def system_creds(self) -> Path:
        """The system user's credentials (pushes account updates)."""
        return self._path("system.creds")

    @property
    def server_include(self) -> Path:
        """The nats-server config include."""
        return self._path("nats-auth.conf")

    def init(self, *, now: int) -> None:
        """Create the operator, account, system account, hub user and server include."""
        if self._path("operator.nk").exists():
            raise AuthStoreError(
                f"{self.root} already holds operator keys; re-running init would lock every "
                "enrolled device out. Use another --dir, or delete it to start over"
            )
        op, acct, sys_acct = (
            auth.new_key("operator"),
            auth.new_key("account"),
            auth.new_key("account"),
        )
        op_jwt = auth.sign_jwt(
            auth.operator_claims(op, name="agl", system_account=sys_acct.public, now=now), op
        )
        acct_jwt = auth.sign_jwt(
            auth.account_claims(acct.public, name=ACCOUNT_NAME, now=now, jetstream=True), op
        )
        sys_jwt = auth.sign_jwt(
            auth.account_claims(sys_acct.public, name=SYSTEM_NAME, now=now, jetstream=False), op
        )
        for name, key in (("operator", op), ("account", acct), ("system", sys_acct)):
            write_private(self._path(f"{name}.nk"), key.seed.decode() + "\n")
        for name, jwt in (("operator", op_jwt), ("account", acct_jwt), ("system", sys_jwt)):
            self._path(f"{name}.jwt").write_text(jwt + "\n")
        hub = auth.new_key("user")
        claims = auth.user_claims(
            hub.public, name="hub", permissions=auth.hub_permissions(), now=now
        )
        write_private(self.hub_creds, auth.creds_text(auth.sign_jwt(claims, acct), hub.seed))
        sys_user = auth.new_key("user")
        claims = auth.user_claims(sys_user.public, name="system", permissions=None, now=now)
        write_private(
            self.system_creds, auth.creds_text(auth.sign_jwt(claims, sys_acct), sys_user.seed)
        )
        (self.root / "jwt").mkdir(exist_ok=True)
        (self.root / "devices").mkdir(exist_ok=True)
        self.server_include.write_text(
            auth.server_config(
                operator_jwt=op_jwt,
                system_account=sys_acct.public,
                resolver_dir=str((self.root / "jwt").resolve()),
                preload={acct.public: acct_jwt, sys_acct.public: sys_jwt},
            )
        )

    def _key(self, name: str) -> auth.NKey:
        path = self._path(f"{name}.nk")
        try:
            return auth.key_from_seed(path.read_bytes())
        except FileNotFoundError:
            raise AuthStoreError(
                f"{self.root} has no {path.name}; run `hubctl auth init --dir {self.root}` first"
            ) from None
        except ValueError as exc:
            raise AuthStoreError(f"{path} is damaged: {exc}") from None

    def account_jwt(self) -> str:
        """The current account JWT (revocations included)."""
        return self._path("account.jwt").read_text().strip()

    def enroll(
        self, device: str, *, site: str | None, labels: dict[str, str], out: Path, now: int
    ) -> tuple[Path, DeviceRecord]:
        """Write ``out/<device>.creds`` and the device's record; refuse a device already enrolled."""
        try:
            check_device_id(device)
        except InvalidSubjectToken as exc:
            raise AuthStoreError(str(exc)) from None
        acct = self._key("account")
        existing = self.device(device)
        if existing is not None and existing.revoked_at is None:
            raise AuthStoreError(
                f"device {device} is already enrolled (since {existing.enrolled_at}); "
                f"revoke it first (`hubctl devices revoke {device}`) to issue new credentials"
            )
        user = auth.new_key("user")
        claims = auth.user_claims(
            user.public, name=device, permissions=auth.device_permissions(device), now=now
        )
        creds = out / f"{device}.creds"
        write_private(creds, auth.creds_text(auth.sign_jwt(claims, acct), user.seed))
        record = DeviceRecord(device, user.public, site, dict(labels), now)
        self._save(record)
        return creds, record

    def _save(self, record: DeviceRecord) -> None:
        path = self._path(f"devices/{record.device}.json")
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(record.as_json(), indent=2) + "\n")

    def device(self, device: str) -> DeviceRecord | None:
        """The record of ``device``, or None if it was never enrolled here."""
        path = self._path(f"devices/{device}.json")
        if not path.is_file():
            return None
        return DeviceRecord(**json.loads(path.read_text()))

    def devices(self) -> list[DeviceRecord]:
        """Every enrolled device, by id."""
        folder = self._path("devices")
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        return [r for n in names if (r := self.device(n)) is not None]

    def revoke(self, device: str, *, now: int) -> str:
        """Revoke ``device``'s key in the account JWT; return the new JWT to push."""
        record = self.device(device)
        if record is None:
            raise AuthStoreError(f"device {device} is not enrolled in {self.root}")
        op = self._key("operator")
        claims = auth.revoke(decode_jwt(self.account_jwt()), record.user, at=now)
        claims.pop("jti", None)
        claims.pop("iss", None)
        jwt = auth.sign_jwt(claims, op)
        self._path("account.jwt").write_text(jwt + "\n")
        self._save(DeviceRecord(**{**record.as_json(), "revoked_at": now}))
        return jwt
