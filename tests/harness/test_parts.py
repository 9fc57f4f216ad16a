"""The simulator's parts on their own: traffic, the simulated model, the fault proxy, the report."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import nats
import pytest

from edge_agent.errors import QueueFullError
from edge_agent.router.policy import RouterConfig
from edge_agent.settings import load_settings
from openautoglm.sim.errors import TopologyError
from openautoglm.sim.nats_nodes import HOST, NatsNode, start_nodes
from openautoglm.sim.proxy import FaultProxy
from openautoglm.sim.runner import read_registry
from openautoglm.sim.runtime import LocalModelSpec, SimulatedRuntime, simulated_scheduler
from openautoglm.sim.scenario import load_scenario
from openautoglm.sim.traffic import answer_text_ok, arrival_times, intended_tier
from shared.embedded_nats import free_port
from shared.fleet_report import ReportInput, comparison_rows, load_baseline, write_report
from shared.fleet_report.ledger import FaultMark, Ledger
from shared.runtimes.types import GenerationEnd, SamplingParams, TokenPiece

SPEC = LocalModelSpec(
    ttft_s=0.02, tokens_per_s=200, logprob_mean=-0.5, logprob_sd=0.1, difficulty_sd=0.0, n_ctx=256
)


def test_poisson_arrivals_have_the_configured_mean_rate() -> None:
    times = arrival_times(random.Random(3), rate=2.0, amplitude=0.0, period_s=10, duration_s=2000)
    assert times == sorted(times)
    assert 3800 < len(times) < 4200  # 4000 expected; the seed makes this exact and repeatable


def test_the_diurnal_curve_moves_arrivals_to_the_peak() -> None:
    times = arrival_times(random.Random(4), rate=2.0, amplitude=0.8, period_s=100, duration_s=2000)
    peak = sum(1 for t in times if (t % 100) < 50)  # sine above its mean
    trough = len(times) - peak
    assert peak > 2 * trough


def test_intended_tier_is_the_real_routers_choice() -> None:
    router = RouterConfig.model_validate(
        {"rules": [{"name": "long", "min_prompt_tokens": 100, "tier": "cloud"}]}
    )
    assert intended_tier(150, "m", router, 2048) == "cloud"
    assert intended_tier(20, "m", router, 2048) == "edge"
    cascade = RouterConfig.model_validate({"cascade": {"enabled": True}})
    assert intended_tier(20, "m", cascade, 2048) == "cascade"


def test_answer_texts_must_be_exactly_one_tier() -> None:
    assert answer_text_ok("p0 p1 p2", tier="cloud", words=3, max_tokens=16)
    assert not answer_text_ok("p0 p1", tier="cloud", words=3, max_tokens=16)
    assert answer_text_ok("local0 local1 ", tier="edge", words=3, max_tokens=2)
    assert not answer_text_ok("local0 p0 ", tier="edge", words=3, max_tokens=2)


def test_simulated_runtime_counts_words_and_gives_logprobs_only_when_asked() -> None:
    runtime = SimulatedRuntime(SPEC)
    prompt = runtime.prepare_chat([{"role": "user", "content": "a b c"}])
    assert len(prompt.tokens) == 7  # 3 words + 4 template tokens
    events = runtime.events(prompt, SamplingParams(max_tokens=3, logprobs=True), random.Random(1))
    pieces = [e for e in events if isinstance(e, TokenPiece)]
    assert [p.text for p in pieces] == ["local0 ", "local1 ", "local2 "]
    assert all(p.logprob is not None and p.logprob <= 0 for p in pieces)
    assert events[-1] == GenerationEnd("length", 7, 3)
    plain = runtime.events(prompt, SamplingParams(max_tokens=1), random.Random(1))
    assert plain[0].logprob is None  # type: ignore[union-attr]


async def test_the_simulated_scheduler_plays_one_sequence_at_a_time_and_bounds_its_queue() -> None:
    runtime = SimulatedRuntime(SPEC)
    settings = load_settings(None, max_queue=1, parallel=1)
    scheduler = simulated_scheduler(random.Random(1))(runtime, settings)
    prompt = runtime.prepare_text("x")
    first = scheduler.submit(prompt, SamplingParams(max_tokens=4))
    second = scheduler.submit(prompt, SamplingParams(max_tokens=4))
    assert scheduler.queue_depth == 2
    with pytest.raises(QueueFullError):
        scheduler.submit(prompt, SamplingParams(max_tokens=4))
    got = [[e for batch in [b async for b in h.batches()] for e in batch] for h in (first, second)]
    assert [len(g) for g in got] == [5, 5]
    assert first.first_token_at is not None and second.first_token_at is not None
    assert second.first_token_at >= first.first_token_at + SPEC.ttft_s  # waited its turn
    assert scheduler.queue_depth == 0
    scheduler.close()


async def test_with_parallel_slots_sequences_share_the_batched_throughput() -> None:
    runtime = SimulatedRuntime(SPEC)  # 200 tok/s alone; two together: 200 * 2**0.25 in all
    settings = load_settings(None, max_queue=0, parallel=2)
    scheduler = simulated_scheduler(random.Random(1))(runtime, settings)
    prompt = runtime.prepare_text("x")
    handles = [scheduler.submit(prompt, SamplingParams(max_tokens=40)) for _ in range(2)]
    with pytest.raises(QueueFullError):  # both slots busy, no room to wait
        scheduler.submit(prompt, SamplingParams(max_tokens=40))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for h in handles:
        assert len([e async for batch in h.batches() for e in batch]) == 41
    together = loop.time() - started
    # Each ran at 200 * 2**0.25 / 2 ≈ 119 tok/s: 40 tokens ≥ 0.33 s, not 0.2 s (alone) or 0.4 s.
    assert together >= 40 / (200 * 2**0.25 / 2) - 0.05
    assert handles[0].first_token_at is not None and handles[1].first_token_at is not None
    # Side by side: the second started before the first could have finished even alone.
    assert handles[1].first_token_at < handles[0].first_token_at + 40 / 200
    scheduler.close()


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def test_the_fault_proxy_passes_delays_blackholes_and_drops() -> None:
    server = await _echo_server()
    proxy = FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one")
        assert await asyncio.wait_for(reader.read(10), 2) == b"one"
        proxy.set_mode("delay", delay_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(b"two")
        assert await asyncio.wait_for(reader.read(10), 3) == b"two"
        assert loop.time() - started >= 0.6  # delayed each way
        proxy.set_mode("blackhole")
        writer.write(b"lost")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(10), 0.3)
        proxy.set_mode("drop")
        assert await asyncio.wait_for(reader.read(10), 2) == b""  # reset: the stream ends
        writer.close()
        refused_reader, refused_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(refused_reader.read(10), 2) == b""
        refused_writer.close()
    finally:
        await proxy.close()
        server.close()


def _small_ledger() -> Ledger:
    ledger = Ledger()
    for i in range(40):
        tier = "cloud" if i % 4 == 0 else "edge"
        e = ledger.open(
            device=f"a-{i % 5:03d}",
            site="a",
            prompt_class="p",
            prompt_tokens=30 if tier == "cloud" else 10,
            stream=i % 3 == 0,
            intended_tier=tier,
            sent_at=i * 0.25,
            deadline_at=i * 0.25 + 10,
        )
        e.answered_at, e.status, e.tier, e.reason = i * 0.25 + 0.1, 200, tier, "default"
        e.text_ok, e.answers, e.completion_tokens = True, 1, 16
    ledger.faults.append(FaultMark("slow_hub", 3.0, 6.0, "+300 ms"))
    return ledger


def test_the_report_is_self_contained_and_compares_with_a_baseline(tmp_path: Path) -> None:
    ledger = _small_ledger()
    first = write_report(ReportInput(ledger=ledger, title="t", duration_s=10), tmp_path / "one")
    assert first["escalation_share"] == 0.25
    assert first["tokens_cloud"] == 10 * (30 + 16)
    for name in ("report.md", "report.html", "ledger.jsonl", "figures.json", "timeline.png"):
        assert (tmp_path / "one" / name).stat().st_size > 0
    html = (tmp_path / "one" / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == 4
    assert "src='http" not in html and 'src="' not in html
    assert Ledger.read_jsonl(tmp_path / "one" / "ledger.jsonl").faults == ledger.faults
    for e in ledger:  # twice as slow
        assert e.answered_at is not None
        e.answered_at += 0.1
    write_report(
        ReportInput(ledger=ledger, title="t", duration_s=10),
        tmp_path / "two",
        baseline=load_baseline(tmp_path / "one"),
    )
    md = (tmp_path / "two" / "report.md").read_text()
    assert "| metric | current | baseline | status |" in md
    assert "| p50_latency_edge_s | 0.2 | 0.1 | ↓ worse |" in md
    assert "| ok_share | 1 | 1 | = |" in md


def test_comparison_without_baseline_has_dashes() -> None:
    rows = comparison_rows({"ok_share": 0.5}, None)
    assert rows == [("ok_share", "0.5", "–", "–")]


NAMES = [f"plant-a-{i:03d}" for i in range(10)]


class HubStatsSequence:
    """Stands in for the topology's registry summary: the registry as each read sees it."""

    def __init__(self, online: list[int]) -> None:
        self.online, self.reads = online, 0

    async def registry_summary(self, devices: Collection[str]) -> dict[str, Any]:
        assert len(devices) == 10
        count = self.online[min(self.reads, len(self.online) - 1)]
        self.reads += 1
        return {"devices": {"total": count, "online": count}}


