"""``PluginChain``: the ordered plugins of one directory, run on requests and responses.

    chain = PluginChain.from_directory(Path("wasm_plugins"))
    result = chain.on_request({"messages": [...], "model": "smollm2", "metadata": {}})
    if result.rejected:
        answer(result.status, result.message)
    body = result.request            # possibly modified (the whole body, other fields kept)
    new_model = result.model         # set when a plugin's modify chose another model: re-route
    plugin_route = result.route_target  # feed the router; local_only must be enforced

A chain is immutable once built; reloading builds a new one (see ``PluginWatcher``), so a
request that holds a chain finishes on it even if the directory changes meanwhile.

When a plugin fails (trap, timeout, memory cap, denied host call, output over
``max_output_bytes``, invalid or hostile verdict) its ``fail`` setting decides: ``open``
ignores it and goes on; ``closed`` rejects the request with 503 and a message naming the
plugin. Either way it is logged and shows in ``trace`` (``kind`` is the metric label).
Nothing a plugin returns can make ``on_request``/``on_response`` raise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.plugins._runtime import WasmModule, extism_manifest
from shared.plugins.errors import PluginCallError, PluginError, PluginManifestError
from shared.plugins.limits import HostLimits, check_memory_budget, memory_need
from shared.plugins.manifest import (
    MANIFEST_SUFFIX,
    Hook,
    PluginManifest,
    load_manifest,
    read_verified_module,
)
from shared.plugins.verdicts import (
    REQUEST_FIELDS,
    RouteTarget,
    Verdict,
    merge_route,
    order_manifests,
    parse_verdict,
)

__all__ = [
    "FAIL_CLOSED_STATUS",
    "LoadedPlugin",
    "PluginChain",
    "PluginOutcome",
    "RequestResult",
    "ResponseResult",
    "load_plugin",
]

log = logging.getLogger("shared.plugins")

FAIL_CLOSED_STATUS = 503
"""Status of a request rejected because a ``fail = "closed"`` plugin failed."""


@dataclass(frozen=True, kw_only=True)
class PluginOutcome:
    """What one plugin did in one call: its action (or ``error``), time and any error."""

    plugin: str
    action: str
    elapsed_us: float
    error: str | None = None
    kind: str | None = None
    """For a failure: ``timeout`` or ``error`` (the label ``agl_plugin_errors_total`` uses)."""


@dataclass(frozen=True, kw_only=True)
class RequestResult:
    """The chain's answer for a request.

    ``request`` is the body to serve (the input's other fields kept, plugin changes applied);
    ``model`` is the model a plugin's ``modify`` chose (already in ``request``; None when no
    plugin set one): the request must be routed again for it. ``route_target`` is for the
    router (``local_only`` must keep the request on the device, whatever the model).
    """

    request: dict[str, Any]
    model: str | None = None
    route_target: RouteTarget | None = None
    rejected: bool = False
    status: int | None = None
    message: str | None = None
    rejected_by: str | None = None
    modified: bool = False
    trace: tuple[PluginOutcome, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ResponseResult:
    """The chain's answer for a piece of response text (whole or a stream window).

    For streamed text (``final`` false), ``hold`` is how many trailing characters of ``text``
    must not be released yet: the largest hold hint of the chain's plugins, a plugin that
    gave none counting its whole ``stream_window_chars``. ``whole_words`` is true when some
    plugin with a window gave no hint: the stream then also never cuts inside a word (the
    contract such plugins were written against). Both are 0/False for final text.
    """

    text: str
    hold: int = 0
    whole_words: bool = False
    rejected: bool = False
    status: int | None = None
    message: str | None = None
    rejected_by: str | None = None
    modified: bool = False
    trace: tuple[PluginOutcome, ...] = ()


@dataclass(frozen=True)
class LoadedPlugin:
    """A verified, compiled plugin: its manifest and its module."""

    manifest: PluginManifest
    module: WasmModule
    cache_key: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """The plugin's name from its manifest."""
        return self.manifest.name

    def run(self, hook: Hook, payload: bytes) -> Verdict:
        """Call ``hook`` and parse its verdict; raises ``PluginCallError`` on any failure."""
        raw = self.module.call(hook, payload)
        return parse_verdict(
            raw, hook=hook, plugin=self.name, max_hold=self.manifest.stream_window_chars
        )


def _recycle_pages(manifest: PluginManifest, limits: HostLimits) -> int | None:
    """The recycle threshold, or None when an instance cannot grow past it anyway."""
    pages = manifest.memory.recycle_pages or limits.recycle_pages
    return pages if pages < manifest.memory.max_pages else None


def _cache_key(manifest: PluginManifest, limits: HostLimits) -> str:
    described = extism_manifest(manifest, b"")
    described["wasm"] = manifest.sha256
    described["hooks"] = manifest.hooks
    described["output"] = manifest.max_output_bytes
    described["pool"] = (limits.pool_size, _recycle_pages(manifest, limits))
    return json.dumps(described, sort_keys=True, default=str)


