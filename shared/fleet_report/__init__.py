"""The fleet report both the simulator and the hub write: figures, PNG plots, Markdown and HTML.

    from shared.fleet_report import Ledger, ReportInput, write_report
    write_report(ReportInput(ledger=ledger, title="smoke", duration_s=10), Path("out"))

Its input is a :class:`Ledger` (one line per request, fault marks, breaker transitions): the
simulator fills one as it runs (``open-autoglm sim``); ``hubctl report`` is to build one from the
hub's registry, heartbeats and metrics. Modules: ``ledger``, ``metrics`` (pure figures),
``plots`` (matplotlib, imported on first use: the ``sim`` extra) and ``report``.
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
