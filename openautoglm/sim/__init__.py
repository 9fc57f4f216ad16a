"""The fleet simulator behind ``open-autoglm sim``: real NATS, real hub workers, real edge code.

    scenario = load_scenario("smoke")             # or a path to a .toml file
    result = asyncio.run(run_scenario(scenario))  # ledger, invariant violations, RSS per device
    write_report(ReportInput(ledger=result.ledger, title="smoke", duration_s=10), Path("out"))
    # (the report lives in shared.fleet_report, so that hubctl can write one too)

Only each device's model is SIMULATED (``openautoglm.sim.runtime``): its token timing and
confidence come from the scenario. Modules: ``scenario`` (the TOML schema), ``topology``
(nats-servers, leaf nodes, hub workers), ``proxy`` (the fault proxy), ``device`` (one in-process
edge agent), ``traffic`` and ``requests`` (what is sent, how answers are read), ``faults``,
``invariants`` and ``runner``; the ledger and the report are ``shared.fleet_report``.
"""

from openautoglm.sim.errors import ScenarioError, SimError, TopologyError
from openautoglm.sim.scenario import Scenario, load_scenario, scenario_names

__all__ = [
    "Scenario",
    "ScenarioError",
    "SimError",
    "TopologyError",
    "load_scenario",
    "scenario_names",
]
