"""``open-autoglm sim``: run a fleet scenario and write its report."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import click

from openautoglm.sim.scenario import load_scenario, scenario_names
from shared.errors import AglError

__all__ = ["quiet_logging", "sim"]

#: Loggers that speak per device or per request: 200 devices would drown the terminal.
_NOISY = ("edge_agent", "shared", "nats", "opentelemetry", "asyncio", "openautoglm.sim.proxy")


def quiet_logging(verbose: bool) -> None:
    """Warnings from the simulator only (or everything at INFO with ``verbose``)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for name in _NOISY:
            logging.getLogger(name).setLevel(logging.CRITICAL)


@click.command()
@click.argument("scenario")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.md, report.html (self-contained), PNG plots, ledger.jsonl and "
    "figures.json here. [default: sim-reports/<scenario name>]",
)
@click.option(
    "--baseline",
    "baseline_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="An earlier report directory: the figures table compares against its figures.json.",
)
@click.option(
    "--duration-s",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    help="Seconds of traffic, in place of the scenario's duration_s (its faults must still "
    "start before the end).",
)
@click.option("--verbose", is_flag=True, help="Log the devices, NATS and faults at INFO.")
def sim(
    scenario: str,
    report_dir: Path | None,
    baseline_dir: Path | None,
    duration_s: float | None,
    verbose: bool,
) -> None:
    """Run a simulated fleet: real NATS servers and hub workers, devices running the real edge
    code with a SIMULATED model, the scenario's traffic and faults; then check the invariants
    and write a report with plots. Exits 1 when an invariant broke.

    \b
    SCENARIO is a .toml file or the name of a shipped scenario:
      open-autoglm sim smoke                       # 10 devices, no faults, < 1 minute
      open-autoglm sim hub_outage --report out/    # every worker killed, then one added
      open-autoglm sim my-fleet.toml --baseline sim-reports/smoke
      open-autoglm sim smoke --duration-s 60       # the same fleet, a minute of traffic
    """
    from openautoglm.sim.runner import run_scenario_sync
    from shared.fleet_report import ReportInput, load_baseline, percentile, write_report

    try:
        overrides = {} if duration_s is None else {"duration_s": duration_s}
        loaded = load_scenario(scenario, **overrides)
        # Read the baseline first: a wrong path must not cost a whole run.
        baseline = None if baseline_dir is None else load_baseline(baseline_dir)
        quiet_logging(verbose)  # only for a run: a refused one leaves the process's logging be
        click.echo(
            f"scenario {loaded.name}: {loaded.device_count} devices at {len(loaded.sites)} "
            f"site(s), {loaded.hub.workers} hub worker(s), {len(loaded.faults)} fault(s), "
            f"{loaded.duration_s:g} s of traffic",
            err=True,
        )
        out = report_dir or Path("sim-reports") / loaded.name
        try:
            result = run_scenario_sync(loaded, hub_report=out / "hub")
        except KeyboardInterrupt:
            click.echo("interrupted: the fleet was stopped, no report written", err=True)
            raise SystemExit(130) from None
        figures = write_report(
            ReportInput(
                ledger=result.ledger,
                title=loaded.name,
                duration_s=loaded.duration_s,
                description=loaded.description,
                links=[("The hub's own view of this fleet (hubctl report)", "hub/report.html")],
                violations=result.violations,
                extra={
                    "rss_per_device_mb": result.rss_per_device_mb,
                    "sim_loop_lag_p99_ms": percentile(result.loop_lag_ms, 99),
                    "registry_devices_online": float(
                        result.registry.get("devices", {}).get("online", math.nan)
                    ),
                    "registry_requests": float(
                        result.registry.get("requests", {}).get("total", math.nan)
                    ),
                },
            ),
            out,
            baseline=baseline,
        )
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{int(figures['requests'])} requests, {figures['ok_share']:.1%} answered ok, "
        f"{figures['escalation_share']:.1%} escalated, {figures['fallback_share']:.1%} fell back; "
        f"p99 edge {figures['p99_latency_edge_s'] * 1000:.0f} ms, cloud "
        f"{figures['p99_latency_cloud_s'] * 1000:.0f} ms; {result.rss_per_device_mb:.2f} MB/device; "
        f"{result.wall_s:.0f} s"
    )
    click.echo(f"report: {out / 'report.html'}")
    for violation in result.violations:
        click.echo(str(violation), err=True)
    if result.violations:
        raise SystemExit(1)
    click.echo("all invariants held")


sim.help = (sim.help or "") + "\n\n\b\nShipped scenarios: " + ", ".join(scenario_names())
