"""Sandboxed WebAssembly plugins (Extism) that inspect requests and responses.

    from shared.plugins import PluginWatcher
    watcher = PluginWatcher(Path("wasm_plugins"), limits=HostLimits()); watcher.start()
    result = watcher.chain.on_request(body)      # RequestResult
    stream = ResponseStream(watcher.chain)          # runs on_response over streamed answers

See ``wasm_plugins/ABI.md`` for writing a plugin and ``chain.py`` for the semantics.
"""

from shared.plugins._runtime import ModuleStats
from shared.plugins.chain import (
    FAIL_CLOSED_STATUS,
    LoadedPlugin,
    PluginChain,
    PluginOutcome,
    RequestResult,
    ResponseResult,
    load_plugin,
)
from shared.plugins.errors import (
    PluginBudgetError,
    PluginCallError,
    PluginError,
    PluginIntegrityError,
    PluginLoadError,
    PluginManifestError,
    PluginOutputError,
    PluginRejectedError,
)
from shared.plugins.limits import HostLimits
from shared.plugins.manifest import PluginManifest, load_manifest, read_verified_module
from shared.plugins.stream import ResponseStream
from shared.plugins.verdicts import (
    RouteTarget,
    Verdict,
    merge_route,
    order_manifests,
    parse_verdict,
)
from shared.plugins.watcher import PluginWatcher

__all__ = [
    "FAIL_CLOSED_STATUS",
    "HostLimits",
    "LoadedPlugin",
    "ModuleStats",
    "PluginBudgetError",
    "PluginCallError",
    "PluginChain",
    "PluginError",
    "PluginIntegrityError",
    "PluginLoadError",
    "PluginManifest",
    "PluginManifestError",
    "PluginOutcome",
    "PluginOutputError",
    "PluginRejectedError",
    "PluginWatcher",
    "RequestResult",
    "ResponseResult",
    "ResponseStream",
    "RouteTarget",
    "Verdict",
    "load_manifest",
    "load_plugin",
    "merge_route",
    "order_manifests",
    "parse_verdict",
    "read_verified_module",
]
