"""``edge-agent top``'s frame, from two scrapes of ``/metrics`` and one ``/status`` (pure).

    before, after = parse_metrics(text1), parse_metrics(text2)
    print(render_frame(before, after, seconds=2.0, status=status, url=url))

Rates are the difference of two scrapes divided by the time between them, as ``nats top``
and ``nvtop`` show them; a figure the agent does not export shows as ``-``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "parse_metrics", "render_frame"]

Labels = tuple[tuple[str, str], ...]

REQUESTS = "agl_http_requests_total"
TTFT = "gen_ai_server_time_to_first_token_seconds"
QUEUE = "agl_queue_depth"
CIRCUIT = "agl_circuit_state"
PLUGIN_ERRORS = "agl_plugin_errors_total"
_CIRCUIT_NAMES = {0: "closed", 1: "half-open", 2: "open"}
#: Routes whose requests are answers (not probes, scrapes or model lists).
_ANSWER_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/classify"}
)


@dataclass
class Scrape:
    """Samples of one scrape: ``{sample name: {labels: value}}``."""

    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def series(self, name: str) -> dict[Labels, float]:
        """Every labelled value of one sample name (empty when not exported)."""
        return self.samples.get(name, {})

    def total(self, name: str, **match: str) -> float | None:
        """Sum of the samples of ``name`` whose labels include ``match``; None if absent."""
        if name not in self.samples:
            return None
        return sum(
            v
            for labels, v in self.samples[name].items()
            if all(dict(labels).get(k) == want for k, want in match.items())
        )


def parse_metrics(text: str) -> Scrape:
    """Parse Prometheus text exposition into a :class:`Scrape`."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            scrape.samples.setdefault(sample.name, {})[labels] = float(sample.value)
    return scrape


def _requests_by_path(before: Scrape, after: Scrape) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(tier, reason): (new requests, total)}`` over the answer routes."""
    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    old = before.series(REQUESTS)
    for labels, value in after.series(REQUESTS).items():
        named = dict(labels)
        if named.get("route") not in _ANSWER_ROUTES:
            continue
        key = (named.get("tier", "?"), named.get("reason", "?"))
        out[key][0] += max(0.0, value - old.get(labels, 0.0))
        out[key][1] += value
    return {k: (v[0], v[1]) for k, v in out.items()}


def _buckets(scrape: Scrape, name: str) -> dict[float, float]:
    found: dict[float, float] = defaultdict(float)
    for labels, value in scrape.series(name + "_bucket").items():
        le = dict(labels).get("le", "+Inf")
        found[math.inf if le in ("+Inf", "inf") else float(le)] += value
    return dict(found)


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile of cumulative histogram ``buckets`` (linear within a bucket)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            inside = buckets[bound] - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, buckets[bound]
    return lower


def _ttft(before: Scrape, after: Scrape) -> tuple[float | None, float | None, str]:
    now, then = _buckets(after, TTFT), _buckets(before, TTFT)
    recent = {b: now[b] - then.get(b, 0.0) for b in now}
    if recent and max(recent.values()) > 0:
        return quantile(recent, 0.5), quantile(recent, 0.95), "last interval"
    return quantile(now, 0.5), quantile(now, 0.95), "since start"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _link(status: Mapping[str, Any]) -> str:
    hub = status.get("hub") or {}
    if not hub.get("configured"):
        return "hub link: not configured (every request is answered here)"
    budget = hub.get("budget") or {}
    left = budget.get("remaining_today")
    parts = [
        f"hub link: {'connected' if hub.get('connected') else 'DOWN'}",
        f"circuit {hub.get('circuit', '?')}",
        f"budget {'unlimited' if left is None else f'{left} tokens left today'}",
    ]
    if not hub.get("connected") and hub.get("last_error"):
        parts.append(f"last error: {hub['last_error']}")
    return "  ".join(parts)


def _lines(rows: Iterable[tuple[str, ...]], widths: tuple[int, ...]) -> list[str]:
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_frame(
    before: Scrape, after: Scrape, *, seconds: float, status: Mapping[str, Any], url: str
) -> str:
    """One screen of ``edge-agent top``."""
    seconds = max(seconds, 1e-6)
    models = status.get("models") or []
    head = (
        f"edge-agent top  {url}  device {status.get('device_id', '?')}  "
        f"v{status.get('version', '?')}  up {status.get('uptime_s', 0):.0f} s  "
        f"models {status.get('status', '?')}"
    )
    out = [head, _link(status), ""]
    by_path = _requests_by_path(before, after)
    total_rate = sum(n for n, _ in by_path.values()) / seconds
    out.append(f"requests/s {total_rate:.2f}  (over {seconds:.1f} s)")
    rows = [("TIER", "REASON", "REQ/S", "TOTAL")]
    for (tier, reason), (new, total) in sorted(by_path.items()):
        rows.append((tier, reason, f"{new / seconds:.2f}", f"{total:.0f}"))
    if len(rows) == 1:
        rows.append(("-", "-", "0.00", "0"))
    out += _lines(rows, (6, 12, 7, 7))
    p50, p95, window = _ttft(before, after)
    out += ["", f"time to first token  p50 {_seconds(p50)}  p95 {_seconds(p95)}  ({window})"]
    queue = after.series(QUEUE)
    queues: list[tuple[str, ...]] = [("MODEL", "QUEUE")]
    for labels, value in sorted(queue.items()):
        queues.append((dict(labels).get("model", "?"), f"{value:.0f}"))
    if len(queues) == 1:
        queues += [(str(m.get("id", "?")), str(m.get("queue_depth", "-"))) for m in models]
    out += ["", *_lines(queues, (max(len(r[0]) for r in queues), 5))]
    circuit = after.series(CIRCUIT)
    states = ", ".join(
        f"{dict(labels).get('peer', '?')} {_CIRCUIT_NAMES.get(int(v), str(v))}"
        for labels, v in sorted(circuit.items())
    )
    errors = after.total(PLUGIN_ERRORS)
    new_errors = None if errors is None else errors - (before.total(PLUGIN_ERRORS) or 0.0)
    plugins = (status.get("plugins") or {}).get("loaded") or []
    out += [
        "",
        f"circuit: {states or '-'}",
        f"plugins: {len(plugins)} loaded  errors {'-' if errors is None else f'{errors:.0f}'}"
        + ("" if not new_errors else f" (+{new_errors:.0f})"),
    ]
    return "\n".join(out)