def load_plugin(
    manifest: PluginManifest,
    *,
    reuse: Mapping[str, LoadedPlugin] | None = None,
    limits: HostLimits | None = None,
) -> LoadedPlugin:
    """Verify and compile the plugin a manifest describes, reusing an identical compiled one."""
    limits = limits or HostLimits()
    if "*" in manifest.grants.allowed_hosts:
        log.warning(
            'plugin %s: grants.allowed_hosts = ["*"] lets it send data to any host; '
            "list only the hosts it needs",
            manifest.name,
        )
    key = _cache_key(manifest, limits)
    wasm = read_verified_module(manifest)  # always re-check the digest, even when reusing
    old = (reuse or {}).get(key)
    if old is not None:
        return LoadedPlugin(manifest, old.module, key)
    module = WasmModule(
        manifest,
        wasm,
        pool_size=limits.pool_size,
        recycle_pages=_recycle_pages(manifest, limits),
    )
    return LoadedPlugin(manifest, module, key)


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    if a.startswith(b) or b.startswith(a):
        return min(len(a), len(b))
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def common_suffix(a: str, b: str) -> int:
    """Length of the longest common suffix of ``a`` and ``b``."""
    if a.endswith(b) or b.endswith(a):
        return min(len(a), len(b))
    n = min(len(a), len(b))
    i = 0
    while i < n and a[-1 - i] == b[-1 - i]:
        i += 1
    return i


def carry_hold(before: str, after: str, hold: int) -> int:
    """The hold on ``before``'s tail, carried over to ``after`` (a later plugin's rewrite).

    If the rewrite left those characters alone they stay held; if it reached into them,
    everything from the first change (or the start of the held tail, if earlier) is held.
    """
    if hold <= 0 or common_suffix(before, after) >= hold:
        return hold
    start = max(0, min(common_prefix(before, after), len(before) - hold))
    return len(after) - start


