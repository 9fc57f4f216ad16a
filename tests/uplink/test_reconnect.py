"""The uplink reconnects on its own, with capped, jittered backoff."""

from __future__ import annotations

import itertools

import pytest

from edge_agent.uplink import Uplink
from edge_agent.uplink.backoff import jittered, reconnect_delays
from shared.embedded_nats import embedded_nats
from tests.fixtures.names import DEVICE
from tests.fixtures.nats import free_port
from tests.fixtures.waiting import apoll


def test_delays_double_up_to_the_cap() -> None:
    mid = reconnect_delays(1.0, 30.0, rand=lambda: 0.5)  # the jitter's middle: the base itself
    assert list(itertools.islice(mid, 8)) == [1, 2, 4, 8, 16, 30, 30, 30]


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.5), (0.999, 1.499)])
def test_jitter_spreads_each_delay_from_half_to_one_and_a_half_times(
    rand: float, factor: float
) -> None:
    delays = reconnect_delays(1.0, 30.0, rand=lambda: rand)
    got = list(itertools.islice(delays, 7))
    assert got == pytest.approx([b * factor for b in (1, 2, 4, 8, 16, 30, 30)])


def test_two_devices_do_not_retry_in_lockstep() -> None:
    a = list(itertools.islice(reconnect_delays(1.0, 30.0), 10))
    b = list(itertools.islice(reconnect_delays(1.0, 30.0), 10))
    assert a != b
    assert all(0.5 <= d < 45 for d in a + b)  # never more than 1.5 x the cap


@pytest.mark.parametrize(("rand", "seconds"), [(0.0, 9.0), (0.5, 10.0), (1.0, 11.0)])
def test_a_jittered_period_stays_within_ten_percent(rand: float, seconds: float) -> None:
    assert jittered(10.0, rand=lambda: rand) == pytest.approx(seconds)


async def test_an_uplink_started_before_nats_connects_once_nats_is_up() -> None:
    port = free_port()
    link = Uplink(
        f"nats://127.0.0.1:{port}",
        device=DEVICE,
        connect_timeout_s=0.5,
        reconnect_wait_s=0.05,
        max_reconnect_wait_s=0.2,
    )
    await link.connect()
    try:
        assert not link.connected
        with embedded_nats(port=port):
            await apoll(lambda: link.connected, 20, "the uplink to connect once NATS is up")
            assert link.available()
    finally:
        await link.close()


async def test_an_uplink_reconnects_after_its_nats_server_restarts() -> None:
    port = free_port()
    with embedded_nats(port=port) as first:
        link = Uplink(first.url, device=DEVICE, reconnect_wait_s=0.05, max_reconnect_wait_s=0.2)
        await link.connect()
        assert await link.wait_connected(10)
    try:
        await apoll(lambda: not link.connected, 10, "the uplink to notice NATS is gone")
        assert not link.available()
        with embedded_nats(port=port):
            await apoll(lambda: link.connected, 20, "the uplink to reconnect")
            assert link.available()
    finally:
        await link.close()
