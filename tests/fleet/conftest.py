"""A real nats-server in operator mode (``hubctl auth init``) and devices enrolled on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_hub.control.keystore import KeyStore
from shared.embedded_nats import NatsServer, embedded_nats


@dataclass
class OperatorNats:
    """An operator-mode nats-server and the auth directory that configures it."""

    server: NatsServer
    store: KeyStore
    creds_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hub_creds(self) -> Path:
        return self.store.hub_creds

    def enroll(self, device: str, *, site: str | None = None) -> Path:
        """``DEVICE.creds`` for a freshly enrolled ``device``."""
        path, _ = self.store.enroll(
            device, site=site, labels={}, out=self.creds_dir, now=int(time.time())
        )
        return path


@pytest.fixture()
def op_nats(tmp_path: Path) -> Iterator[OperatorNats]:
    """nats-server with the operator, accounts and full resolver of a fresh auth directory."""
    store = KeyStore(tmp_path / "auth")
    store.init(now=int(time.time()))
    creds = tmp_path / "creds"
    creds.mkdir()
    with embedded_nats(include=store.server_include) as server:
        yield OperatorNats(server, store, creds)
