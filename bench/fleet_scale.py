"""Fleet scale: 50, 100 and 200 simulated devices at 1 request/s each against an echo hub.

Each size runs in its own process (so its RSS is its own): real nats-servers (a leaf node per
site of 50 devices), two `hubctl serve` echo workers, devices running the real edge code with the
SIMULATED model (``openautoglm.sim``). Printed per size (medians of --repeats runs): hub
requests/s, p50/p99 escalation latency (requests answered by the hub), RSS per simulated device;
then the growth exponent of each figure fitted on log N. A row whose simulator loop lagged (p99 over
50 ms, or a quarter of the p99 latency) is marked: the machine was too busy to measure the fleet;
run on a quiet machine. The last line is the contract's ratio:
p99 escalation latency at 200 devices ÷ at 50 (target ≤ 3) and MB per device (target < 5).

    .venv/bin/python bench/fleet_scale.py [--sizes 50,100,200] [--duration 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import subprocess
import sys
from typing import Any

DEVICES_PER_SITE = 50
#: A simulator event loop lagging more than this (p99) cannot measure the fleet's latency.
_SATURATED_MS = 50.0


def scenario_dict(devices: int, duration_s: float, seed: int) -> dict[str, Any]:
    sites = max(1, math.ceil(devices / DEVICES_PER_SITE))
    return {
        "name": f"fleet-{devices}",
        "duration_s": duration_s,
        "seed": seed,
        "sites": [
            {"name": f"site-{i}", "devices": devices // sites + (1 if i < devices % sites else 0)}
            for i in range(sites)
        ],
        "arrivals": {"rate_per_device": 1.0},
        "prompts": [
            {"name": "short", "words": 20, "weight": 0.7},
            {"name": "long", "words": 300, "weight": 0.3},
        ],
        "traffic": {"streaming_share": 0.0, "max_tokens": 8, "deadline_s": 20},
        "local": {"ttft_s": 0.03, "tokens_per_s": 200},
        "hub": {"workers": 2, "concurrency": 256},
        "edge": {
            "hub": {"request_timeout_s": 10, "first_chunk_timeout_s": 10, "chunk_timeout_s": 10},
            "router": {"rules": [{"name": "long", "min_prompt_tokens": 200, "tier": "cloud"}]},
        },
    }


def one(devices: int, duration_s: float, seed: int) -> dict[str, float]:
    """One run in this process: the figures as a dict."""
    from openautoglm.sim.cli import quiet_logging
    from openautoglm.sim.runner import run_scenario_sync
    from openautoglm.sim.scenario import Scenario
    from shared.fleet_report.metrics import percentile

    quiet_logging(False)
    logging.getLogger("openautoglm").setLevel(logging.ERROR)
    scenario = Scenario.model_validate(scenario_dict(devices, duration_s, seed))
    result = run_scenario_sync(scenario)
    entries = list(result.ledger)
    cloud = [e.latency_s for e in entries if e.ok and e.tier == "cloud" and e.latency_s is not None]
    return {
        "devices": devices,
        "requests": len(entries),
        "ok_share": sum(e.ok for e in entries) / max(1, len(entries)),
        "hub_rps": len(cloud) / duration_s,
        "p50_ms": percentile(cloud, 50) * 1000,
        "p99_ms": percentile(cloud, 99) * 1000,
        "mb_per_device": result.rss_per_device_mb,
        "loop_lag_p99_ms": percentile(result.loop_lag_ms, 99),
        "violations": len(result.violations),
    }


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x: the growth exponent (y ∝ N^slope)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.duration, args.seed)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    medians: dict[int, dict[str, float]] = {}
    print(
        f"{'devices':>8} {'requests':>9} {'ok':>6} {'hub req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'MB/device':>10} {'sim loop lag p99 ms':>20}"
    )
    for n in sizes:
        runs = []
        for r in range(args.repeats):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    str(n),
                    "--duration",
                    str(args.duration),
                    "--seed",
                    str(r + 1),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                sys.exit(f"the {n}-device run failed:\n{done.stderr[-3000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        medians[n] = med
        print(
            f"{n:>8} {med['requests']:>9.0f} {med['ok_share']:>6.1%} {med['hub_rps']:>10.1f} "
            f"{med['p50_ms']:>8.1f} {med['p99_ms']:>8.1f} {med['mb_per_device']:>10.2f} "
            f"{med['loop_lag_p99_ms']:>20.1f}"
            + (f"   ({med['violations']:.0f} invariant violations)" if med["violations"] else "")
            + (
                "   (simulator saturated: its loop lagged; this row measures a busy machine)"
                if med["loop_lag_p99_ms"] > max(_SATURATED_MS, 0.25 * med["p99_ms"])
                else ""
            )
        )
    xs = [float(n) for n in sizes]
    for key, label in (
        ("hub_rps", "hub req/s"),
        ("p50_ms", "p50"),
        ("p99_ms", "p99"),
        ("mb_per_device", "MB/device"),
    ):
        print(f"growth exponent of {label}: N^{slope(xs, [medians[n][key] for n in sizes]):.2f}")
    lo, hi = sizes[0], sizes[-1]
    ratio = medians[hi]["p99_ms"] / medians[lo]["p99_ms"]
    print(
        f"p99 escalation latency {hi} ÷ {lo} devices: {ratio:.2f} (target ≤ 3); "
        f"MB per simulated device at {hi}: {medians[hi]['mb_per_device']:.2f} (target < 5)"
    )


if __name__ == "__main__":
    main()
