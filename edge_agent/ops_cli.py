"""``edge-agent ps``, ``top`` and ``models``: look at a running agent, as ``ollama ps`` does.

    edge-agent ps                      # loaded models (size, context, slots, queue) and the hub link
    edge-agent top                     # live view from /metrics, refreshed every 2 s (Ctrl-C quits)
    edge-agent top --once              # one frame, for scripts and bug reports
    edge-agent models pull ID          # from the hub's model store (not in this version)

Every command reads the agent's HTTP API (``--url``, default ``http://127.0.0.1:8080``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click

from edge_agent.top_view import parse_metrics, render_frame

__all__ = ["models_group", "ps", "top"]

_URL_OPTION = click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Base URL of the running agent (its host and port).",
)
_TIMEOUT_S = 5.0


def _get(url: str, path: str) -> bytes:
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=_TIMEOUT_S) as resp:
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{url}{path} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"no agent answers at {url} ({reason}); start one with `edge-agent run` or pass --url"
        ) from exc


def _status(url: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_get(url, "/status"))
    return data


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def format_ps(status: dict[str, Any]) -> str:
    """``edge-agent ps`` as text: one line per model, then the hub link."""
    rows = [("MODEL", "TASK", "READY", "SIZE", "CONTEXT", "SLOTS", "QUEUE", "SHA256")]
    for m in status.get("models", []):
        queue = f"{m['queue_depth']}/{m['max_queue']}" if "queue_depth" in m else "-"
        digest = str(m.get("sha256", "-"))
        rows.append(
            (
                str(m.get("id")),
                str(m.get("task", "-")),
                "yes" if m.get("ready") else "no",
                _size(m.get("file_bytes")),
                str(m.get("n_ctx", "-")),
                str(m.get("slots", "-")),
                queue,
                digest[:12] if len(digest) == 64 else digest,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if status.get("load_error"):
        lines.append(f"load error: {status['load_error']}")
    hub = status.get("hub", {})
    if hub.get("configured"):
        left = (hub.get("budget") or {}).get("remaining_today")
        lines.append(
            f"hub link: {'connected' if hub.get('connected') else 'DOWN'} "
            f"({', '.join(hub.get('servers', []))})  circuit {hub.get('circuit')}  "
            f"budget {'unlimited' if left is None else f'{left} tokens left today'}"
        )
        if not hub.get("connected") and hub.get("last_error"):
            lines.append(f"  last error: {hub['last_error']}")
    else:
        lines.append("hub link: not configured")
    rss = (status.get("process") or {}).get("rss_bytes")
    lines.append(f"process: pid {status.get('process', {}).get('pid')}  memory {_size(rss)}")
    return "\n".join(lines)


@click.command()
@_URL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the agent's /status JSON.")
def ps(url: str, as_json: bool) -> None:
    """Show the loaded models (size, context, slots, queue) and the hub link.

    \b
    Example:
      edge-agent ps --url http://127.0.0.1:8080
    """
    status = _status(url)
    click.echo(json.dumps(status, indent=2) if as_json else format_ps(status))


Sample = tuple[bytes, float]


def _scrape(url: str) -> Sample:
    return _get(url, "/metrics"), time.monotonic()


def _frame(url: str, before: Sample, after: Sample) -> str:
    return render_frame(
        parse_metrics(before[0].decode()),
        parse_metrics(after[0].decode()),
        seconds=after[1] - before[1],
        status=_status(url),
        url=url,
    )


@click.command()
@_URL_OPTION
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between two refreshes (and over which rates are computed).",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (rates over --interval).")
def top(url: str, interval_s: float, once: bool) -> None:
    """A live view of a running agent, refreshed from its /metrics (Ctrl-C quits).

    Requests per second by tier and reason, time to first token, queue depth per model,
    the circuit to the hub and plugin errors.
    """
    last = _scrape(url)
    try:
        while True:
            time.sleep(interval_s)
            now = _scrape(url)
            frame = _frame(url, last, now)
            last = now
            if once:
                click.echo(frame)
                return
            click.clear()
            click.echo(frame)
    except KeyboardInterrupt:
        pass


@click.group("models")
def models_group() -> None:
    """Manage the models this device serves."""


@models_group.command("pull")
@click.argument("model_id")
def pull(model_id: str) -> None:
    """Fetch MODEL_ID from the hub's model store, with a progress bar and a digest check.

    \b
    The hub's model store (the JetStream object store `agl_models`) arrives with the fleet's
    desired state; until then this command only explains how to install a model by hand.
    """
    raise click.ClickException(
        f"cannot pull {model_id!r}: the hub's model store (JetStream object store agl_models) "
        "arrives with the fleet's desired state and is not in this version.\n"
        "  Copy the GGUF file to the device instead and serve it with\n"
        f"    edge-agent run --model-path FILE.gguf --model-id {model_id}\n"
        "  (pin its digest with `model_sha256` in edge.toml)."
    )