async def test_the_registry_is_read_again_until_every_device_is_online() -> None:
    scenario = load_scenario("smoke").model_copy(update={"edge": {"hub": {"heartbeat_s": 1.0}}})
    late = HubStatsSequence([0, 4, 10])  # the beats of a hub that opened its registry late
    summary = await read_registry(late, scenario, NAMES)
    assert (summary, late.reads) == ({"devices": {"total": 10, "online": 10}}, 3)
    # A device that never beats: read for two heartbeat periods, then judged as it is.
    missing = HubStatsSequence([9])
    started = time.monotonic()
    summary = await read_registry(missing, scenario, NAMES)
    assert summary == {"devices": {"total": 9, "online": 9}}
    assert time.monotonic() - started >= 2.0 and missing.reads >= 3


async def test_a_server_whose_port_was_taken_starts_again_on_a_fresh_one(tmp_path: Path) -> None:
    # free_port() can hand out a port that another process binds first (seen in a suite run).
    with socket.create_server((HOST, 0)) as taker:
        taken = taker.getsockname()[1]
        ports = iter([taken, free_port()])
        built: list[NatsNode] = []

        def make() -> list[NatsNode]:
            port = next(ports)
            built.append(NatsNode("hub-0", f"listen: {HOST}:{port}\n", port, tmp_path))
            return built[-1:]

        (node,) = await start_nodes(make)
        try:
            assert [n.port for n in built] == [taken, node.port] and node.port != taken
            assert built[0].process is not None and built[0].process.returncode is not None
            nc = await nats.connect(f"nats://{HOST}:{node.port}")
            await nc.close()
        finally:
            node.stop()


async def test_a_server_that_fails_for_another_reason_is_not_started_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def make() -> list[NatsNode]:
        calls.append(1)
        return [NatsNode("bad", "listen: this is not a config {\n", free_port(), tmp_path)]

    with pytest.raises(TopologyError, match="nats-server bad exited"):
        await start_nodes(make)
    assert len(calls) == 1
