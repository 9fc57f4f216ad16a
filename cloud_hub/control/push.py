"""Push an account JWT to a running nats-server (full resolver) as the system user.

    await push_account("nats://127.0.0.1:4222", Path("auth/system.creds"), account_jwt)

The server applies it at once: a revoked device's connection is closed within milliseconds and
its reconnects are refused, without a restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import nats
import nats.errors

from cloud_hub.errors import HubError

CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


class PushError(HubError):
    """The server did not take the account update."""


async def push_account(
    servers: str | list[str], system_creds: Path, account_jwt: str, *, timeout: float = 5.0
) -> str:
    """Send ``account_jwt`` on ``$SYS.REQ.CLAIMS.UPDATE``; return the server's message."""
    try:
        nc = await nats.connect(
            servers,
            user_credentials=str(system_creds),
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would mean "forever" in nats-py
        )
    except Exception as exc:  # OSError, NoServersError, auth errors …
        raise PushError(
            f"cannot reach NATS at {servers} as the system user ({system_creds}): {exc}; "
            "the update is saved in the auth directory; push again with the same command once "
            "NATS is up"
        ) from None
    try:
        msg = await nc.request(CLAIMS_UPDATE, account_jwt.encode(), timeout=timeout)
    except nats.errors.Error as exc:
        raise PushError(f"the server did not answer the account update: {exc}") from None
    finally:
        await nc.close()
    return _verdict(msg.data)


def _verdict(data: bytes) -> str:
    try:
        answer = json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
    error = answer.get("error") if isinstance(answer, dict) else None
    if error:
        raise PushError(f"the server refused the account update: {error}")
    body = answer.get("data", {}) if isinstance(answer, dict) else {}
    return str(body.get("message", data.decode(errors="replace")))
