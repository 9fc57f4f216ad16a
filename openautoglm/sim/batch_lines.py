"""Deferred batch lines in a run: some devices submit batches to their site's leaf, every line is
recorded in the ledger, and the ``deferred_lines`` invariant checks that none is lost or doubled.

    submitters = pick_submitters(scenario, devices, rng)
    tasks = [asyncio.create_task(submit_batch(d, scenario, ledger, at)) for d, at in plan]
    await collect_batches(submitted, scenario, ledger)     # polls until done, reads output files

A batch goes in the way a client sends it: ``POST /v1/files`` (multipart, ``purpose=batch``),
then ``POST /v1/batches``. Its lines wait in the site leaf's JetStream domain; hub workers pull
them across the leaf link (also while a partition heals). After the traffic the harness polls
``GET /v1/batches/{id}`` until the batch is done and counts each ``custom_id`` in its output
file: exactly one answer per line is right.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from openautoglm.sim.device import SimDevice
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.windows import Violation
from shared.fleet_report.ledger import BatchLineMark, Ledger

__all__ = ["SubmittedBatch", "check_deferred_lines", "collect_batches", "pick_submitters"]

_BOUNDARY = "agl-sim-boundary"
_DONE = {"completed", "failed", "cancelled", "expired"}


@dataclass
class SubmittedBatch:
    """A batch the harness sent, and the ledger marks of its lines."""

    device: SimDevice
    batch_id: str | None
    lines: list[BatchLineMark] = field(default_factory=list)


def pick_submitters(
    scenario: Scenario, devices: list[SimDevice], rng: random.Random
) -> list[SimDevice]:
    """``batches.device_share`` of each site's devices (at least one per site when the share > 0)."""
    share = scenario.batches.device_share
    if not share:
        return []
    out: list[SimDevice] = []
    for site in scenario.sites:
        mine = [d for d in devices if d.site == site.name]
        count = max(1, round(share * len(mine)))
        out += rng.sample(mine, min(count, len(mine)))
    return out


def _form(data: bytes) -> bytes:
    return (
        (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{_BOUNDARY}--\r\n".encode()
    )


async def submit_batch(
    device: SimDevice, scenario: Scenario, ledger: Ledger, number: int
) -> SubmittedBatch:
    """Upload one input file and create its batch; the lines go into the ledger either way."""
    now = ledger.now()
    ids = [f"{device.name}-b{number}-l{i}" for i in range(scenario.batches.lines_per_batch)]
    body = {
        "model": scenario.hub.model,
        "messages": [{"role": "user", "content": "deferred line"}],
        "max_tokens": scenario.traffic.max_tokens,
    }
    data = "".join(
        json.dumps(
            {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
        + "\n"
        for cid in ids
    ).encode()
    marks = [BatchLineMark(device.name, device.site, "", cid, now) for cid in ids]
    ledger.batch_lines += marks
    sent = SubmittedBatch(device, None, marks)
    up = await device.request(
        "POST", "/v1/files", _form(data), f"multipart/form-data; boundary={_BOUNDARY}"
    )
    if up.status != 200:
        return _refused(sent, f"POST /v1/files answered {up.status}: {up.body[:200]!r}")
    file_id = json.loads(up.body)["id"]
    create = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    made = await device.post("/v1/batches", create)
    if made.status != 200:
        return _refused(sent, f"POST /v1/batches answered {made.status}: {made.body[:200]!r}")
    sent.batch_id = json.loads(made.body)["id"]
    for mark in marks:
        mark.batch_id = sent.batch_id
    return sent


def _refused(sent: SubmittedBatch, why: str) -> SubmittedBatch:
    for mark in sent.lines:
        mark.error = why
    return sent


async def collect_batches(
    batches: list[SubmittedBatch], scenario: Scenario, ledger: Ledger
) -> None:
    """Poll every accepted batch until done (``answer_within_s``), then count its output lines."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scenario.batches.answer_within_s
    await asyncio.gather(*(_collect(b, ledger, deadline) for b in batches if b.batch_id))


async def _collect(sent: SubmittedBatch, ledger: Ledger, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    batch: dict[str, object] = {}
    while loop.time() < deadline:
        answer = await sent.device.request("GET", f"/v1/batches/{sent.batch_id}")
        if answer.status == 200:
            batch = json.loads(answer.body)
            if batch.get("status") in _DONE:
                break
        await asyncio.sleep(0.25)
    done_at = ledger.now()
    if batch.get("status") not in _DONE:
        _refused(sent, f"batch still {batch.get('status', 'unknown')} when the harness gave up")
        return
    outputs = [batch.get("output_file_id"), batch.get("error_file_id")]
    counts: Counter[str] = Counter()
    statuses: dict[str, int | None] = {}
    for file_id in (f for f in outputs if isinstance(f, str)):
        content = await sent.device.request("GET", f"/v1/files/{file_id}/content")
        for raw in content.body.decode().splitlines():
            row = json.loads(raw)
            counts[row["custom_id"]] += 1
            response = row.get("response") or {}
            statuses[row["custom_id"]] = response.get("status_code")
    for mark in sent.lines:
        mark.answers = counts[mark.custom_id]
        mark.status = statuses.get(mark.custom_id)
        mark.answered_at = done_at if mark.answers else None
        if mark.answers and mark.status != 200:
            mark.error = f"batch {batch.get('status')}; line status {mark.status}"


def check_deferred_lines(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """No deferred batch line is lost (no answer) or duplicated (two answers); each is a 200."""
    lines = ledger.batch_lines
    lost = [m for m in lines if m.answers == 0]
    twice = [m for m in lines if m.answers > 1]
    failed = [m for m in lines if m.answers == 1 and m.status != 200]
    out = []
    for kind, bad in (
        ("lost", lost),
        ("answered twice", twice),
        ("answered with an error", failed),
    ):
        if bad:
            examples = tuple(
                f"{m.custom_id} (batch {m.batch_id or 'not created'}, submitted at "
                f"{m.submitted_at:.1f} s): {m.error or f'{m.answers} answers'}"
                for m in bad[:5]
            )
            out.append(
                Violation(
                    "deferred_lines",
                    f"{len(bad)} of {len(lines)} deferred batch lines were {kind}",
                    examples,
                )
            )
    return out
