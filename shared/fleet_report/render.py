"""Render a report page as Markdown and as self-contained HTML (PNG plots inlined as base64).

page = Page(title="smoke", verdict="PASS: every invariant held.", passed=True, rows=rows,
            sections=[("Faults", ["none"])], plots=[("timeline.png", "Throughput")])
(out / "report.md").write_text(markdown(page)); (out / "report.html").write_text(html_page(page, out))
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Page", "html_page", "markdown"]

Row = tuple[str, str, str, str]


@dataclass
class Page:
    """What one report page says, in order."""

    title: str
    verdict: str
    passed: bool
    rows: list[Row]
    description: str = ""
    problems: list[str] = field(default_factory=list)
    """Shown as preformatted blocks under the verdict (invariant explanations)."""
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    """(heading, bullet lines) before the figures table."""
    plots: list[tuple[str, str]] = field(default_factory=list)
    """(PNG file name in the output directory, caption)."""


def markdown(page: Page) -> str:
    """The page as Markdown (plots linked as files next to it)."""
    lines = [f"# Fleet report: {page.title}", ""]
    if page.description:
        lines += [page.description, ""]
    lines += [f"**{page.verdict}**", ""]
    for problem in page.problems:
        lines += ["```", problem, "```"]
    for heading, bullets in page.sections:
        lines += ["", f"## {heading}", ""] + [f"- {b}" for b in bullets or ["none"]]
    lines += ["", "## Figures", "", "| metric | current | baseline | status |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in page.rows]
    lines += [""]
    for name, caption in page.plots:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}pre{background:#fee;padding:.6em;overflow:auto}"
    ".pass{color:#060}.fail{color:#b00}img{max-width:100%}"
)


def html_page(page: Page, out_dir: Path) -> str:
    """The page as one HTML file that needs nothing else (the PNGs are read from ``out_dir``)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Fleet report: {esc(page.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Fleet report: {esc(page.title)}</h1>",
    ]
    if page.description:
        parts.append(f"<p>{esc(page.description)}</p>")
    parts.append(f"<p class='{'pass' if page.passed else 'fail'}'><b>{esc(page.verdict)}</b></p>")
    parts += [f"<pre>{esc(p)}</pre>" for p in page.problems]
    for heading, bullets in page.sections:
        parts.append(f"<h2>{esc(heading)}</h2><ul>")
        parts += [f"<li>{esc(b)}</li>" for b in bullets or ["none"]]
        parts.append("</ul>")
    parts.append(
        "<h2>Figures</h2><table><tr><th>metric</th><th>current</th><th>baseline</th>"
        "<th>status</th></tr>"
    )
    parts += [
        f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(c)}</td><td>{esc(d)}</td></tr>"
        for a, b, c, d in page.rows
    ]
    parts.append("</table>")
    for name, caption in page.plots:
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        parts.append(
            f"<h3>{esc(caption)}</h3><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)
