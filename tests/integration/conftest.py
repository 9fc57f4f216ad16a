"""The integration suite runs NATS in operator mode (per-device JWT credentials) by default.

Modules that talk to NATS with raw, credential-less clients on purpose keep an open server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import nats as test_nats

#: Modules whose raw NATS clients need an open (dev-mode) server; they keep that mode covered.
OPEN_MODE = {"test_fuzz", "test_capability_routing"}


@pytest.fixture(autouse=True)
def operator_mode_nats(request: pytest.FixtureRequest) -> Iterator[None]:
    """``nats_server()`` starts operator mode unless the module is in ``OPEN_MODE``."""
    before = test_nats.AUTH_BY_DEFAULT
    test_nats.AUTH_BY_DEFAULT = request.module.__name__.rsplit(".", 1)[-1] not in OPEN_MODE
    try:
        yield
    finally:
        test_nats.AUTH_BY_DEFAULT = before
