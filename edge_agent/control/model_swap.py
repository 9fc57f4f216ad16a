"""Swap the main chat model live: load the new one, switch new requests, retire the old one.

    old = await swap_main_model(state, path=cached.path, sha256=digest, n_ctx=2048)
    # new requests use the new model at once; the old one is freed in the background

A request whose prompt the old model prepared keeps the old model and its scheduler
(``AgentState.scheduler_for(runtime=...)``) until it ends; the old model is closed once its
scheduler has been idle for ``idle_s`` (at most ``request_timeout_s`` after the swap), so no
request fails because of a swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from edge_agent.api.state import AgentState
from edge_agent.models import ServedModel, load_runtime
from edge_agent.settings import ModelSpec
from shared.errors import ModelLoadError
from shared.runtimes.gguf import GgufRuntime

__all__ = ["swap_main_model"]

log = logging.getLogger(__name__)


async def swap_main_model(
    state: AgentState, *, path: Path, sha256: str | None, n_ctx: int, idle_s: float = 1.0
) -> asyncio.Task[None] | None:
    """Serve ``path`` as the main model; the task that retires the old one (None: no change)."""
    registry = state.registry
    main = registry.main()
    if main.spec.path == path and main.spec.sha256 == sha256:
        return None
    old = main.runtime
    if not isinstance(old, GgufRuntime):
        raise ModelLoadError(f"the main model {main.id} is not loaded yet; the swap waits for it")
    spec = ModelSpec(id=main.id, path=path, task="chat", sha256=sha256, n_ctx=n_ctx)
    new = await asyncio.to_thread(load_runtime, spec, state.settings)
    if not isinstance(new, GgufRuntime):
        raise ModelLoadError(f"{path.name} is not a GGUF chat model; the main model stays")
    # Two assignments, no await between: a request sees the old pair or the new pair.
    retiring = state.swap_scheduler(main.id, old, new)
    registry.models[main.id] = ServedModel(id=main.id, spec=spec, runtime=new)
    log.info("main model %s swapped to %s (sha256 %s)", main.id, path, sha256 or "unpinned")

    async def retire() -> None:
        deadline = time.monotonic() + state.settings.request_timeout_s
        idle_since: float | None = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if retiring.queue_depth == 0:
                idle_since = idle_since or now
                if now - idle_since >= idle_s:
                    break
            else:
                idle_since = None
            await asyncio.sleep(0.05)
        state.retired(old)
        await asyncio.to_thread(retiring.close)
        await asyncio.to_thread(old.close)
        log.info("previous main model of %s unloaded", main.id)

    return asyncio.create_task(retire(), name="retire-model")