def _encode(doc: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: send it \u-escaped, which is valid JSON
        return json.dumps(doc, separators=(",", ":")).encode()


class PluginChain:
    """Plugins in order: phase, then priority (higher first), then name; responses in reverse."""

    def __init__(
        self,
        plugins: Iterable[LoadedPlugin],
        *,
        source: Path | None = None,
        limits: HostLimits | None = None,
    ) -> None:
        self.limits = limits or HostLimits()
        by_name = {p.name: p for p in plugins}
        ordered = order_manifests(p.manifest for p in by_name.values())
        self.plugins: tuple[LoadedPlugin, ...] = tuple(by_name[m.name] for m in ordered)
        self.source = source
        self._request_plugins = tuple(p for p in self.plugins if "on_request" in p.manifest.hooks)
        self._response_plugins = tuple(
            p for p in reversed(self.plugins) if "on_response" in p.manifest.hooks
        )

    @classmethod
    def empty(cls) -> PluginChain:
        """A chain with no plugins: requests and responses pass unchanged."""
        return cls(())

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        *,
        previous: PluginChain | None = None,
        limits: HostLimits | None = None,
    ) -> PluginChain:
        """Load every ``*.plugin.toml`` in ``directory`` (not recursive) with its module.

        Raises a ``PluginError`` subclass for the first bad plugin (bad manifest, digest
        mismatch, module that does not load) or ``PluginBudgetError`` when the plugins'
        memory together exceeds ``limits``; nothing is half-loaded. Modules identical to
        ones in ``previous`` are reused instead of compiled again.
        """
        limits = limits or HostLimits()
        if not directory.is_dir():
            raise PluginManifestError(
                directory, "is not a directory; create it or fix the plugin dir"
            )
        reuse = {p.cache_key: p for p in previous.plugins} if previous else {}
        manifests: list[PluginManifest] = []
        seen: dict[str, Path] = {}
        for path in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
            manifest = load_manifest(path)
            if manifest.name in seen:
                raise PluginManifestError(
                    path, f"plugin name {manifest.name!r} is also used by {seen[manifest.name]}"
                )
            seen[manifest.name] = path
            manifests.append(manifest)
        check_memory_budget(manifests, limits)  # before anything is compiled
        loaded = [load_plugin(m, reuse=reuse, limits=limits) for m in manifests]
        return cls(loaded, source=directory, limits=limits)

    @property
    def has_response_hooks(self) -> bool:
        """True when some plugin inspects responses (a stream must then be windowed)."""
        return bool(self._response_plugins)

    @property
    def stream_window(self) -> int:
        """Characters a stream must hold back: the largest ``stream_window_chars`` declared
        by a plugin with an on_response hook (0 when none declares one)."""
        return max((p.manifest.stream_window_chars for p in self._response_plugins), default=0)

    @property
    def memory_bytes(self) -> int:
        """The most linear memory this chain's instances can hold together (what the budget counts)."""
        return sum(memory_need(p.manifest, self.limits) for p in self.plugins)

    def _call(
        self, plugin: LoadedPlugin, hook: Hook, payload: bytes, trace: list[PluginOutcome]
    ) -> Verdict | PluginCallError:
        start = time.perf_counter()
        try:
            verdict = plugin.run(hook, payload)
        except PluginCallError as exc:
            elapsed = (time.perf_counter() - start) * 1e6
            trace.append(
                PluginOutcome(
                    plugin=plugin.name,
                    action="error",
                    elapsed_us=elapsed,
                    error=str(exc),
                    kind=exc.kind,
                )
            )
            log.warning(
                "plugin %s failed in %s (fail = %s): %s",
                plugin.name,
                hook,
                plugin.manifest.fail,
                exc,
            )
            return exc
        elapsed = (time.perf_counter() - start) * 1e6
        trace.append(PluginOutcome(plugin=plugin.name, action=verdict.action, elapsed_us=elapsed))
        return verdict

    @staticmethod
    def _closed_message(plugin: LoadedPlugin, exc: PluginError) -> str:
        return f"plugin {plugin.name} failed and is configured fail = closed: {exc}"

    def on_request(self, request: Mapping[str, Any]) -> RequestResult:
        """Run every on_request plugin; the first reject stops the chain.

        Plugins see ``messages``, ``model`` and ``metadata`` (missing ones as ``[]``, ``""``,
        ``{}``); a ``modify`` replaces those fields for the next plugin and in the result.
        """
        body = dict(request)
        view: dict[str, Any] = {
            "messages": body.get("messages", []),
            "model": body.get("model", ""),
            "metadata": body.get("metadata") or {},
        }
        route: RouteTarget | None = None
        modified = False
        model: str | None = None
        trace: list[PluginOutcome] = []
        for plugin in self._request_plugins:
            got = self._call(plugin, "on_request", _encode(view), trace)
            if isinstance(got, PluginCallError):
                if plugin.manifest.fail == "open":
                    continue
                return RequestResult(
                    request=body,
                    rejected=True,
                    status=FAIL_CLOSED_STATUS,
                    message=self._closed_message(plugin, got),
                    rejected_by=plugin.name,
                    trace=tuple(trace),
                )
            if got.action == "reject":
                return RequestResult(
                    request=body,
                    rejected=True,
                    status=got.status,
                    message=got.message,
                    rejected_by=plugin.name,
                    trace=tuple(trace),
                )
            if got.action == "modify" and got.request is not None:
                view = {**view, **got.request}
                modified = True
                model = got.request.get("model", model)  # validated by parse_verdict
            route = merge_route(route, got.target)
        if modified:
            body.update({k: view[k] for k in REQUEST_FIELDS if k in view})
        return RequestResult(
            request=body, model=model, route_target=route, modified=modified, trace=tuple(trace)
        )

    def on_response(
        self, text: str, *, final: bool = True, unhinted: int | None = None
    ) -> ResponseResult:
        """Run every on_response plugin over ``text`` (``final`` is False for stream windows).

        Streamed (``final`` false), each plugin also gets ``"window"`` (its
        ``stream_window_chars``, the most it may hold) and may answer a ``hold`` hint; the
        result's ``hold`` combines them. A plugin that gives no hint, or fails open, holds
        ``unhinted`` characters (default: its own ``stream_window_chars``).
        """
        modified = False
        hold = 0
        whole_words = False
        trace: list[PluginOutcome] = []
        for plugin in self._response_plugins:
            window = plugin.manifest.stream_window_chars
            doc: dict[str, Any] = {"text": text, "final": final}
            if not final:
                doc["window"] = window
            got = self._call(plugin, "on_response", _encode(doc), trace)
            if not isinstance(got, PluginCallError) and got.hold is not None:
                hint = got.hold
            else:  # no hint (or no usable answer): hold the whole window, as before hints
                hint = window if unhinted is None else unhinted
                whole_words = whole_words or hint > 0
            if isinstance(got, PluginCallError):
                if plugin.manifest.fail == "open":
                    hold = max(hold, hint)
                    continue
                return ResponseResult(
                    text=text,
                    rejected=True,
                    status=FAIL_CLOSED_STATUS,
                    message=self._closed_message(plugin, got),
                    rejected_by=plugin.name,
                    trace=tuple(trace),
                )
            if got.action == "reject":
                return ResponseResult(
                    text=text,
                    rejected=True,
                    status=got.status,
                    message=got.message,
                    rejected_by=plugin.name,
                    trace=tuple(trace),
                )
            if got.action == "modify" and got.text is not None:
                hold = carry_hold(text, got.text, hold)
                text = got.text
                modified = True
            hold = max(hold, hint)
        if final:
            hold, whole_words = 0, False
        return ResponseResult(
            text=text,
            hold=min(hold, len(text)),
            whole_words=whole_words,
            modified=modified,
            trace=tuple(trace),
        )

    def names(self) -> Sequence[str]:
        """Plugin names in on_request order."""
        return [p.name for p in self.plugins]
