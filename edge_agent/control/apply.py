"""Apply a desired-state record to the running agent, all or nothing (I/O at the edges).

    applier = Applier(state, cache=cache, base=settings)
    await applier.apply(record, jsm)       # never raises; a failure keeps the old state
    applier.applied_revision, applier.apply_error

Order: take the record's merged state, let the pinned local settings win, check it with the
agent's schema, fetch and verify every artifact it names, build the new plugin chain; only then
swap the router policy (one assignment of ``state.settings``) and the plugin chain (one
assignment of ``state.plugins``). A request that already took the old settings or chain finishes
on them. Anything that fails before the swap leaves the agent as it was and is reported (with
its reason) in the heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from nats.js.manager import JetStreamManager

from edge_agent.api.state import AgentState
from edge_agent.control.artifact_cache import ArtifactCache, CachedArtifact
from edge_agent.control.desired_schema import (
    DesiredModel,
    DesiredPlugin,
    DesiredStateError,
    validate_desired,
)
from edge_agent.control.model_swap import swap_main_model
from edge_agent.router.online_tuning import ThresholdTuner
from edge_agent.router.policy import RouterConfig
from edge_agent.settings import EdgeSettings
from shared.desired import DeviceRecord, apply_pinned, merge
from shared.errors import AglError
from shared.plugins import PluginWatcher
from shared.plugins.errors import PluginError

__all__ = ["Applier"]

log = logging.getLogger(__name__)


class Applier:
    """Turns desired-state records into the agent's live router policy and plugin chain."""

    def __init__(self, state: AgentState, *, cache: ArtifactCache, base: EdgeSettings) -> None:
        self.state = state
        self.cache = cache
        self.base = base
        self.local: dict[str, Any] = {
            "router": base.router.model_dump(mode="json"),
            "telemetry": base.telemetry.model_dump(mode="json"),
        }
        self.pinned = list(base.desired.pinned)
        self.applied_revision: str | None = None
        self.apply_error: str | None = None
        self._chain_root = cache.root / "chains"
        self._managed = False
        self._base_main = state.registry.main().spec
        self._retirements: set[asyncio.Task[None]] = set()
        """Whether the plugin chain now in use came from the desired state."""
        self._lock = asyncio.Lock()

    async def apply(self, record: DeviceRecord, jsm: JetStreamManager) -> bool:
        """Apply ``record``; True when it is (now or already) the applied revision."""
        async with self._lock:
            if record.revision == self.applied_revision:
                return True
            try:
                await self._apply(record, jsm)
            except (AglError, DesiredStateError, PluginError, OSError, ValueError) as exc:
                self.apply_error = f"revision {record.revision}: {exc}"[:1000]
                log.error("desired state %s not applied, keeping %s: %s",
                          record.revision, self.applied_revision or "the local settings", exc)  # fmt: skip
                return False
            self.applied_revision, self.apply_error = record.revision, None
            log.info("desired state %s applied (%s)", record.revision, ", ".join(record.layers))
            return True

    async def _apply(self, record: DeviceRecord, jsm: JetStreamManager) -> None:
        desired = apply_pinned(record.state, self.local, self.pinned)
        spec = validate_desired(desired)
        router = RouterConfig.model_validate(
            merge([self.local["router"], desired.get("router", {})])
        )
        watcher = None
        if spec.plugins is not None and not any(p.split(".")[0] == "plugins" for p in self.pinned):
            fetched = {
                name: await self.cache.fetch(jsm, kind="plugin", sha256=p.sha256)
                for name, p in spec.plugins.items()
            }
            directory = self._write_chain(record.revision, spec.plugins, fetched)
            watcher = await asyncio.to_thread(PluginWatcher, directory)
        model = None
        if not any(p.split(".")[0] == "models" for p in self.pinned):
            model = await self._model(spec.models, jsm)
        restore = watcher is None and self._managed and spec.plugins is None
        if restore and self.base.plugins_dir is not None:  # back to the local plugin directory
            watcher = await asyncio.to_thread(PluginWatcher, self.base.plugins_dir)
        if model is not None:  # loads first; a model that does not load changes nothing
            path, sha, n_ctx = model
            retire = await swap_main_model(self.state, path=path, sha256=sha, n_ctx=n_ctx)
            if retire is not None:
                self._retirements.add(retire)
                retire.add_done_callback(self._retirements.discard)
        # Nothing below can fail: the swap is two assignments.
        self.state.settings = self.state.settings.model_copy(update={"router": router})
        self._retune(router)
        if watcher is not None or restore:
            old, self.state.plugins = self.state.plugins, watcher
            self._managed = watcher is not None and watcher.directory != self.base.plugins_dir
            if watcher is not None and not self._managed:
                watcher.start()  # the local directory hot-reloads again
            if old is not None:
                await asyncio.to_thread(old.stop)
            self._drop_old_chains(keep=watcher.directory if self._managed and watcher else None)
        keep = {p.sha256 for p in (spec.plugins or {}).values()}
        keep |= {m.sha256 for m in (spec.models or {}).values()}
        await asyncio.to_thread(self.cache.evict, keep=keep)

    async def _model(
        self, models: dict[str, DesiredModel] | None, jsm: JetStreamManager
    ) -> tuple[Path, str | None, int] | None:
        """The main model's file (verified into the cache), or the local one when unset."""
        main_id = self.state.registry.main_id
        if not models:
            base = self._base_main
            return base.path, base.sha256, base.n_ctx
        for model_id, want in models.items():
            if model_id != main_id or not want.main:
                raise DesiredStateError(
                    f"models.{model_id}: only the main model can be swapped live; write "
                    f"[models.{main_id}] with main = true (this agent's model_id)"
                )
        want = models[main_id]
        art = await self.cache.fetch(jsm, kind="model", sha256=want.sha256)
        return art.path, want.sha256, want.n_ctx

    def _retune(self, router: RouterConfig) -> None:
        cascade = router.cascade
        tuner = self.state.cascade_tuner
        if cascade.target_escalation_share is None:
            self.state.cascade_tuner = None
        elif tuner is None or not tuner.fits(cascade):
            self.state.cascade_tuner = ThresholdTuner.from_config(cascade)

    def _write_chain(
        self, revision: str, plugins: dict[str, DesiredPlugin], fetched: dict[str, CachedArtifact]
    ) -> Path:
        """A fresh directory with each plugin's module and (config-adjusted) manifest."""
        directory = self._chain_root / revision
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, want in plugins.items():
            art = fetched[name]
            manifest = tomllib.loads(art.manifest_text)
            module = Path(str(manifest.get("module", f"{manifest['name']}.wasm"))).name
            manifest["module"] = module
            if want.config:
                manifest["config"] = {**manifest.get("config", {}), **want.config}
            if want.priority is not None:
                manifest["priority"] = want.priority
            shutil.copyfile(art.path, directory / module)
            (directory / f"{name}.plugin.toml").write_text(tomli_w.dumps(manifest))
        return directory

    def _drop_old_chains(self, *, keep: Path | None) -> None:
        for old in self._chain_root.iterdir() if self._chain_root.is_dir() else []:
            if old != keep and os.path.isdir(old):
                shutil.rmtree(old, ignore_errors=True)
