"""The ``plugin_rollout`` fault: a bad plugin goes out in a staged rollout and must be stopped.

    desired = desired_settings(workdir)                  # devices trust the run's signing key
    outcome = await bad_plugin_rollout(topo, fault, ledger)   # -> ledger.rollouts
    check_rollouts(scenario, ledger)                     # the ``rollout`` invariant

The plugin is ``wasm_plugins/tests/fixed_verdict.wasm`` with a manifest whose verdict is not
one, ``fail = "closed"``: every request on a device that runs it is refused. The harness pushes
it signed (``hubctl plugins push``) and runs ``hubctl rollout start --plugin NAME@SHA --waves …``
against the hub side; the controller judges the first wave's heartbeats and must roll back.
The invariant: the rollout is ``rolled_back`` in wave 0, the first wave did get the plugin, and
no device of a later wave ever had it in its ``agl_config`` record or refused a request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import nats.js.errors

from cloud_hub.control.artifacts import signing_key
from cloud_hub.control.rollout_plan import parse_waves, wave_size
from openautoglm.sim.errors import TopologyError
from openautoglm.sim.scenario import Fault, Scenario
from openautoglm.sim.topology import Topology, run_hubctl
from openautoglm.sim.windows import Violation
from shared.fleet_report.ledger import Ledger

__all__ = ["PLUGIN", "bad_plugin_rollout", "check_rollouts", "desired_settings"]

PLUGIN = "always_fail"
_WASM = Path(__file__).resolve().parents[2] / "wasm_plugins" / "tests" / "fixed_verdict.wasm"


def desired_settings(workdir: Path) -> Callable[[str], dict[str, Any]]:
    """Each device's ``[desired]``: quick reconciles, its own cache, the run's signing key."""
    signer = signing_key(workdir / "auth").public

    def for_device(name: str) -> dict[str, Any]:
        return {
            "reconcile_s": 0.5,
            "cache_dir": str(workdir / "artifacts" / name),
            "trusted_signers": [signer],
        }

    return for_device


async def _hubctl(topo: Topology, *args: str, timeout: float) -> str:
    """``hubctl ARGS`` against the hub side with the run's signing key; stdout and stderr."""
    return await run_hubctl(
        *args,
        "--nats-url",
        topo.hub_url(),
        "--dir",
        str(topo.workdir / "auth"),
        timeout=timeout,
        merge_stderr=True,
    )


async def bad_plugin_rollout(topo: Topology, fault: Fault, ledger: Ledger) -> dict[str, Any]:
    """Push the fail-closed plugin, run the staged rollout to its end; what happened (JSON-ready)."""
    if not _WASM.is_file():
        raise TopologyError(f"plugin_rollout needs {_WASM} (run from a source checkout)")
    sha = hashlib.sha256(_WASM.read_bytes()).hexdigest()
    manifest = topo.workdir / f"{PLUGIN}.plugin.toml"
    manifest.write_text(
        f'name = "{PLUGIN}"\nversion = "0.0.1"\nsha256 = "{sha}"\nhooks = ["on_request"]\n'
        'fail = "closed"\n[config]\nverdict = "not a verdict"\n'
    )
    pushed = await _hubctl(
        topo, "plugins", "push", str(_WASM), "--manifest", str(manifest), timeout=60
    )
    refs = re.findall(r"\S+@[0-9a-f]{64}", pushed)
    if not refs:
        raise TopologyError(
            f"hubctl plugins push printed no NAME@SHA256 reference: {pushed[-500:]}"
        )
    ref = refs[-1]
    started = ledger.now()
    out = await _hubctl(
        topo,
        "rollout",
        "start",
        "--plugin",
        ref,
        "--waves",
        fault.waves,
        "--window",
        f"{fault.window_s:g}s",
        "--max-error-rate",
        "0.02",
        "--json",
        timeout=120 + 10 * fault.window_s,
    )
    state = _rollout_state(out)
    devices: list[str] = state.get("devices", [])
    first = wave_size(parse_waves(fault.waves)[0], len(devices))
    later = devices[first:]
    return {
        "plugin": ref,
        "started_at": started,
        "ended_at": ledger.now(),
        "status": state.get("status"),
        "wave": state.get("wave"),
        "reason": state.get("reason"),
        "first_wave": devices[:first],
        "later_waves": later,
        "later_with_plugin": await _ever_had_plugin(topo, later),
    }


def _rollout_state(out: str) -> dict[str, Any]:
    """The JSON state ``hubctl rollout start --json`` prints after its log lines."""
    start = out.find("{")
    if start >= 0:
        with contextlib.suppress(ValueError):
            state: dict[str, Any] = json.loads(out[start:])
            return state
    raise TopologyError(f"hubctl rollout start printed no JSON rollout state: {out[-500:]}")


async def _ever_had_plugin(topo: Topology, devices: list[str]) -> list[str]:
    """Devices whose ``agl_config`` history (every record written) names the plugin."""
    nc = await nats.connect(topo.hub_url().split(","), connect_timeout=5)
    try:
        kv = await nc.jetstream().key_value("agl_config")
        found = []
        for device in devices:
            try:
                history = await kv.history(device)
            except nats.js.errors.NoKeysError:  # nothing was ever written for it
                continue
            if any(e.value and PLUGIN.encode() in e.value for e in history):
                found.append(device)
        return found
    finally:
        await nc.close()


def check_rollouts(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """A bad plugin's rollout stops after its first wave; later waves never receive it."""
    wanted = sum(f.kind == "plugin_rollout" for f in scenario.faults)
    out: list[Violation] = []
    if len(ledger.rollouts) < wanted:
        out.append(Violation("rollout", f"{wanted - len(ledger.rollouts)} rollouts did not run"))
    for rollout in ledger.rollouts:
        r: dict[str, Any] = dict(rollout)
        if "error" in r:
            out.append(Violation("rollout", f"the rollout could not run: {r['error']}"))
            continue
        if r["status"] != "rolled_back" or r["wave"] != 0:
            out.append(
                Violation(
                    "rollout",
                    f"the bad plugin's rollout ended {r['status']} in wave {r['wave']}; it must "
                    "be rolled back after its first wave",
                    (f"reason: {r['reason']}",),
                )
            )
        later = set(r["later_waves"])
        refused = [e for e in ledger if e.device in later and e.status not in (None, 200)]
        if r["later_with_plugin"] or refused:
            out.append(
                Violation(
                    "rollout",
                    f"{len(r['later_with_plugin'])} later-wave devices received the plugin and "
                    f"{len(refused)} of their requests failed",
                    tuple(r["later_with_plugin"][:5])
                    + tuple(f"{e.device}: {e.status} {e.error}" for e in refused[:5]),
                )
            )
        first = set(r["first_wave"])
        if not any(e.device in first and e.status == 503 for e in ledger):
            out.append(
                Violation(
                    "rollout",
                    "no first-wave device ever refused a request: the plugin never ran, so the "
                    "rollback proves nothing",
                )
            )
    return out
