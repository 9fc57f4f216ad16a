"""The fleet report both the simulator and the hub write: figures, PNG plots, Markdown and HTML.

    from shared.fleet_report import Ledger, ReportInput, write_report
    write_report(ReportInput(ledger=ledger, title="smoke", duration_s=10), Path("out"))

The simulator's report is made from a :class:`Ledger` (one line per request, fault marks, breaker
transitions) that it fills as it runs (``open-autoglm sim``). ``hubctl report`` has no ledger: it
builds a ``FleetSnapshot`` from each device's latest heartbeat in the hub's registry and writes it
with ``write_snapshot_report`` (``shared.fleet_report.snapshot``). Modules: ``ledger``,
``metrics`` (pure figures), ``report`` (the ledger's report), ``snapshot`` (the snapshot's),
``render`` (the Markdown and HTML page both use), ``plots`` and ``snapshot_plots`` (matplotlib,
imported on first use: the ``sim`` extra).
"""

from shared.fleet_report.ledger import FaultMark, Ledger, LedgerEntry
from shared.fleet_report.metrics import BETTER, percentile, summarize
from shared.fleet_report.report import (
    ReportError,
    ReportInput,
    comparison_rows,
    load_baseline,
    write_report,
)

__all__ = [
    "BETTER",
    "FaultMark",
    "Ledger",
    "LedgerEntry",
    "ReportError",
    "ReportInput",
    "comparison_rows",
    "load_baseline",
    "percentile",
    "summarize",
    "write_report",
]
